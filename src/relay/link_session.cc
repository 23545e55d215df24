// LinkSession (link_session.h): an outgoing mesh link's connection from its
// connect to its close: TLS if the peer serves it, the upgrade request and
// the peer's 101, the DERP client's handshake with the node's key and the
// mesh key, WatchConns, and the PeerPresent/PeerGone frames whose keys are
// replicated to every shard. The link itself (its target, retries, the keys
// it reports) is ShardServer::MeshLink (mesh_link.{h,cc}).
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "derp/frame.h"
#include "derpd_config.h"
#include "relay/link_session.h"
#include "relay/mesh_link.h"

namespace derpd::relay {
namespace {

// The peer sends a KeepAlive every 60 s (+ up to 5 s); twice that with nothing
// at all means the link is dead even if TCP has not noticed.
constexpr Nanos kLinkReadTimeout = 130 * kSecond;
constexpr size_t kMaxResponseHead = 8 * 1024;

}  // namespace

ShardServer::MeshLink& LinkSession::link() const { return *s_.links_[slot_]; }

void LinkSession::onConnected(Connection& c, int res) {
  ShardServer::MeshLink& l = link();
  if (res < 0) {
    logDebug("mesh: %s: connect: %s", l.target.label, strerror(-res));
    s_.close(c, CloseReason::kMeshConnect);
    return;
  }
  s_.setState(c, Connection::State::kHttp);
  s_.armRecv(c);
  if (!l.target.tls) {
    queueRequest(c);
    return;
  }
  MeshState& mesh = *s_.shared_.mesh;
  absl::StatusOr<std::unique_ptr<TlsTransport>> tls =
      s_.tlsEngine_.connect(c, mesh.clientTls, l.target.host, mesh.verifyPeers);
  if (!tls.ok()) {
    logWarn("mesh: %s: %s", l.target.label, tls.status().message());
    s_.close(c, CloseReason::kTlsHandshake);
    return;
  }
  c.tls = *std::move(tls);
  c.transport = c.tls.get();
  // Writes the ClientHello into c.writing; the rest runs as bytes arrive.
  c.tls->startHandshake();
}

void LinkSession::queueRequest(Connection& c) {
  const ShardServer::MeshLink& l = link();
  const MeshTarget& t = l.target;
  std::string host =
      t.host.find(':') != std::string::npos ? absl::StrCat("[", t.host, "]") : t.host;
  uint16_t port = t.address.port();
  if (port != (t.tls ? 443 : 80)) absl::StrAppend(&host, ":", port);
  std::string req = absl::StrCat("GET /derp HTTP/1.1\r\nHost: ", host, "\r\nUser-Agent: derpd/",
                                 DERPD_VERSION, "\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n");
  s_.queueControl(c, {reinterpret_cast<const uint8_t*>(req.data()), req.size()});
}

// The peer's answer to the upgrade: 101, then DERP bytes (which may follow in
// the same read). Returns how many of the n bytes were the response head.
size_t LinkSession::onHttpBytes(Connection& c, const uint8_t* data, size_t n) {
  const ShardServer::MeshLink& l = link();
  c.http.append(data, n);
  std::string_view head(reinterpret_cast<const char*>(c.http.bytes().data()), c.http.size());
  size_t end = head.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (c.http.size() > kMaxResponseHead) {
      logWarn("mesh: %s: no end to the HTTP response head", l.target.label);
      s_.close(c, CloseReason::kMeshBadPeer);
    }
    return n;
  }
  std::string_view status = head.substr(0, head.find("\r\n"));
  if (!(status.starts_with("HTTP/1.1 101") || status.starts_with("HTTP/1.0 101"))) {
    logWarn("mesh: %s: upgrade refused: \"%s\"", l.target.label, std::string(status));
    s_.close(c, CloseReason::kMeshBadPeer);
    return n;
  }
  s_.setState(c, Connection::State::kDerpHandshake);
  size_t headLen = end + 4;
  size_t fromThisRead = c.http.fromLastAppend(headLen);
  c.http.release();
  return fromThisRead;
}

