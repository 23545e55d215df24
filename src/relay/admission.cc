// ShardServer's admission: what gets in and how much it may hold before it
// has authenticated. Accepts (single-shot, kAcceptsInFlight per listener),
// the node's budget of accepted sockets under the open-file limit, and the
// shard's budget of bytes buffered for unauthenticated clients.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "net/socket_address.h"
#include "relay/http_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

// Before a client has authenticated, what it sends is buffered: a request head
// (up to 16 KiB) and a ClientInfo body (up to 64 KiB, reserved when its header
// arrives). Honest ones are a few hundred bytes and cost nothing here; larger
// ones share one budget per shard, and one that would pass it closes its
// connection (preauth_memory). So unauthenticated connections can hold at
// most this much beyond 2 KiB each, and never crowd out the packets of
// authenticated clients in the pool.
constexpr size_t kPreAuthSmall = 2048;
constexpr size_t kPreAuthBudget = 16 << 20;

}  // namespace

void ShardServer::armAccept() {
  for (auto& ops : acceptOps_) {
    const int fd = listenerFd(ops.front().kind);
    if (fd < 0) continue;
    for (AcceptOp& op : ops) armAcceptOn(fd, op);
  }
}

int ShardServer::listenerFd(ListenerKind kind) const {
  switch (kind) {
    case ListenerKind::kMain: return listener_.get();
    case ListenerKind::kPort80: return port80Listener_.get();
    case ListenerKind::kMetrics: return metricsListener_.get();
  }
  return -1;
}

void ShardServer::armAcceptOn(int fd, AcceptOp& op) {
  if (stopping_ || op.armed) return;
  op.armed = true;
  io_uring_sqe* s = loop_.ring().sqe();
  io_uring_prep_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
  IoRing::setCompletion(s, &op);
}

void ShardServer::onAccept(AcceptOp& op, int res) {
  op.armed = false;
  if (res >= 0) {
    if (stopping_ || draining_) {
      ::close(res);
    } else if (op.kind != ListenerKind::kMetrics && !takeSocketBudget()) {
      ::close(res);
      counters_.acceptsRefusedFdLimit.add();
      if (clock_.now() - fdLimitWarnedAt_ >= kSecond) {
        fdLimitWarnedAt_ = clock_.now();
        logWarn("shard %d: %zu sockets open, the open-file limit's budget; refusing connections",
                id_, shared_.maxAcceptedSockets);
      }
    } else {
      // Once per connection, for /debug/, PeerPresent and the per-address
      // count (the accept asks for no address).
      net::SocketAddress peer;
      peer.length = sizeof(peer.storage);
      PeerInfo info;
      const bool havePeer =
          ::getpeername(res, reinterpret_cast<sockaddr*>(&peer.storage), &peer.length) == 0;
      if (havePeer) {
        info.port = peer.port();
        if (peer.family() == AF_INET) {
          const auto* v4 = reinterpret_cast<const sockaddr_in*>(&peer.storage);
          info.ip[10] = info.ip[11] = 0xff;
          std::memcpy(info.ip.data() + 12, &v4->sin_addr, 4);
        } else if (peer.family() == AF_INET6) {
          const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&peer.storage);
          std::memcpy(info.ip.data(), &v6->sin6_addr, 16);
        }
      }
      std::optional<AcceptLimit> refused = refuseByLimits(info.ip, op.kind);
      if (refused) {
        ::close(res);
        if (op.kind != ListenerKind::kMetrics) {
          shared_.acceptedSockets.fetch_sub(1, std::memory_order_relaxed);
        }
        counters_.acceptsLimited[static_cast<size_t>(*refused)].add();
      } else {
        counters_.accepts.add();
        Connection& c = newConnection(res, op.kind, std::make_unique<HttpSession>(*this, info));
        c.mayObserve = havePeer && relay::mayObserve(info.ip, shared_.config.observers);
        c.holdsSocketBudget = op.kind != ListenerKind::kMetrics;
        c.peerIp = info.ip;
        c.holdsIpSlot = op.kind != ListenerKind::kMetrics && shared_.config.maxConnsPerIp > 0;
        if (shared_.tls != nullptr && op.kind == ListenerKind::kMain) {
          c.tls = tlsEngine_.accept(c, *shared_.tls);
          c.transport = c.tls.get();
        }
        loop_.timers().arm(c.deadline, clock_.now() + shared_.config.headerTimeout);
        armRecv(c);
      }
    }
  }
  if (!stopping_ && !draining_) {
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      if (!acceptRetry_.armed()) {
        logWarn("shard %d: accept: %s; retrying in 100ms", id_, strerror(-res));
        loop_.timers().arm(acceptRetry_, clock_.now() + 100 * kMillisecond);
      }
    } else {
      armAcceptOn(listenerFd(op.kind), op);
    }
  }
}

// The metrics listener serves only peers that may read it, closed at once
// otherwise; they are exempt from the limits: an operator can watch a flood.
std::optional<AcceptLimit> ShardServer::refuseByLimits(const Connection::Ip& ip,
                                                       ListenerKind kind) {
  if (kind == ListenerKind::kMetrics) {
    if (mayObserve(ip, shared_.config.observers)) return std::nullopt;
    return AcceptLimit::kNotObserver;
  }
  const RelayConfig& cfg = shared_.config;
  if (kind == ListenerKind::kMain && !shared_.acceptRate.allow(clock_.now())) {
    warnRefusing("-accept-connection-limit", "accepts over the rate are closed");
    return AcceptLimit::kRate;
  }
  if (cfg.maxHandshakesPerShard > 0) {
    const size_t handshaking =
        counters_.connectionsByState[static_cast<size_t>(Connection::State::kHttp)].get() +
        counters_.connectionsByState[static_cast<size_t>(Connection::State::kDerpHandshake)].get();
    if (handshaking >= cfg.maxHandshakesPerShard) {
      warnRefusing("--max-handshakes-per-shard",
                   absl::StrCat(handshaking, " connections are still in their handshake"));
      return AcceptLimit::kHandshakes;
    }
  }
  if (cfg.maxConnsPerIp > 0 && !shared_.perIp.acquire(ip, cfg.maxConnsPerIp)) {
    warnRefusing("--max-conns-per-ip",
                 absl::StrCat(net::formatIp(ip), " has ", cfg.maxConnsPerIp, " connections open"));
    return AcceptLimit::kPerIp;
  }
  return std::nullopt;
}

void ShardServer::warnRefusing(const char* what, const std::string& detail) {
  if (clock_.now() - limitWarnedAt_ < kSecond) return;
  limitWarnedAt_ = clock_.now();
  logWarn("shard %d: refusing connections (%s): %s; counted in derpd_accepts_limited_total", id_,
          what, detail);
}

bool ShardServer::takeSocketBudget() {
  if (shared_.acceptedSockets.fetch_add(1, std::memory_order_relaxed) <
      shared_.maxAcceptedSockets) {
    return true;
  }
  shared_.acceptedSockets.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

bool ShardServer::chargePreAuth(Connection& c, size_t bytes) {
  const size_t charge = bytes > kPreAuthSmall ? bytes : 0;
  if (charge == c.preAuthCharge) return true;
  preAuthBytes_ = preAuthBytes_ - c.preAuthCharge + charge;
  c.preAuthCharge = static_cast<uint32_t>(charge);
  counters_.preAuthBytes.set(preAuthBytes_);
  return charge == 0 || preAuthBytes_ <= kPreAuthBudget;
}

}  // namespace derpd::relay
