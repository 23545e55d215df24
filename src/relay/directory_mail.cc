// ShardServer's side of the key directory and the mailbox: a client's
// departure, the mail each shard reads (the directory's own goes to its
// DirectoryReplica; packets and buffers travel with mail), PeerGone, and
// duplicate keys (which instance receives, and fighters).
#include "absl/container/inlined_vector.h"
#include "base/log.h"
#include "derp/frame.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

// Packet mail one shard may hold back for another whose ring is full (its
// messages, 64 B each, and the packets they carry); past it, packets drop.
constexpr size_t kMaxHeldPackets = 8192;

}  // namespace

void ShardServer::unregister(Connection& c) {
  ClientState& client = clientOf(c);
  client.registered = false;
  counters_.currentConnections.sub();
  if (client.preferred) counters_.currentHomeConnections.sub();
  c.writeControlOnly = false;
  KeyDirectory::Change change = replica_.unregisterLocal(client.key, c.idx, c.gen);
  if (change.instances == 0) {
    // Everyone this client sent to learns it is gone (derper's peer-gone
    // watchers), unless another connection of the same key remains.
    for (const derp::NodeKey& dst : client.sentTo) {
      if (const ConnRef* to = directory().lookup(dst)) {
        sendPeerGone(*to, client.key, derp::PeerGoneReason::kDisconnected);
      }
    }
  }
  absl::flat_hash_set<derp::NodeKey>().swap(client.sentTo);
}

void ShardServer::broadcast(const MailMessage& m) {
  for (size_t to = 0; to < shared_.mailbox->shards(); to++) {
    if (to != id_) outbox_.send(to, m);
  }
}

void ShardServer::onInstancesChanged(const derp::NodeKey& key, const KeyDirectory::Change& change) {
  // Every shard applies every change, so each replica's size is the node's.
  counters_.directoryKeys.set(directory().size());
  // Duplicate clients: the active instance receives; the others on this shard
  // (and all of them once disabled) are told with a Health frame, cleared once
  // they are alone or active again.
  if (change.instances == 0) return;
  absl::InlinedVector<ConnRef, 2> mine;
  directory().forEachInstance(key, [&](const KeyDirectory::Instance& i) {
    if (i.ref.shard == id_) mine.push_back(i.ref);
  });
  const size_t instances = directory().instances(key);
  const ConnRef* active = directory().lookup(key);
  for (const ConnRef& ref : mine) {
    Connection* c = find(ref.idx, ref.gen);
    if (c == nullptr || !clientOf(*c).registered || !(clientOf(*c).key == key)) continue;
    const bool isActive = active != nullptr && *active == ref;
    clientOf(*c).mayBeDuplicate = instances > 1;
    if (instances <= 1) clientOf(*c).dupSent = false;  // a new duplicate starts a new history
    if (instances > 1 && !isActive && !clientOf(*c).dupHealthSent) {
      clientOf(*c).dupHealthSent = true;
      queueFrame(*c, derp::HealthFrame{"duplicate client key"});
    } else if ((instances <= 1 || isActive) && clientOf(*c).dupHealthSent) {
      clientOf(*c).dupHealthSent = false;
      queueFrame(*c, derp::HealthFrame{""});
    }
  }
}

void ShardServer::onRegistered(uint32_t idx, uint32_t gen) {
  if (Connection* c = find(idx, gen)) serverSession(*c).onRegistered(*c);
}

void ShardServer::sendPeerGone(const ConnRef& ref, const derp::NodeKey& gone,
                               derp::PeerGoneReason reason) {
  if (ref.shard == id_) {
    if (Connection* c = find(ref.idx, ref.gen); c != nullptr && clientOf(*c).registered) {
      (reason == derp::PeerGoneReason::kNotHere ? counters_.peerGoneNotHere
                                                 : counters_.peerGoneDisconnected)
          .add();
      queueFrame(*c, derp::PeerGoneFrame{gone, reason});
    }
    return;
  }
  MailMessage m = mail(kMailPeerGone, ref.idx, ref.gen);
  m.aux = static_cast<uint32_t>(reason);
  m.key = gone.bytes;
  outbox_.send(ref.shard, m);
}

// A change to this shard's view that every shard applies: sent to the others
// and applied here by the same handler their mailboxes use.
// (By reference: GCC notes that passing a 64-byte-aligned struct by value
// changed ABI in GCC 4.6, on every call.)
void ShardServer::announce(const MailMessage& about, const derp::NodeKey* key) {
  MailMessage m = about;
  if (key != nullptr) m.key = key->bytes;
  broadcast(m);
  onMail(m);
}

void ShardServer::drainMailbox() {
  MailMessage batch[64];
  for (size_t from = 0; from < shared_.mailbox->shards(); from++) {
    if (from == id_) continue;
    Mailbox::Ring* ring = shared_.mailbox->incoming(from, id_);
    if (ring == nullptr) continue;  // `from` has never written to us
    size_t taken = 0;
    for (;;) {
      size_t n = ring->popBatch(batch, 64);
      for (size_t i = 0; i < n; i++) onMail(batch[i]);
      taken += n;
      if (n < 64) break;
    }
    // There is room now: a sender that found the ring full waits for this.
    if (taken > 0 && shared_.mailbox->takeWaitingSender(from, id_)) loop_.wakeShard(from, false);
  }
}