// Frames from the peer: everything a server sends is accepted (unknown ones
// skipped); the ones the link acts on are kept.
bool LinkSession::startFrame(Connection& c) {
  using derp::FrameType;
  auto type = static_cast<FrameType>(c.reader.curType);
  if (c.state == Connection::State::kDerpHandshake &&
      (link().boxKey ? type == FrameType::kServerKey : type != FrameType::kServerKey)) {
    s_.close(c, CloseReason::kMeshBadPeer);
    return false;
  }
  if (c.state == Connection::State::kDerp) {
    s_.loop_.timers().arm(c.deadline, s_.clock_.now() + kLinkReadTimeout);
  }
  switch (type) {
    case FrameType::kServerKey:
    case FrameType::kServerInfo:
    case FrameType::kPeerPresent:
    case FrameType::kPeerGone:
    case FrameType::kPing:
    case FrameType::kHealth:
    case FrameType::kRestarting:
      // Small control frames: at the pool's cap they draw on its reserve.
      c.reader.body = s_.pool_.allocate(derp::kFrameHeaderLen + c.reader.curLen, true);
      if (c.reader.body == nullptr) {
        s_.close(c, CloseReason::kMeshBadPeer);
        return false;
      }
      std::memcpy(c.reader.body->bytes(), c.reader.hdr, derp::kFrameHeaderLen);
      break;
    default:
      break;  // KeepAlive, packets for the node's own key, frames from the future
  }
  return true;
}

