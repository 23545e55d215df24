// ShardServer's outgoing mesh links: for each peer this shard owns, a DERP
// client connection with the node's own key and the mesh key, over TLS when
// the peer serves it. It watches the peer's clients (WatchConns) and carries
// ForwardPacket frames to them. The keys it learns are replicated to every
// shard through the mailbox, tagged with the link's generation, and leave
// again when the link breaks; it then reconnects with jittered backoff.
//
// The link is a Connection like any accepted one (same reader, writer, TLS
// over the connection's buffers, timers); what differs is its session, a
// LinkSession (link_session.cc), which writes the upgrade request and
// ClientInfo and reads server frames.
#include <sys/socket.h>

#include <cstring>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/log.h"
#include "derp/frame.h"
#include "relay/link_session.h"
#include "relay/mesh_link.h"

namespace derpd::relay {
namespace {

constexpr Nanos kFirstRetry = 1 * kSecond;
constexpr Nanos kMaxRetry = 30 * kSecond;
// A link carries every packet from this shard's clients to the peer's: its
// queues are larger than a client's (ARCHITECTURE.md, Backpressure).
constexpr size_t kLinkQueuePackets = 4096;
constexpr size_t kLinkQueueBytes = 16 << 20;

size_t linkOwner(const MeshTarget& t, size_t shards) {
  return std::hash<std::string>{}(t.id()) % shards;
}

}  // namespace

// Takes up the targets this shard owns: new ones get a link, gone ones lose theirs.
void ShardServer::reconcileMesh() {
  MeshState& mesh = *shared_.mesh;
  meshTargetsSeen_ = mesh.targets->generation();
  std::shared_ptr<const std::vector<MeshTarget>> targets = mesh.targets->load();
  absl::flat_hash_set<std::string> wanted;
  if (targets) {
    for (const MeshTarget& t : *targets) {
      if (linkOwner(t, shared_.mailbox->shards()) == id_) wanted.insert(t.id());
    }
  }
  absl::flat_hash_map<std::string, const MeshTarget*> byId;
  for (const MeshTarget& t : *targets) byId.emplace(t.id(), &t);
  absl::flat_hash_set<std::string> have;
  for (auto& l : links_) {
    if (!l || l->removed) continue;
    if (!wanted.contains(l->target.id())) {
      removeLink(*l);
      continue;
    }
    have.insert(l->target.id());
    const MeshTarget& now = *byId.at(l->target.id());
    if (now.label != l->target.label) {
      // Same peer, new label (its name now resolves to more or fewer
      // addresses): the link stays, its metrics follow the label.
      MeshLinkStats* next = mesh.stats.acquire(now.label);
      next->up.set(l->stats->up.get());
      next->keys.set(l->stats->keys.get());
      if (l->stats->haveKey) mesh.stats.learnedKey(next, l->stats->peerKey);
      l->stats->live.store(false, std::memory_order_relaxed);
      l->stats = next;
      l->target.label = now.label;
    }
  }
  if (!targets) return;
  for (const MeshTarget& t : *targets) {
    if (wanted.contains(t.id()) && !have.contains(t.id())) {
      have.insert(t.id());
      addLink(t);
    }
  }
}

void ShardServer::addLink(const MeshTarget& target) {
  uint16_t slot = 0;
  while (slot < links_.size() && links_[slot]) slot++;
  if (slot == links_.size()) links_.emplace_back();
  links_[slot] = std::make_unique<MeshLink>(this, slot, target,
                                            shared_.mesh->stats.acquire(target.label));
  logInfo("mesh: peer %s (%s://%s)", target.label, target.tls ? "https" : "http",
          target.address.toString());
  connectLink(*links_[slot]);
}

void ShardServer::removeLink(MeshLink& l) {
  logInfo("mesh: peer %s is no longer listed; dropping its link", l.target.label);
  l.removed = true;
  l.stats->live.store(false, std::memory_order_relaxed);
  loop_.timers().cancel(l.retry);
  if (l.connected) {
    if (Connection* c = find(l.connIdx, l.connGen)) {
      close(*c, CloseReason::kMeshRemoved);  // frees the slot
      return;
    }
  }
  links_[l.slot].reset();
}

void ShardServer::connectLink(MeshLink& l) {
  const net::SocketAddress& to = l.target.address;
  int fd = ::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    logWarn("mesh: %s: socket: %s", l.target.label, strerror(errno));
    scheduleLinkRetry(l);
    return;
  }
  net::applyTcpOptions(fd, shared_.config.tcp);  // accepted sockets get them from the listener
  liveLinks_++;  // before newConnection, which publishes the count of non-link connections
  Connection& c =
      newConnection(fd, ListenerKind::kMain, std::make_unique<LinkSession>(*this, l.slot));
  setState(c, Connection::State::kConnecting);
  c.packets.setLimits(kLinkQueuePackets, kLinkQueueBytes);
  c.disco.setLimits(kLinkQueuePackets, kLinkQueueBytes);
  l.gen = ++nextLinkGen_;
  l.connected = true;
  l.connIdx = c.idx;
  l.connGen = c.gen;
  l.boxKey.reset();
  // Connect, TLS, upgrade and DERP handshake all within the handshake time.
  loop_.timers().arm(c.deadline, clock_.now() + shared_.config.handshakeTimeout);
  io_uring_sqe* s = loop_.ring().sqe();
  io_uring_prep_connect(s, fd, to.get(), to.length);
  IoRing::setCompletion(s, &c.sendOp);
  c.sending = true;  // the connect is the connection's one operation in flight
}

