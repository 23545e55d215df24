// derpd's HTTP endpoints (PROTOCOL.md "HTTP endpoints"): a pure function from a
// parsed request to what the connection must do. Any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/acme_challenges.h"
#include "http/bootstrap_dns.h"
#include "http/request_parser.h"

namespace derpd::http {

struct RouteContext {
  std::string_view serverPublicKeyHex;  // 64 lowercase hex, for Derp-Public-Key
  bool tls = false;                     // adds HSTS/CSP headers like derper over TLS
  uint16_t httpsPort = 443;             // where port 80 redirects to
  // -home: "" serves the default page, "blank" an empty one; anything else is
  // an http(s) URL that / redirects to (302).
  std::string_view home = {};
  // /bootstrap-dns answers; nullptr before the first resolution (or with no
  // names configured), which serves an empty body like derper.
  const BootstrapDnsSnapshot* bootstrapDns = nullptr;
  // The client's address (IPv4 mapped into IPv6), for the rollout share of
  // unpublished /bootstrap-dns names.
  std::array<uint8_t, 16> peerIp = {};
  // The HTTP-01 answers routePort80 gives; nullptr: none pending.
  const AcmeChallengeSnapshot* acmeChallenges = nullptr;
  // -derp=false: /derp answers 404 (STUN and the other endpoints stay).
  bool derp = true;
  // The Date header's value (RFC 9110 6.6.1, IMF-fixdate: httpDate()); empty:
  // none. The raw 101s carry none, as derper's hijacked ones.
  std::string_view date = {};
};

// "Tue, 08 Dec 2026 00:02:56 GMT" for a Unix time.
std::string httpDate(int64_t unixSeconds);

enum class RouteAction {
  kRespond,           // write `response`; keep the connection iff keepAlive
  kUpgradeDerp,       // write `response` (the 101), then speak DERP
  kUpgradeDerpFast,   // Derp-Fast-Start: 1: write nothing, speak DERP at once
  kUpgradeWebSocket,  // write `response` (the 101), then speak DERP inside WebSocket frames
};

// What a /bootstrap-dns?q=<name> query found (derper counts the same).
enum class DnsQuery : uint8_t {
  kNone,             // not a ?q= query
  kUnpublished,      // an unpublished name, answered
  kRolloutExcluded,  // an unpublished name whose rollout leaves this client out
  kPublished,        // a published name (the published set is served)
  kUnknown,          // neither
};

struct RouteResult {
  RouteAction action = RouteAction::kRespond;
  int status = 0;
  std::string response;  // complete response bytes (status line, headers, body)
  bool keepAlive = false;
  bool idealNodeMismatch = false;  // an Ideal-Node header was present
  DnsQuery dnsQuery = DnsQuery::kNone;
};

RouteResult route(const Request& request, const RouteContext& ctx);

// The plain-HTTP listener beside a TLS one (-http-port): /generate_204 is
// answered, ACME HTTP-01 paths get 404 (no ACME yet), GET and HEAD elsewhere
// are redirected (302) to the same host and target over https, other methods
// get 400 "Use HTTPS", as derper's port-80 handler does.
RouteResult routePort80(const Request& request, const RouteContext& ctx);

// A response laid out like every other route's (TLS headers, keep-alive as the
// request asks, no body for HEAD): for pages served outside route(), such as
// /metrics and /debug/.
RouteResult respond(const Request& request, const RouteContext& ctx, int status,
                    std::string_view contentType, std::string_view body);

// /debug/ asked for by a peer that may not see it: derper's 403.
RouteResult debugForbidden(const Request& request, const RouteContext& ctx);

// A complete error response with Connection: close (400, 408, 431, ...).
std::string errorResponse(int status, std::string_view body);

}  // namespace derpd::http