void LinkSession::onLinkFrame(Connection& c, std::span<const uint8_t> body) {
  ShardServer::MeshLink& l = link();
  auto frame = derp::parseFrameBody(c.reader.curType, body);
  if (!frame.ok()) {
    logWarn("mesh: %s: %s", l.target.label, frame.status().message());
    s_.close(c, CloseReason::kMeshBadPeer);
    return;
  }
  if (auto* sk = std::get_if<derp::ServerKeyFrame>(&*frame)) {
    if (sk->key == s_.shared_.serverPublic) {
      // This node itself (a name that resolves to every node of the region).
      logInfo("mesh: %s is this node; not linking to it", l.target.label);
      l.self = true;
      l.stats->live.store(false, std::memory_order_relaxed);
      s_.close(c, CloseReason::kMeshSelf);
      return;
    }
    s_.shared_.mesh->stats.learnedKey(l.stats, sk->key);
    l.boxKey = derp::BoxKey::derive(s_.shared_.config.serverKey, sk->key);
    if (!l.boxKey) {
      s_.close(c, CloseReason::kMeshBadPeer);
      return;
    }
    derp::ClientInfo info;
    info.version = static_cast<int>(derp::kProtocolVersion);
    info.meshKey = s_.shared_.mesh->meshKey;
    info.canAckPings = true;
    std::string json = derp::clientInfoJson(info);
    std::vector<uint8_t> sealed =
        derp::sealBox(*l.boxKey, {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
    s_.queueFrame(c, derp::ClientInfoFrame{s_.shared_.serverPublic, sealed});
  } else if (auto* si = std::get_if<derp::ServerInfoFrame>(&*frame)) {
    if (c.state != Connection::State::kDerpHandshake ||
        !derp::openBox(*l.boxKey, si->sealed).ok()) {
      logWarn("mesh: %s: ServerInfo does not open with its server key", l.target.label);
      s_.close(c, CloseReason::kMeshBadPeer);
      return;
    }
    s_.setState(c, Connection::State::kDerp);
    s_.loop_.timers().arm(c.deadline, s_.clock_.now() + kLinkReadTimeout);
    l.up = true;
    l.stats->up.set(1);
    l.stats->connects.add();
    s_.queueFrame(c, derp::WatchConnsFrame{});
  } else if (auto* pp = std::get_if<derp::PeerPresentFrame>(&*frame)) {
    if (!l.watching) {
      // The first answer to WatchConns (the peer lists at least our own
      // link): the peer took our mesh key; the link is good.
      l.watching = true;
      l.backoff = 0;
      logInfo("mesh: linked to %s", l.target.label);
    }
    // The peer lists our own link among its clients: not a client to forward to.
    if (pp->key == s_.shared_.serverPublic || !l.present.insert(pp->key).second) return;
    l.stats->keys.set(l.present.size());
    s_.announce(s_.mail(kMailMeshPresent, l.slot, l.gen), &pp->key);
  } else if (auto* pg = std::get_if<derp::PeerGoneFrame>(&*frame)) {
    if (!l.present.erase(pg->key)) return;
    l.stats->keys.set(l.present.size());
    s_.announce(s_.mail(kMailMeshGone, l.slot, l.gen), &pg->key);
  } else if (auto* ping = std::get_if<derp::PingFrame>(&*frame)) {
    s_.queueFrame(c, derp::PongFrame{ping->data});
  } else if (auto* health = std::get_if<derp::HealthFrame>(&*frame)) {
    if (!health->problem.empty()) {
      logWarn("mesh: %s reports: %s", l.target.label, std::string(health->problem));
    }
  } else if (auto* r = std::get_if<derp::RestartingFrame>(&*frame)) {
    // Come back when it says; its successor will have a fresh view of its clients.
    logInfo("mesh: %s is restarting; reconnecting in %u ms", l.target.label, r->reconnectInMs);
    l.retryIn = std::max<Nanos>(static_cast<Nanos>(r->reconnectInMs) * kMillisecond, 1);
    s_.close(c, CloseReason::kMeshRestarting);
  }
}

// close() of a link: what it had queued is dropped (counted before the
// queues are released; the rest of the link's end waits for onTornDown).
void LinkSession::onClosing(Connection& c) {
  ShardServer::MeshLink& l = link();
  for (SendQueue* q : {&c.packets, &c.disco}) {
    for (PacketBuf* b = q->front(); b != nullptr; b = b->next) {
      s_.counters_.drop(DropReason::kMeshLinkDown, q == &c.disco);
      l.stats->dropsLinkDown.add();
    }
  }
}

// The link's connection is torn down (any reason): its keys leave every
// replica, and it is retried unless it reached this node, its target is
// gone, or the node stops.
void LinkSession::onTornDown(Connection& c) {
  const CloseReason reason = c.closeReason;
  ShardServer::MeshLink& l = link();
  l.connected = false;
  const bool wasWatching = l.watching;
  if (l.up) {
    l.up = false;
    l.watching = false;
    l.stats->up.set(0);
    l.stats->keys.set(0);
    l.present.clear();
    s_.announce(s_.mail(kMailMeshLinkDown, l.slot, l.gen), nullptr);
  }
  if (wasWatching && reason != CloseReason::kShutdown && reason != CloseReason::kMeshRemoved) {
    logWarn("mesh: link to %s lost (%s); its clients are gone from the directory", l.target.label,
            closeReasonName(reason));
  } else if (reason == CloseReason::kEof && l.boxKey && l.backoff == 0) {
    // Handshaken, then closed when we asked to watch: it did not take our key.
    logWarn("mesh: %s refused WatchConns; does it have the same -mesh-psk-file? retrying",
            l.target.label);
  } else if (!wasWatching && reason != CloseReason::kMeshSelf &&
             reason != CloseReason::kMeshRemoved && reason != CloseReason::kShutdown &&
             l.backoff == 0) {
    // Logged once per outage: the retries after it stay quiet.
    std::string why = closeReasonName(reason);
    if (const char* bad = c.tls ? c.tls->verifyError() : nullptr) {
      absl::StrAppend(&why, ": certificate: ", bad);
    }
    logWarn("mesh: cannot link to %s (%s); retrying", l.target.label, why);
  }
  if (l.removed) {
    s_.links_[l.slot].reset();
    return;
  }
  if (l.self || s_.stopping_ || s_.draining_ || l.retry.armed()) return;
  s_.scheduleLinkRetry(l);
}

void LinkSession::onFrame(Connection& c, PacketBuf* b) {
  onLinkFrame(c, {b->bytes() + derp::kFrameHeaderLen, c.reader.curLen});
  s_.releaseBuf(b);
}

CloseReason LinkSession::deadlineReason(const Connection& c) const {
  switch (c.state) {
    case Connection::State::kConnecting:
      return CloseReason::kMeshConnect;
    case Connection::State::kDerp:
      return CloseReason::kReadTimeout;  // heard nothing for too long
    default:
      return CloseReason::kHandshakeTimeout;
  }
}

}  // namespace derpd::relay