void ShardServer::scheduleLinkRetry(MeshLink& l) {
  if (l.retryIn > 0) {
    loop_.timers().arm(l.retry, clock_.now() + l.retryIn);
    l.retryIn = 0;
    return;
  }
  l.backoff = l.backoff == 0 ? kFirstRetry : std::min(l.backoff * 2, kMaxRetry);
  // Jitter (0.5x to 1.5x) keeps a region's nodes from reconnecting in step.
  Nanos delay = l.backoff / 2 + static_cast<Nanos>(rng_() % static_cast<uint64_t>(l.backoff));
  loop_.timers().arm(l.retry, clock_.now() + delay);
}

void ShardServer::onLinkRetry(Timer*, void* ctx) {
  auto& l = *static_cast<MeshLink*>(ctx);
  ShardServer* s = l.server;
  if (s->stopping_ || s->draining_ || l.removed || l.connected) return;
  s->connectLink(l);
}

// A packet for a client on a mesh peer: the RecvPacket frame the sender's
// SendPacket became is turned, in place, into a ForwardPacket (the headroom
// in front of it takes the extra key) and handed to the shard that owns the link.
void ShardServer::forward(const MeshRef& ref, const derp::NodeKey& dst, PacketBuf* b) {
  constexpr size_t kHdr = derp::kFrameHeaderLen;
  constexpr size_t kKey = derp::kKeyLen;
  uint8_t* d = b->bytes();
  uint8_t* n = d - kKey;
  // [hdr][src][payload] -> [hdr][src][dst][payload]
  std::memcpy(n + kHdr, d + kHdr, kKey);
  std::memcpy(d + kHdr, dst.bytes.data(), kKey);
  size_t payload = b->length - kHdr - kKey;
  b->start = static_cast<uint16_t>(b->start - kKey);
  derp::writeFrameHeader(n, derp::FrameType::kForwardPacket,
                         static_cast<uint32_t>(2 * kKey + payload));
  b->length = static_cast<uint32_t>(kHdr + 2 * kKey + payload);
  b->flags = static_cast<uint8_t>(kBufIsForward | (b->flags & kBufIsDisco));
  counters_.meshForwardedOutPackets.add();
  counters_.meshForwardedOutBytes.add(payload);
  if (ref.shard == id_) {
    forwardOnLink(ref.link, ref.gen, b);
    return;
  }
  mailPacket(ref.shard, mail(kMailForward, ref.link, ref.gen, b));
}

void ShardServer::forwardOnLink(uint32_t slot, uint32_t gen, PacketBuf* b) {
  bool disco = b->flags & kBufIsDisco;
  MeshLink* l = slot < links_.size() ? links_[slot].get() : nullptr;
  Connection* c = l != nullptr && l->up && l->gen == gen ? find(l->connIdx, l->connGen) : nullptr;
  if (c == nullptr || c->state == Connection::State::kClosing) {
    counters_.drop(DropReason::kMeshLinkDown, disco);
    if (l != nullptr) l->stats->dropsLinkDown.add();
    releaseBuf(b);
    return;
  }
  l->stats->forwardedPackets.add();
  l->stats->forwardedBytes.add(b->length - derp::kFrameHeaderLen - 2 * derp::kKeyLen);
  SendQueue& q = disco ? c->disco : c->packets;
  for (PacketBuf* dropped = q.push(b); dropped != nullptr;) {
    PacketBuf* next = dropped->next;
    counters_.drop(DropReason::kQueueHead, disco);
    l->stats->dropsQueueHead.add();
    releaseBuf(dropped);
    dropped = next;
  }
  markDirty(*c);
}

}  // namespace derpd::relay
