// ServerSession (server_session.h): an accepted connection's DERP client
// side: the checks on each frame header, the handshake (ClientInfo, the
// registration, ServerInfo held until every shard has it), the frames, and
// the calls the shared machinery makes into the role. Its HTTP phase is
// http_session.cc; packets go on to the packet path (packet_path.cc), mesh
// frames to mesh.cc.
#include <openssl/crypto.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/hex.h"
#include "base/log.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "relay/box_key_cache.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

// Room kept in front of a SendPacket's bytes when this node has mesh peers: a
// packet for a client on a peer becomes a ForwardPacket (32 bytes longer) in place.
constexpr uint16_t kMeshHeadroom = derp::kKeyLen;

// Whether a ClientInfo's meshKey is this region's (64 hex digits, either
// case), compared in constant time: how much of a guess matched must not
// show in how long the answer takes.
bool isMeshKey(std::string_view offered, std::string_view ours) {
  uint8_t a[32];
  uint8_t b[32];
  if (!hexDecodeInto(offered, a) || !hexDecodeInto(ours, b)) return false;
  return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

}  // namespace

// A frame header: checked against the limits for the connection's state
// before any of its body arrives; a buffer for the body if it is kept.
bool ServerSession::startFrame(Connection& c) {
  using derp::FrameType;
  auto type = static_cast<FrameType>(c.reader.curType);
  bool keep = true;
  uint16_t headroom = 0;
  if (c.state == Connection::State::kDerpHandshake) {
    if (type != FrameType::kClientInfo) {
      s_.close(c, CloseReason::kNotClientInfo);
      return false;
    }
    if (c.reader.curLen > derp::kMaxClientInfoLen) {
      s_.close(c, CloseReason::kFrameTooLarge);
      return false;
    }
    if (c.reader.curLen < derp::kMinClientInfoLen) {
      s_.close(c, CloseReason::kBadClientInfo);
      return false;
    }
    // Charged at the size of the buffer the body will take (one of its own
    // past the pool's largest class).
    const size_t need = derp::kFrameHeaderLen + c.reader.curLen;
    if (!s_.chargePreAuth(c, std::max(PacketPool::capacityFor(need), need))) {
      s_.close(c, CloseReason::kPreAuthMemory);
      return false;
    }
  } else {
    // derper's order: the frame is charged before its body is read.
    if (s_.shared_.rateLimit != nullptr && !client.canMesh)
      s_.limitRate(c, client, c.reader.curLen);
    switch (type) {
      case FrameType::kSendPacket:
        if (c.reader.curLen > derp::kKeyLen + derp::kMaxPacketSize) {
          s_.close(c, CloseReason::kFrameTooLarge);
          return false;
        }
        if (c.reader.curLen < derp::kKeyLen) {
          s_.close(c, CloseReason::kBadFrame);
          return false;
        }
        if (s_.shared_.mesh != nullptr) headroom = kMeshHeadroom;
        break;
      case FrameType::kNotePreferred:
        if (c.reader.curLen != 1) {
          s_.close(c, CloseReason::kBadFrame);
          return false;
        }
        break;
      case FrameType::kPing:
        if (c.reader.curLen < derp::kMinPingLen || c.reader.curLen > derp::kMaxPingLen) {
          s_.close(c, CloseReason::kBadFrame);
          return false;
        }
        break;
      case FrameType::kForwardPacket:
      case FrameType::kWatchConns:
      case FrameType::kClosePeer:
        if (!s_.checkMeshFrame(c)) return false;
        break;
      default:
        keep = false;  // unknown or not for a server: skipped, as derper does
        s_.counters_.unknownFrames.add();
        break;
    }
  }
  if (keep) {
    // Frames other than packets are small and short-lived (a ClientInfo, a
    // Ping): at the pool's cap they draw on its reserve, so a new client can
    // still register and pings are still answered.
    const bool packet = type == FrameType::kSendPacket || type == FrameType::kForwardPacket;
    const size_t bytes = headroom + derp::kFrameHeaderLen + c.reader.curLen;
    c.reader.body = bytes <= PacketPool::kMaxBufferBytes || type != FrameType::kClientInfo
                        ? s_.pool_.allocate(bytes, !packet)
                        : s_.pool_.allocateOversize(bytes);
    if (c.reader.body == nullptr) {
      // Out of packet memory: read past this frame and count the loss.
      s_.counters_.drop(DropReason::kNoMemory, false);
      return true;
    }
    c.reader.body->start = headroom;
    std::memcpy(c.reader.body->bytes(), c.reader.hdr, derp::kFrameHeaderLen);
  }
  return true;
}

