// ShardServer's outgoing mesh links: for each peer this shard owns, a DERP
// client connection with the node's own key and the mesh key, over TLS when
// the peer serves it. It watches the peer's clients (WatchConns) and carries
// ForwardPacket frames to them. The keys it learns are replicated to every
// shard through the mailbox, tagged with the link's generation, and leave
// again when the link breaks; it then reconnects with jittered backoff.
//
// The link is a Connection like any accepted one (same reader, writer, TLS
// over the connection's buffers, timers); what differs is the side it plays:
// it writes the upgrade request and ClientInfo and reads server frames.
#include <sys/socket.h>

#include <cstring>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "derp/frame.h"
#include "derpd_config.h"
#include "relay/mesh_link.h"
#include "tls/client_context.h"

#include <openssl/x509.h>

namespace derpd::relay {
namespace {

constexpr Nanos kFirstRetry = 1 * kSecond;
constexpr Nanos kMaxRetry = 30 * kSecond;
// The peer sends a KeepAlive every 60 s (+ up to 5 s); twice that with nothing
// at all means the link is dead even if TCP has not noticed.
constexpr Nanos kLinkReadTimeout = 130 * kSecond;
constexpr size_t kMaxResponseHead = 8 * 1024;
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
  Connection& c = newConnection(fd, ListenerKind::kMain);
  c.meshLink = l.slot;
  c.session = &linkSession_;
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

void ShardServer::onLinkConnected(Connection& c, int res) {
  MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  if (res < 0) {
    logDebug("mesh: %s: connect: %s", l.target.label, strerror(-res));
    close(c, CloseReason::kMeshConnect);
    return;
  }
  setState(c, Connection::State::kHttp);
  armRecv(c);
  if (!l.target.tls) {
    queueLinkRequest(c);
    return;
  }
  MeshState& mesh = *shared_.mesh;
  absl::StatusOr<std::unique_ptr<TlsTransport>> tls =
      tlsEngine_.connect(c, mesh.clientTls, l.target.host, mesh.verifyPeers);
  if (!tls.ok()) {
    logWarn("mesh: %s: %s", l.target.label, tls.status().message());
    close(c, CloseReason::kTlsHandshake);
    return;
  }
  c.tls = *std::move(tls);
  c.transport = c.tls.get();
  // Writes the ClientHello into c.writing; the rest runs as bytes arrive.
  c.tls->startHandshake();
}

void ShardServer::queueLinkRequest(Connection& c) {
  const MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  const MeshTarget& t = l.target;
  std::string host = t.host.find(':') != std::string::npos ? absl::StrCat("[", t.host, "]") : t.host;
  uint16_t port = t.address.port();
  if (port != (t.tls ? 443 : 80)) absl::StrAppend(&host, ":", port);
  std::string req = absl::StrCat("GET /derp HTTP/1.1\r\nHost: ", host,
                                 "\r\nUser-Agent: derpd/", DERPD_VERSION,
                                 "\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n");
  queueControl(c, {reinterpret_cast<const uint8_t*>(req.data()), req.size()});
}

// The peer's answer to the upgrade: 101, then DERP bytes (which may follow in
// the same read). Returns how many of the n bytes were the response head.
size_t ShardServer::onLinkResponseBytes(Connection& c, const uint8_t* data, size_t n) {
  const MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  c.http.append(data, n);
  std::string_view head(reinterpret_cast<const char*>(c.http.bytes().data()), c.http.size());
  size_t end = head.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (c.http.size() > kMaxResponseHead) {
      logWarn("mesh: %s: no end to the HTTP response head", l.target.label);
      close(c, CloseReason::kMeshBadPeer);
    }
    return n;
  }
  std::string_view status = head.substr(0, head.find("\r\n"));
  if (!(status.starts_with("HTTP/1.1 101") || status.starts_with("HTTP/1.0 101"))) {
    logWarn("mesh: %s: upgrade refused: \"%s\"", l.target.label, std::string(status));
    close(c, CloseReason::kMeshBadPeer);
    return n;
  }
  setState(c, Connection::State::kDerpHandshake);
  size_t headLen = end + 4;
  size_t fromThisRead = c.http.fromLastAppend(headLen);
  c.http.release();
  return fromThisRead;
}

// Frames from the peer: everything a server sends is accepted (unknown ones
// skipped); the ones the link acts on are kept.
bool ShardServer::startLinkFrame(Connection& c) {
  using derp::FrameType;
  auto type = static_cast<FrameType>(c.reader.curType);
  if (c.state == Connection::State::kDerpHandshake &&
      (links_[static_cast<size_t>(c.meshLink)]->boxKey ? type == FrameType::kServerKey
                                                        : type != FrameType::kServerKey)) {
    close(c, CloseReason::kMeshBadPeer);
    return false;
  }
  if (c.state == Connection::State::kDerp) {
    loop_.timers().arm(c.deadline, clock_.now() + kLinkReadTimeout);
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
      c.reader.body = pool_.allocate(derp::kFrameHeaderLen + c.reader.curLen, true);
      if (c.reader.body == nullptr) {
        close(c, CloseReason::kMeshBadPeer);
        return false;
      }
      std::memcpy(c.reader.body->bytes(), c.reader.hdr, derp::kFrameHeaderLen);
      break;
    default:
      break;  // KeepAlive, packets for the node's own key, frames from the future
  }
  return true;
}

void ShardServer::onLinkFrame(Connection& c, std::span<const uint8_t> body) {
  MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  auto frame = derp::parseFrameBody(c.reader.curType, body);
  if (!frame.ok()) {
    logWarn("mesh: %s: %s", l.target.label, frame.status().message());
    close(c, CloseReason::kMeshBadPeer);
    return;
  }
  if (auto* sk = std::get_if<derp::ServerKeyFrame>(&*frame)) {
    if (sk->key == shared_.serverPublic) {
      // This node itself (a name that resolves to every node of the region).
      logInfo("mesh: %s is this node; not linking to it", l.target.label);
      l.self = true;
      l.stats->live.store(false, std::memory_order_relaxed);
      close(c, CloseReason::kMeshSelf);
      return;
    }
    shared_.mesh->stats.learnedKey(l.stats, sk->key);
    l.boxKey = derp::BoxKey::derive(shared_.config.serverKey, sk->key);
    if (!l.boxKey) {
      close(c, CloseReason::kMeshBadPeer);
      return;
    }
    derp::ClientInfo info;
    info.version = static_cast<int>(derp::kProtocolVersion);
    info.meshKey = shared_.mesh->meshKey;
    info.canAckPings = true;
    std::string json = derp::clientInfoJson(info);
    std::vector<uint8_t> sealed =
        derp::sealBox(*l.boxKey, {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
    queueFrame(c, derp::ClientInfoFrame{shared_.serverPublic, sealed});
  } else if (auto* si = std::get_if<derp::ServerInfoFrame>(&*frame)) {
    if (c.state != Connection::State::kDerpHandshake || !derp::openBox(*l.boxKey, si->sealed).ok()) {
      logWarn("mesh: %s: ServerInfo does not open with its server key", l.target.label);
      close(c, CloseReason::kMeshBadPeer);
      return;
    }
    setState(c, Connection::State::kDerp);
    loop_.timers().arm(c.deadline, clock_.now() + kLinkReadTimeout);
    l.up = true;
    l.stats->up.set(1);
    l.stats->connects.add();
    queueFrame(c, derp::WatchConnsFrame{});
  } else if (auto* pp = std::get_if<derp::PeerPresentFrame>(&*frame)) {
    if (!l.watching) {
      // The first answer to WatchConns (the peer lists at least our own
      // link): the peer took our mesh key; the link is good.
      l.watching = true;
      l.backoff = 0;
      logInfo("mesh: linked to %s", l.target.label);
    }
    // The peer lists our own link among its clients: not a client to forward to.
    if (pp->key == shared_.serverPublic || !l.present.insert(pp->key).second) return;
    l.stats->keys.set(l.present.size());
    announce(mail(kMailMeshPresent, l.slot, l.gen), &pp->key);
  } else if (auto* pg = std::get_if<derp::PeerGoneFrame>(&*frame)) {
    if (!l.present.erase(pg->key)) return;
    l.stats->keys.set(l.present.size());
    announce(mail(kMailMeshGone, l.slot, l.gen), &pg->key);
  } else if (auto* ping = std::get_if<derp::PingFrame>(&*frame)) {
    queueFrame(c, derp::PongFrame{ping->data});
  } else if (auto* health = std::get_if<derp::HealthFrame>(&*frame)) {
    if (!health->problem.empty()) {
      logWarn("mesh: %s reports: %s", l.target.label, std::string(health->problem));
    }
  } else if (auto* r = std::get_if<derp::RestartingFrame>(&*frame)) {
    // Come back when it says; its successor will have a fresh view of its clients.
    logInfo("mesh: %s is restarting; reconnecting in %u ms", l.target.label, r->reconnectInMs);
    l.retryIn = std::max<Nanos>(static_cast<Nanos>(r->reconnectInMs) * kMillisecond, 1);
    close(c, CloseReason::kMeshRestarting);
  }
}

// The link's connection is closing (any reason): its keys leave every
// replica, what it still held for the peer is dropped and counted, and it is
// retried unless it reached this node, its target is gone, or the node stops.
// close() of a link: what it had queued is dropped (counted before the
// queues are released; the rest of the link's end waits for onLinkClosed).
void ShardServer::countLinkDrops(Connection& c) {
  MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  for (SendQueue* q : {&c.packets, &c.disco}) {
    for (PacketBuf* b = q->front(); b != nullptr; b = b->next) {
      counters_.drop(DropReason::kMeshLinkDown, q == &c.disco);
      l.stats->dropsLinkDown.add();
    }
  }
}

void ShardServer::onLinkClosed(Connection& c, CloseReason reason) {
  MeshLink& l = *links_[static_cast<size_t>(c.meshLink)];
  l.connected = false;
  const bool wasWatching = l.watching;
  if (l.up) {
    l.up = false;
    l.watching = false;
    l.stats->up.set(0);
    l.stats->keys.set(0);
    l.present.clear();
    announce(mail(kMailMeshLinkDown, l.slot, l.gen), nullptr);
  }
  if (wasWatching && reason != CloseReason::kShutdown && reason != CloseReason::kMeshRemoved) {
    logWarn("mesh: link to %s lost (%s); its clients are gone from the directory",
            l.target.label, closeReasonName(reason));
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
    links_[l.slot].reset();
    return;
  }
  if (l.self || stopping_ || draining_ || l.retry.armed()) return;
  scheduleLinkRetry(l);
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

// The link session (session.h): the calls the shared machinery makes into an
// outgoing link.
void ShardServer::LinkSession::onFrame(Connection& c, PacketBuf* b) {
  s_.onLinkFrame(c, {b->bytes() + derp::kFrameHeaderLen, c.reader.curLen});
  s_.releaseBuf(b);
}

CloseReason ShardServer::LinkSession::deadlineReason(const Connection& c) const {
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
