// ShardServer's side of the regional mesh that serves other nodes: mesh
// peers watching the node's clients (WatchConns), packets they forward to
// them (ForwardPacket), ClosePeer; and the replica of the keys present on
// peers, kept by the mail the link owners send.
#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

// A watcher's PeerPresent/PeerGone frames share 16 KiB buffers. A watcher
// that lets this much pile up is closed: it reconnects and gets a fresh view,
// where dropping frames would leave it believing a wrong one.
// --mesh-watcher-queue-kb sets how many (64 MiB, ~1.2M frames, by default).
constexpr size_t kPeerStateBuffer = 16 * 1024;

}  // namespace

// ForwardPacket, WatchConns and ClosePeer need the mesh key.
bool ShardServer::checkMeshFrame(Connection& c) {
  if (!clientOf(c).canMesh) {
    close(c, CloseReason::kMeshFrameDenied);
    return false;
  }
  if (static_cast<derp::FrameType>(c.reader.curType) == derp::FrameType::kForwardPacket &&
      (c.reader.curLen < 2 * derp::kKeyLen ||
       c.reader.curLen > 2 * derp::kKeyLen + derp::kMaxPacketSize)) {
    close(c, c.reader.curLen < 2 * derp::kKeyLen ? CloseReason::kBadFrame
                                                 : CloseReason::kFrameTooLarge);
    return false;
  }
  return true;
}

// A mesh peer watches: it is told of every client on this node (itself
// included), then of each that comes or goes.
void ShardServer::onWatchConns(Connection& c) {
  if (clientOf(c).watcher) return;
  clientOf(c).watcher = true;
  watchers_.push_back(c.idx);
  counters_.meshWatchers.add();
  const size_t buffers = std::max<size_t>(1, shared_.config.watcherQueueBytes / kPeerStateBuffer);
  c.control.setLimits(buffers, buffers * kPeerStateBuffer);
  directory().forEach([&](const derp::NodeKey& key, const KeyDirectory::Instance& i) {
    if (c.state == Connection::State::kClosing) return;
    queuePeerState(c, derp::PeerPresentFrame{key, i.info.ip, i.info.port, i.info.flags});
  });
}

void ShardServer::dropWatcher(Connection& c) {
  clientOf(c).watcher = false;
  counters_.meshWatchers.sub();
  std::erase(watchers_, c.idx);
}

// Every watcher on this shard learns that `key` connected (present: its
// info) or that its last connection left (nullptr).
void ShardServer::notifyWatchers(const derp::NodeKey& key, const PeerInfo* present) {
  // Backwards: a watcher that falls too far behind is closed, and leaves the list.
  for (size_t i = watchers_.size(); i-- > 0;) {
    Connection& w = *conns_[watchers_[i]];
    if (present != nullptr) {
      queuePeerState(w, derp::PeerPresentFrame{key, present->ip, present->port, present->flags});
    } else {
      queuePeerState(w, derp::PeerGoneFrame{key, derp::PeerGoneReason::kDisconnected});
    }
  }
}

// Appends a small control frame to the newest control buffer when it has
// room (one TLS record then carries hundreds of them), else to a new one.
void ShardServer::queuePeerState(Connection& c, const derp::Frame& f) {
  if (c.state == Connection::State::kClosing) return;
  size_t size = derp::encodedFrameSize(f);
  PacketBuf* tail = c.control.back();
  if (tail != nullptr && tail->flags == 0 &&
      tail->capacity - tail->start - tail->length >= size) {
    derp::encodeFrame(f, {tail->bytes() + tail->length, size});
    c.control.grewTail(size);
    markDirty(c);
    return;
  }
  if (c.control.size() >= c.control.maxPackets()) {
    logWarn("shard %d: mesh watcher %s fell %zu KiB of frames behind; closing it so it resyncs",
            id_, clientOf(c).key.toString(), c.control.bytes() / 1024);
    close(c, CloseReason::kWatcherOverflow);
    return;
  }
  PacketBuf* b = pool_.allocate(kPeerStateBuffer);
  if (b == nullptr) {
    close(c, CloseReason::kWatcherOverflow);
    return;
  }
  b->length = static_cast<uint32_t>(derp::encodeFrame(f, {b->bytes(), size}));
  releaseChain(c.control.push(b));
  markDirty(c);
}

