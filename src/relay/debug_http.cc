// ShardServer's observability pages: /metrics and /debug/, for loopback and
// tailnet peers (derper's rule for /debug/) and --metrics-allow's prefixes;
// 403 for anyone else: the counters, the version, certificate expiry and mesh
// peers are nobody else's business.
// Served on the main listener and on the --metrics-addr one, which serves
// nothing else.
#include <algorithm>
#include <ctime>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "derpd_config.h"
#include "relay/shard_server.h"
#include "relay/varz.h"

namespace derpd::relay {
namespace {

constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";
// What derper's /debug/varz says it is.
constexpr std::string_view kVarzText = "text/plain;version=0.0.4;charset=utf-8";

void appendTlsMetrics(std::string& out, const tls::ServerTls& t) {
  absl::StrAppend(&out,
                  "# HELP derpd_tls_cert_expiry_timestamp_seconds when each served certificate "
                  "expires, by the first name it is valid for\n"
                  "# TYPE derpd_tls_cert_expiry_timestamp_seconds gauge\n");
  if (std::shared_ptr<const tls::CertSet> set = t.certs()) {
    std::vector<std::string_view> seen;
    for (const tls::CertifiedKey& c : set->certs) {
      const std::string_view name = c.names.empty() ? std::string_view("") : c.names.front();
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      absl::StrAppend(&out, "derpd_tls_cert_expiry_timestamp_seconds{name=\"", promLabelValue(name),
                      "\"} ", c.notAfterUnix, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP derpd_tls_cert_reloads_total certificate reloads, by result\n"
                  "# TYPE derpd_tls_cert_reloads_total counter\n"
                  "derpd_tls_cert_reloads_total{result=\"ok\"} ",
                  t.reloadsOk.load(std::memory_order_relaxed), "\n",
                  "derpd_tls_cert_reloads_total{result=\"error\"} ",
                  t.reloadsFailed.load(std::memory_order_relaxed), "\n",
                  "# HELP derpd_tls_cert_expiring_loads_total certificates loaded (at start or "
                  "on reload) already expired or expiring within 14 days\n"
                  "# TYPE derpd_tls_cert_expiring_loads_total counter\n"
                  "derpd_tls_cert_expiring_loads_total ",
                  t.expiringLoads.load(std::memory_order_relaxed), "\n",
                  "# HELP derpd_tls_handshakes_awaiting_certificate_total TLS handshakes "
                  "refused because their name's certificate is still being obtained\n"
                  "# TYPE derpd_tls_handshakes_awaiting_certificate_total counter\n"
                  "derpd_tls_handshakes_awaiting_certificate_total ",
                  t.refusedAwaitingCertificate.load(std::memory_order_relaxed), "\n",
                  "# HELP derpd_acme_orders_total certificates sought over ACME (order to "
                  "download), by result\n"
                  "# TYPE derpd_acme_orders_total counter\n"
                  "derpd_acme_orders_total{result=\"ok\"} ",
                  t.acmeOrdersOk.load(std::memory_order_relaxed), "\n",
                  "derpd_acme_orders_total{result=\"error\"} ",
                  t.acmeOrdersFailed.load(std::memory_order_relaxed), "\n");
  // Per name the ACME manager keeps (bounded by -hostname): nothing without ACME.
  const std::vector<tls::ServerTls::AcmeNameStatus> acme = t.acmeStatus();
  if (acme.empty()) return;
  const struct {
    const char* name;
    const char* help;
    int64_t (*value)(const tls::ServerTls::AcmeNameStatus&);
  } gauges[] = {
      {"derpd_acme_consecutive_failures", "failed ACME attempts in a row, by name",
       [](const tls::ServerTls::AcmeNameStatus& a) -> int64_t { return a.consecutiveFailures; }},
      {"derpd_acme_last_failure_timestamp_seconds",
       "when the last ACME attempt for a name failed (0: never)",
       [](const tls::ServerTls::AcmeNameStatus& a) { return a.lastFailureUnix; }},
      {"derpd_acme_next_attempt_timestamp_seconds",
       "when a name's certificate is next sought (renewal or retry)",
       [](const tls::ServerTls::AcmeNameStatus& a) { return a.nextAttemptUnix; }},
  };
  for (const auto& g : gauges) {
    absl::StrAppend(&out, "# HELP ", g.name, " ", g.help, "\n# TYPE ", g.name, " gauge\n");
    for (const tls::ServerTls::AcmeNameStatus& a : acme) {
      absl::StrAppend(&out, g.name, "{name=\"", promLabelValue(a.name), "\"} ", g.value(a), "\n");
    }
  }
}

std::string debugIndex() {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>derpd debug</title></head>"
      "<body>\n<h1>derpd ",
      DERPD_VERSION, "</h1>\n<ul>\n",
      "<li><a href=\"/debug/varz\">/debug/varz</a>: counters under derper's names "
      "(Prometheus text)</li>\n",
      "<li><a href=\"/debug/metrics\">/debug/metrics</a>: derpd's Prometheus metrics "
      "(the same as /metrics)</li>\n",
      "<li><a href=\"/debug/mesh\">/debug/mesh</a>: mesh peers, their links and what was "
      "forwarded to them</li>\n",
      "<li><a href=\"/debug/apps\">/debug/apps</a>: DERP handshakes by the client's "
      "AppName</li>\n",
      "</ul>\n</body></html>\n");
}

}  // namespace

bool mayObserve(const std::array<uint8_t, 16>& ip, const std::vector<IpPrefix>& extra) {
  if (isLoopbackIp(ip)) return true;
  for (const std::vector<IpPrefix>* list : {&tailnetPrefixes(), &extra}) {
    for (const IpPrefix& p : *list) {
      if (p.contains(ip)) return true;
    }
  }
  return false;
}

std::optional<http::RouteResult> ShardServer::routeObservability(const Connection& c,
                                                                 const http::Request& req,
                                                                 const http::RouteContext& ctx) {
  if (c.listener == ListenerKind::kPort80) return std::nullopt;
  const std::string_view path = req.path;
  const bool getOrHead = req.method == "GET" || req.method == "HEAD";
  auto metrics = [&] {
    std::string body = renderMetrics(shared_.counters);
    if (shared_.tls != nullptr) appendTlsMetrics(body, *shared_.tls);
    if (shared_.mesh != nullptr) shared_.mesh->stats.render(body);
    return http::respond(req, ctx, 200, kPrometheusText, body);
  };
  if (path == "/metrics" && getOrHead) {
    return c.mayObserve ? metrics() : http::debugForbidden(req, ctx);
  }
  if (path == "/debug" || path.starts_with("/debug/")) {
    if (!c.mayObserve) return http::debugForbidden(req, ctx);
    if (path == "/debug" || path == "/debug/") {
      return http::respond(req, ctx, 200, "text/html; charset=utf-8", debugIndex());
    }
    if (path == "/debug/varz") {
      return http::respond(req, ctx, 200, kVarzText,
                           renderVarz(shared_.counters, shared_.startUnixSeconds,
                                      static_cast<int64_t>(::time(nullptr))));
    }
    if (path == "/debug/metrics") return metrics();
    if (path == "/debug/apps") {
      return http::respond(req, ctx, 200, "text/plain; charset=utf-8",
                           shared_.clientApps.debugText());
    }
    if (path == "/debug/mesh") {
      std::string body = shared_.mesh != nullptr ? shared_.mesh->stats.debugText()
                                                 : std::string("no mesh peers (-mesh-with)\n");
      return http::respond(req, ctx, 200, "text/plain; charset=utf-8", body);
    }
  } else if (c.listener != ListenerKind::kMetrics) {
    return std::nullopt;  // the main listener's other routes
  }
  return http::respond(req, ctx, 404, "text/plain; charset=utf-8", "404 page not found\n");
}

}  // namespace derpd::relay