void ShardServer::onMail(const MailMessage& m) {
  derp::NodeKey key;
  key.bytes = m.key;
  switch (m.kind) {
    case kMailPacket:
      deliver(ConnRef{id_, m.idx, m.gen}, static_cast<PacketBuf*>(m.ptr));
      break;
    case kMailReturnBuf:
      pool_.release(static_cast<PacketBuf*>(m.ptr));
      break;
    case kMailPeerGone:
      sendPeerGone(ConnRef{id_, m.idx, m.gen}, key, static_cast<derp::PeerGoneReason>(m.aux));
      break;
    case kMailMeshPresent:
      applyRemotePresent(key, MeshRef{m.shard, static_cast<uint16_t>(m.idx), m.gen});
      break;
    case kMailMeshGone:
      applyRemoteGone(key, MeshRef{m.shard, static_cast<uint16_t>(m.idx), m.gen});
      break;
    case kMailMeshLinkDown:
      applyLinkDown(MeshRef{m.shard, static_cast<uint16_t>(m.idx), m.gen});
      break;
    case kMailForward:
      forwardOnLink(m.idx, m.gen, static_cast<PacketBuf*>(m.ptr));
      break;
    case kMailClosePeer:
      closeLocalInstances(key, CloseReason::kClosePeer);
      break;
    default:
      if (replica_.onMail(m)) break;
      logError("shard %d: unknown mailbox message kind %d", id_, m.kind);
      std::abort();
  }
}

// A connection of a duplicated key sent. The most recent sender becomes the
// one that receives, as in derper; but one that sent before, lost its place to
// another and now sends again is fighting (a cloned key, two devices taking
// turns): like derper's disableFighters, every connection of the key is then
// disabled (packets to it drop as dup_client) until one is alone or a new one
// connects. So a fight costs two flips, not a broadcast and Health frames for
// every packet.
void ShardServer::noteDuplicateSend(Connection& c) {
  const ConnRef me{id_, c.idx, c.gen};
  const KeyDirectory::Instance* self = directory().find(clientOf(c).key, me);
  if (self == nullptr || self->disabled) return;
  const ConnRef* active = directory().lookup(clientOf(c).key);
  const bool wasSending = clientOf(c).dupSent;
  clientOf(c).dupSent = true;
  if (active != nullptr && *active == me) return;
  const uint64_t stamp = static_cast<uint64_t>(clock_.now());
  if (wasSending) {
    counters_.duplicateFights.add();
    logWarn(
        "shard %d: connections of %s take turns sending (a cloned key?); disabling them "
        "until one is left",
        id_, clientOf(c).key.toString());
    replica_.disableLocal(clientOf(c).key, c.idx, c.gen, stamp);
  } else {
    counters_.duplicateActivations.add();
    replica_.activateLocal(clientOf(c).key, c.idx, c.gen, stamp);
  }
}

// Sends mail carrying a packet to another shard, unless that shard already has
// kMaxHeldPackets of our mail held back (its ring full): a shard that has
// stopped reading must not make this one hold packets without bound.
void ShardServer::mailPacket(size_t to, const MailMessage& m) {
  auto* b = static_cast<PacketBuf*>(m.ptr);
  if (outbox_.held(to) >= kMaxHeldPackets) {
    counters_.drop(DropReason::kMailboxFull, b->flags & kBufIsDisco);
    releaseBuf(b);
    return;
  }
  if (shared_.exited[to].load(std::memory_order_acquire)) {  // its clients are gone
    counters_.drop(DropReason::kGoneDisconnected, b->flags & kBufIsDisco);
    releaseBuf(b);
    return;
  }
  outbox_.send(to, m);
}

// Mail for shards that have left their loop is never read: what we hold back
// for them and what sits unread in our rings to them (an exited shard no
// longer consumes, so this shard may) is dropped, its packets counted as gone
// with their shard, and the buffers this shard owns are returned (an exited
// shard's own buffers go with its pool). Runs when we hold mail back and when
// another shard has exited since the last sweep.
void ShardServer::discardMailToExited() {
  exitedSeen_ = shared_.exitedShards.load(std::memory_order_acquire);
  auto drop = [this](const MailMessage& m) {
    if (m.kind != kMailPacket && m.kind != kMailForward) return;
    auto* b = static_cast<PacketBuf*>(m.ptr);
    counters_.drop(
        m.kind == kMailPacket ? DropReason::kGoneDisconnected : DropReason::kMeshLinkDown,
        b->flags & kBufIsDisco);
    if (!shared_.exited[b->ownerShard].load(std::memory_order_acquire)) releaseBuf(b);
  };
  for (size_t to = 0; to < shared_.mailbox->shards(); to++) {
    if (to == id_ || !shared_.exited[to].load(std::memory_order_acquire)) continue;
    outbox_.discard(to, drop);
    MailMessage batch[64];
    // `to` reads no more, so its ring from us has no consumer but us.
    Mailbox::Ring* ring = shared_.mailbox->incoming(id_, to);
    if (ring == nullptr) continue;
    while (size_t n = ring->popBatch(batch, 64)) {
      for (size_t i = 0; i < n; i++) drop(batch[i]);
    }
  }
}

}  // namespace derpd::relay