void ServerSession::onClientInfo(Connection& c, std::span<const uint8_t> body) {
  auto frame = derp::parseFrameBody(c.reader.curType, body);
  if (!frame.ok()) {
    s_.close(c, CloseReason::kBadClientInfo);
    return;
  }
  const auto& ci = std::get<derp::ClientInfoFrame>(*frame);
  // One X25519 computation serves both boxes of the handshake, and a client
  // that connects again finds it in the cache.
  bool hit = false;
  std::optional<derp::BoxKey> boxKey =
      s_.shared_.boxKeys != nullptr
          ? s_.shared_.boxKeys->get(s_.shared_.config.serverKey, ci.key, hit)
          : derp::BoxKey::derive(s_.shared_.config.serverKey, ci.key);
  if (hit) s_.counters_.boxKeyHits.add();
  if (!boxKey) {
    s_.close(c, CloseReason::kBadClientInfo);
    return;
  }
  auto info = derp::openClientInfo(*boxKey, ci.sealed);
  if (!info.ok()) {
    logDebug("shard %d: client info rejected: %s", s_.id_, info.status().message());
    s_.close(c, CloseReason::kBadClientInfo);
    return;
  }
  client.key = ci.key;
  client.boxKey = *boxKey;
  s_.shared_.clientApps.count(info->appName);
  client.canMesh = s_.shared_.mesh != nullptr && isMeshKey(info->meshKey, s_.shared_.mesh->meshKey);
  // As derper: "regular" only when no other flag applies.
  client.peer.flags = static_cast<uint8_t>((client.canMesh ? derp::kPeerPresentIsMeshPeer : 0) |
                                           (info->isProber ? derp::kPeerPresentIsProber : 0) |
                                           (client.notIdeal ? derp::kPeerPresentNotIdeal : 0));
  if (client.peer.flags == 0) client.peer.flags = derp::kPeerPresentIsRegular;
  // -verify-clients / -verify-client-url: mesh peers are trusted by their key
  // (tailscaled and the admission URL would not know them). Anyone else waits,
  // reading nothing more, until the checker answers (ShardServer::onVerdict),
  // with the handshake deadline still running.
  if (s_.shared_.checker != nullptr && !client.canMesh) {
    client.verifying = true;
    std::optional<Verdict> now =
        s_.shared_.checker->check(CheckRequest{client.key, client.peer.ip, s_.id_, c.idx, c.gen});
    if (now) {
      s_.onVerdict(c, *now);  // a cached answer
    } else {
      s_.pauseInput(c);  // the answer comes on this thread, later (takeVerdicts)
    }
    return;
  }
  admit(c);
}

void ServerSession::admit(Connection& c) {
  client.verifying = false;
  s_.setState(c, Connection::State::kDerp);
  client.registered = true;
  if (client.canMesh) client.meshStats = s_.shared_.mesh->stats.forIncoming(client.key);
  s_.loop_.timers().cancel(c.deadline);
  s_.counters_.handshakes.add();
  s_.counters_.currentConnections.add();
  if (s_.shared_.rateLimit != nullptr && !client.canMesh) s_.takeRateLimit(c, client);
  queueServerInfo(c, client.boxKey);
  client.boxKey = {};  // needed for nothing else

  const uint64_t stamp = static_cast<uint64_t>(s_.clock_.now());
  s_.replica_.registerLocal(client.key, c.idx, c.gen, client.peer, stamp);
  if (s_.directory().instances(client.key) > 1) s_.counters_.duplicateKeys.add();
  s_.armKeepAlive(c);
}

