// HttpSession (http_session.h), the HTTP phase of an accepted connection:
// request heads (gathered by http::HeadBuffer), routed to a response
// (http/routes, or /metrics and /debug/ from debug_http.cc), kept alive for
// the next request, or upgraded to DERP, where a ServerSession takes the
// connection and its bytes go to the frame reader (connection_io.cc). The
// outgoing mesh link's side of the upgrade is in link_session.cc.
#include <cassert>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "derp/frame.h"
#include "http/request_parser.h"
#include "http/routes.h"
#include "relay/http_session.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {

// Returns how many of the n bytes belong to the HTTP phase; the rest (bytes
// pipelined behind an upgrade) are DERP bytes.
size_t HttpSession::onHttpBytes(Connection& c, const uint8_t* data, size_t n) {
  if (c.closeAfterWrite) return n;  // answered and closing: ignore the rest
  c.http.append(data, n);
  if (!s_.chargePreAuth(c, c.http.capacity())) {
    s_.close(c, CloseReason::kPreAuthMemory);
    return n;
  }
  for (;;) {
    http::ParseResult r = c.http.next();
    if (r.status == http::ParseStatus::kNeedMore) return n;
    if (r.status != http::ParseStatus::kComplete) {
      bool tooLarge = r.status == http::ParseStatus::kHeadTooLarge;
      std::string resp = tooLarge ? http::errorResponse(431, "Request Header Fields Too Large")
                                  : http::errorResponse(400, "Bad Request");
      c.pendingClose = tooLarge ? CloseReason::kHeadTooLarge : CloseReason::kBadRequest;
      s_.queueControl(c, {reinterpret_cast<const uint8_t*>(resp.data()), resp.size()});
      c.closeAfterWrite = true;
      return n;
    }
    s_.counters_.httpRequests.add();
    const http::Request& req = r.request;
    size_t head = req.headLength;
    std::shared_ptr<const http::BootstrapDnsSnapshot> dns;
    std::shared_ptr<const http::AcmeChallengeSnapshot> challenges;
    http::RouteContext ctx{s_.shared_.serverPublicHex, c.transport->encrypted(),
                           s_.shared_.httpsPort, s_.shared_.home};
    ctx.derp = s_.shared_.derp;
    ctx.date = s_.httpDate();
    std::optional<http::RouteResult> observed = s_.routeObservability(c, req, ctx);
    if (observed) {
      s_.queueControl(c, {reinterpret_cast<const uint8_t*>(observed->response.data()),
                          observed->response.size()});
      if (!observed->keepAlive) c.closeAfterWrite = true;
    } else {
      if (c.listener == ListenerKind::kMain && req.path == "/bootstrap-dns") {
        s_.counters_.bootstrapDnsRequests.add();
        if (s_.shared_.bootstrapDns != nullptr) dns = s_.shared_.bootstrapDns->load();
        ctx.bootstrapDns = dns.get();
        ctx.peerIp = peer_.ip;
      }
      if (c.listener == ListenerKind::kPort80 && s_.shared_.acmeChallenges != nullptr) {
        challenges = s_.shared_.acmeChallenges->load();
        ctx.acmeChallenges = challenges.get();
      }
      http::RouteResult route =
          c.listener == ListenerKind::kPort80 ? http::routePort80(req, ctx) : http::route(req, ctx);
      if (route.idealNodeMismatch) s_.counters_.idealNodeMismatch.add();
      if (route.dnsQuery != http::DnsQuery::kNone) {
        s_.counters_.bootstrapDnsQueries[static_cast<size_t>(route.dnsQuery) - 1].add();
      }
      if (route.action == http::RouteAction::kRespond) {
        s_.queueControl(
            c, {reinterpret_cast<const uint8_t*>(route.response.data()), route.response.size()});
        if (!route.keepAlive) c.closeAfterWrite = true;
      } else {
        // Upgrade: the 101 (unless fast start) and ServerKey go out together;
        // over WebSocket, the 101 as it is and ServerKey in the first message.
        s_.counters_.derpUpgrades.add();
        derp::ServerKeyFrame sk{s_.shared_.serverPublic};
        std::vector<uint8_t> frame = derp::encodeFrame(sk);
        if (route.action == http::RouteAction::kUpgradeWebSocket) {
          s_.counters_.websocketUpgrades.add();
          // Responses to requests pipelined before this one are still HTTP:
          // written as they are, not wrapped like what follows the 101.
          for (PacketBuf* b = c.control.front(); b != nullptr; b = b->next) {
            b->flags |= kBufWsFrame;
          }
          s_.queueControl(
              c, {reinterpret_cast<const uint8_t*>(route.response.data()), route.response.size()},
              kBufWsFrame);
          c.ws = std::make_unique<http::ws::Decoder>();
          s_.queueControl(c, frame);
        } else {
          std::string out = route.action == http::RouteAction::kUpgradeDerp ? route.response : "";
          out.append(reinterpret_cast<const char*>(frame.data()), frame.size());
          s_.queueControl(c, {reinterpret_cast<const uint8_t*>(out.data()), out.size()});
        }
        s_.setState(c, Connection::State::kDerpHandshake);
        s_.loop_.timers().arm(c.deadline, s_.clock_.now() + s_.shared_.config.handshakeTimeout);
        // A DERP client's from here on. This session stays alive to the end
        // of the turn (its call is still running).
        s_.replaceSession(c, std::make_unique<ServerSession>(s_, peer_, route.idealNodeMismatch));
        // Bytes behind the request's blank line are DERP bytes (fast start
        // clients send ClientInfo in the same write).
        size_t consumedFromThisRead = c.http.fromLastAppend(head);
        c.http.release();
        s_.chargePreAuth(c, 0);
        return consumedFromThisRead;
      }
    }
    if (c.closeAfterWrite) return n;
    // Keep-alive: drop this request's head and look for a pipelined one.
    c.http.consume(head);
    s_.chargePreAuth(c, c.http.capacity());
    s_.loop_.timers().arm(c.deadline, s_.clock_.now() + s_.shared_.config.headerTimeout);
    if (c.http.empty()) return n;
  }
}

std::string_view ShardServer::httpDate() {
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  if (now != dateSecond_) {
    dateSecond_ = now;
    dateText_ = http::httpDate(now);
  }
  return dateText_;
}

bool HttpSession::startFrame(Connection& c) {
  assert(false && "a frame before the upgrade");
  s_.close(c, CloseReason::kBadFrame);
  return false;
}

void HttpSession::onFrame(Connection&, PacketBuf* b) { s_.releaseBuf(b); }

// A drain closes what has not become a DERP client.
void HttpSession::onDrain(Connection& c, const derp::RestartingFrame&) {
  s_.close(c, CloseReason::kShutdown);
}

}  // namespace derpd::relay