// A packet a mesh peer forwards: delivered to the local client as a
// RecvPacket from the original source, rewritten in place. Never forwarded
// again: a key not connected here is dropped.
void ShardServer::onForwardPacket(Connection& c, ClientState& client, PacketBuf* b) {
  uint8_t* d = b->bytes();
  constexpr size_t kHdr = derp::kFrameHeaderLen;
  constexpr size_t kKey = derp::kKeyLen;
  size_t payload = c.reader.curLen - 2 * kKey;
  derp::NodeKey src;
  derp::NodeKey dst;
  std::memcpy(src.bytes.data(), d + kHdr, kKey);
  std::memcpy(dst.bytes.data(), d + kHdr + kKey, kKey);
  bool disco = derp::isDiscoPacket({d + kHdr + 2 * kKey, payload});
  counters_.meshForwardedInPackets.add();
  counters_.meshForwardedInBytes.add(payload);
  if (client.meshStats != nullptr) {
    if (MeshLinkStats* moved = client.meshStats->movedTo.load(std::memory_order_acquire)) {
      client.meshStats = moved;
    }
    client.meshStats->forwardedInPackets.fetch_add(1, std::memory_order_relaxed);
    client.meshStats->forwardedInBytes.fetch_add(payload, std::memory_order_relaxed);
  }
  const ConnRef* to = directory().lookup(dst);
  if (to == nullptr) {
    counters_.drop(
        directory().instances(dst) > 0 ? DropReason::kDupClient : DropReason::kUnknownDestOnFwd,
        disco);
    releaseBuf(b);
    return;
  }
  // [hdr][src][dst][payload] -> [hdr][src][payload], 32 bytes further in.
  std::memcpy(d + kHdr + kKey, d + kHdr, kKey);
  b->start = static_cast<uint16_t>(b->start + kKey);
  derp::writeFrameHeader(b->bytes(), derp::FrameType::kRecvPacket,
                         static_cast<uint32_t>(kKey + payload));
  b->length = static_cast<uint32_t>(kHdr + kKey + payload);
  b->flags = kBufIsPacket | (disco ? kBufIsDisco : 0);
  // The receiver is told PeerGone when the sender leaves the region.
  if (!client.haveLastDst || !(client.lastDst == dst) || !(client.lastFwdSrc == src)) {
    client.haveLastDst = true;
    client.lastDst = dst;
    client.lastFwdSrc = src;
    remoteSentTo_[src].insert(dst);
  }
  relay(*to, b);
}

void ShardServer::onClosePeer(const derp::NodeKey& key) {
  MailMessage m = mail(kMailClosePeer, 0, 0);
  m.key = key.bytes;
  broadcast(m);
  closeLocalInstances(key, CloseReason::kClosePeer);
}

void ShardServer::closeLocalInstances(const derp::NodeKey& key, CloseReason reason) {
  std::vector<ConnRef> mine;
  directory().forEachInstance(key, [&](const KeyDirectory::Instance& i) {
    if (i.ref.shard == id_) mine.push_back(i.ref);
  });
  for (const ConnRef& ref : mine) {
    if (Connection* c = find(ref.idx, ref.gen)) close(*c, reason);
  }
}

void ShardServer::applyRemotePresent(const derp::NodeKey& key, const MeshRef& ref) {
  directory().addRemote(key, ref);
  counters_.meshRemoteKeys.set(directory().remoteSize());
}

void ShardServer::applyRemoteGone(const derp::NodeKey& key, const MeshRef& ref) {
  if (directory().removeRemote(key, ref)) remoteKeyGone(key);
  counters_.meshRemoteKeys.set(directory().remoteSize());
}

void ShardServer::applyLinkDown(const MeshRef& ref) {
  for (const derp::NodeKey& key : directory().removeRemoteLink(ref)) remoteKeyGone(key);
  counters_.meshRemoteKeys.set(directory().remoteSize());
}

// A key left the region's other nodes: the local clients it sent packets to
// learn that it is gone (derper's peer-gone from region), unless it is
// connected here too.
void ShardServer::remoteKeyGone(const derp::NodeKey& key) {
  auto it = remoteSentTo_.find(key);
  if (it == remoteSentTo_.end()) return;
  if (directory().lookup(key) == nullptr) {
    for (const derp::NodeKey& dst : it->second) {
      if (const ConnRef* to = directory().lookup(dst)) {
        sendPeerGone(*to, key, derp::PeerGoneReason::kDisconnected);
      }
    }
  }
  remoteSentTo_.erase(it);
}

}  // namespace derpd::relay