// ServerInfo is the client's signal that it is registered, so every shard must
// be able to route to it before it leaves: it is queued now (after ServerKey,
// before anything else) but held, with everything behind it, until each other
// shard has acknowledged the registration.
void ServerSession::queueServerInfo(Connection& c, const derp::BoxKey& boxKey) {
  derp::ServerInfo si;
  // As derper advertises a limit: a client may pace itself to it.
  if (client.bucket.config.bytesPerSecond > 0) {
    si.tokenBucketBytesPerSecond = static_cast<int64_t>(client.bucket.config.bytesPerSecond);
    si.tokenBucketBytesBurst = static_cast<int64_t>(client.bucket.config.burst);
  }
  std::string json = derp::serverInfoJson(si);
  std::vector<uint8_t> sealed =
      derp::sealBox(boxKey, {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
  c.writeControlOnly = s_.replica_.waitsForAcks();
  s_.queueFrame(c, derp::ServerInfoFrame{sealed}, c.writeControlOnly ? kBufHold : 0);
}

void ServerSession::onRegistered(Connection& c) {
  if (!c.writeControlOnly) return;
  c.writeControlOnly = false;
  for (PacketBuf* b = c.control.front(); b != nullptr; b = b->next) b->flags &= ~kBufHold;
  s_.markDirty(c);
}

void ServerSession::onOtherFrame(Connection& c, uint8_t type, std::span<const uint8_t> body) {
  auto frame = derp::parseFrameBody(type, body);
  if (!frame.ok()) {
    s_.close(c, CloseReason::kBadFrame);
    return;
  }
  if (auto* ping = std::get_if<derp::PingFrame>(&*frame)) {
    s_.counters_.pingsReceived.add();
    // Pongs are the one frame a client can make us queue at will: past a
    // quarter of the control queue they are dropped (derper drops a pong
    // while one is pending), so they never push out the queue's oldest
    // frames: the ServerKey, a held ServerInfo, a PeerGone.
    if (c.control.size() >= c.control.maxPackets() / 4) {
      s_.counters_.pongsDropped.add();
    } else if (s_.queueFrame(c, derp::PongFrame{ping->data})) {
      s_.counters_.pongsSent.add();
    }
  } else if (std::holds_alternative<derp::WatchConnsFrame>(*frame)) {
    s_.onWatchConns(c);
  } else if (auto* cp = std::get_if<derp::ClosePeerFrame>(&*frame)) {
    s_.onClosePeer(cp->key);
  } else if (auto* pref = std::get_if<derp::NotePreferredFrame>(&*frame)) {
    if (pref->preferred) s_.counters_.homeClients.add();
    if (pref->preferred != client.preferred) {
      client.preferred = pref->preferred;
      (client.preferred ? s_.counters_.currentHomeConnections.add()
                        : s_.counters_.currentHomeConnections.sub());
      // A client says where home is right after connecting; only later
      // changes are moves (derper's 5 s).
      if (s_.clock_.now() - c.acceptedAt > 5 * kSecond) {
        (client.preferred ? s_.counters_.homeMovesIn : s_.counters_.homeMovesOut).add();
      }
    }
  }
}

// A client's complete frame. Packets keep their buffer (relayed as they are);
// every other body is parsed and its buffer released.
void ServerSession::onFrame(Connection& c, PacketBuf* b) {
  auto type = static_cast<derp::FrameType>(c.reader.curType);
  if (type == derp::FrameType::kSendPacket) {
    s_.onSendPacket(c, client, b);
    return;
  }
  if (type == derp::FrameType::kForwardPacket) {
    s_.onForwardPacket(c, client, b);
    return;
  }
  std::span<const uint8_t> body{b->bytes() + derp::kFrameHeaderLen, c.reader.curLen};
  if (type == derp::FrameType::kClientInfo) {
    onClientInfo(c, body);
    s_.releaseBuf(b);
    s_.chargePreAuth(c, 0);  // its body was the connection's last pre-auth buffer
    return;
  }
  onOtherFrame(c, c.reader.curType, body);
  s_.releaseBuf(b);
}

CloseReason ServerSession::deadlineReason(const Connection& c) const {
  return c.state == Connection::State::kDerp ? CloseReason::kReadTimeout
                                             : CloseReason::kHandshakeTimeout;
}

size_t ServerSession::onHttpBytes(Connection&, const uint8_t*, size_t n) {
  assert(false && "HTTP bytes after the upgrade");
  return n;
}

// A registered client is told to reconnect elsewhere and served until it
// goes; one that has not finished its handshake is closed.
void ServerSession::onDrain(Connection& c, const derp::RestartingFrame& restarting) {
  if (client.registered) {
    if (s_.queueFrame(c, restarting)) s_.counters_.drainTold.add();
  } else {
    s_.close(c, CloseReason::kShutdown);
  }
}

void ServerSession::onTornDown(Connection& c) {
  if (client.watcher) s_.dropWatcher(c);
  if (client.registered) s_.unregister(c);
}

}  // namespace derpd::relay
