// -home, /bootstrap-dns, /debug/ and --metrics-addr against a live derpd.
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr Nanos kWait = 5 * kSecond;

std::unique_ptr<DerpdProcess> startDerpd(std::vector<std::string> extra) {
  DerpdOptions opts;
  opts.extraArgs = std::move(extra);
  auto p = DerpdProcess::start(opts);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

// The port from derpd's "/metrics and /debug/ on http://127.0.0.1:PORT" line.
std::optional<uint16_t> metricsPort(const DerpdProcess& d) {
  if (!d.waitForLog("/metrics and /debug/ on http://", kWait)) return std::nullopt;
  std::string line = *d.findLog("/metrics and /debug/ on http://");
  uint32_t port = 0;
  if (!absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) return std::nullopt;
  return static_cast<uint16_t>(port);
}

TEST(ObservabilityTest, HomeDefaultBlankAndRedirect) {
  auto byDefault = startDerpd({});
  ASSERT_NE(byDefault, nullptr);
  ASSERT_OK_AND_ASSIGN(HttpResponse def, httpGet(byDefault->port(), "/"));
  EXPECT_EQ(def.status, 200);
  EXPECT_THAT(def.body, HasSubstr("DERP"));

  auto blank = startDerpd({"-home", "blank"});
  ASSERT_NE(blank, nullptr);
  ASSERT_OK_AND_ASSIGN(HttpResponse b, httpGet(blank->port(), "/"));
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(b.body, "");

  auto redirect = startDerpd({"-home=https://example.com/about"});
  ASSERT_NE(redirect, nullptr);
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(redirect->port(), "/"));
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.header("Location"), "https://example.com/about");
  // Other pages are unaffected.
  ASSERT_OK_AND_ASSIGN(HttpResponse robots, httpGet(redirect->port(), "/robots.txt"));
  EXPECT_EQ(robots.status, 200);
}

// localhost comes from /etc/hosts, so no DNS server is needed; the
// unpublished name is an address literal, which getaddrinfo answers itself.
TEST(ObservabilityTest, BootstrapDnsServesPublishedNamesAndUnpublishedOnQuery) {
  auto d = startDerpd({"-bootstrap-dns-names", "localhost",
                       "-unpublished-bootstrap-dns-names", "127.0.0.9"});
  ASSERT_NE(d, nullptr);
  RealClock clock;
  const Nanos deadline = clock.now() + kWait;
  HttpResponse r;
  // The first resolution runs in the background right after start.
  for (;;) {
    ASSERT_OK_AND_ASSIGN(r, httpGet(d->port(), "/bootstrap-dns"));
    if (r.body.find("localhost") != std::string::npos || clock.now() > deadline) break;
    ::usleep(20000);
  }
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_THAT(r.body, HasSubstr("{\n\t\"localhost\": [\n"));
  EXPECT_THAT(r.body, HasSubstr("\"127.0.0.1\""));
  EXPECT_THAT(r.body, Not(HasSubstr("127.0.0.9")));

  // The unpublished name is answered alone, and only when asked for.
  ASSERT_OK_AND_ASSIGN(HttpResponse q, httpGet(d->port(), "/bootstrap-dns?q=127.0.0.9"));
  EXPECT_EQ(q.body, "{\n\t\"127.0.0.9\": [\n\t\t\"127.0.0.9\"\n\t]\n}");
  ASSERT_OK_AND_ASSIGN(HttpResponse other, httpGet(d->port(), "/bootstrap-dns?q=localhost"));
  EXPECT_THAT(other.body, HasSubstr("\"localhost\": ["));
  EXPECT_THAT(other.body, Not(HasSubstr("127.0.0.9")));

  ASSERT_OK_AND_ASSIGN(HttpResponse varz, httpGet(d->port(), "/debug/varz"));
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> samples, parsePrometheusText(varz.body));
  EXPECT_GE(sumMetric(samples, "bootstrap_dns_requests"), 3);
}

TEST(ObservabilityTest, DebugPagesFromLoopbackAndVarzMovesWithTraffic) {
  auto d = startDerpd({});
  ASSERT_NE(d, nullptr);
  ASSERT_OK_AND_ASSIGN(HttpResponse index, httpGet(d->port(), "/debug/"));
  EXPECT_EQ(index.status, 200);
  EXPECT_THAT(index.body, HasSubstr("/debug/varz"));
  ASSERT_OK_AND_ASSIGN(HttpResponse metrics, httpGet(d->port(), "/debug/metrics"));
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("derpd_build_info{version=\""));

  auto varz = [&]() -> absl::StatusOr<std::vector<MetricSample>> {
    auto r = httpGet(d->port(), "/debug/varz");
    if (!r.ok()) return r.status();
    if (r->status != 200) return absl::InternalError(r->statusLine);
    return parsePrometheusText(r->body);
  };
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> before, varz());
  for (const char* name :
       {"derp_accepts", "derp_current_connections", "derp_packets_sent", "derp_packets_received",
        "derp_bytes_sent", "derp_bytes_received", "derp_packets_dropped",
        "derp_packets_dropped_reason", "derp_packets_dropped_type", "derp_got_ping",
        "derp_sent_pong", "derp_home_moves_in", "derp_current_home_connections",
        "derp_clients_total", "stun_requests", "uptime_sec"}) {
    EXPECT_TRUE(hasMetric(before, name)) << name;
  }
  EXPECT_EQ(sumMetric(before, "derp_packets_received"), 0);

  ASSERT_OK_AND_ASSIGN(auto a, connectClient(d->port()));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(d->port()));
  ASSERT_OK(b->notePreferred(true));
  for (uint32_t i = 0; i < 5; i++) {
    ASSERT_OK(a->sendPacket(b->publicKey(), taggedPayload(i, 1, 100)));
    ASSERT_OK_AND_ASSIGN(auto p, b->recvPacket(kWait));
  }
  ASSERT_OK(a->sendPacket(derp::PrivateKey::generate().publicKey(), taggedPayload(9, 9, 10)));
  ASSERT_OK_AND_ASSIGN(Nanos rtt, a->ping(kWait));
  (void)rtt;

  RealClock clock;
  const Nanos deadline = clock.now() + kWait;
  std::vector<MetricSample> after;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(after, varz());
    if (sumMetric(after, "derp_packets_dropped") >= 1 &&
        sumMetric(after, "derp_current_home_connections") >= 1) {
      break;
    }
    ASSERT_LT(clock.now(), deadline) << "varz did not move";
    ::usleep(20000);
  }
  EXPECT_EQ(sumMetric(after, "derp_accepts"), 2);
  EXPECT_EQ(sumMetric(after, "derp_current_connections"), 2);
  EXPECT_EQ(sumMetric(after, "derp_clients_total"), 2);
  EXPECT_EQ(sumMetric(after, "derp_packets_received"), 6);
  EXPECT_EQ(sumMetric(after, "derp_packets_sent"), 5);
  EXPECT_EQ(sumMetric(after, "derp_bytes_sent"), 500);
  EXPECT_EQ(sumMetric(after, "derp_packets_dropped_reason", {{"reason", "unknown_dest"}}), 1);
  EXPECT_EQ(sumMetric(after, "derp_packets_dropped_type", {{"type", "other"}}), 1);
  EXPECT_EQ(sumMetric(after, "derp_peer_gone_not_here_frames"), 1);
  EXPECT_EQ(sumMetric(after, "derp_got_ping"), 1);
  EXPECT_EQ(sumMetric(after, "derp_sent_pong"), 1);
  EXPECT_EQ(sumMetric(after, "derp_current_home_connections"), 1);
}

TEST(ObservabilityTest, MetricsAddrServesMetricsAndDebugOnly) {
  auto d = startDerpd({"--metrics-addr", "127.0.0.1:0"});
  ASSERT_NE(d, nullptr);
  std::optional<uint16_t> port = metricsPort(*d);
  ASSERT_TRUE(port.has_value()) << d->logText();
  ASSERT_NE(*port, d->port());
  ASSERT_OK_AND_ASSIGN(HttpResponse m, httpGet(*port, "/metrics"));
  EXPECT_EQ(m.status, 200);
  EXPECT_THAT(m.body, HasSubstr("derpd_build_info{version=\""));
  ASSERT_OK_AND_ASSIGN(HttpResponse v, httpGet(*port, "/debug/varz"));
  EXPECT_EQ(v.status, 200);
  EXPECT_THAT(v.body, HasSubstr("derp_current_connections "));
  // Nothing else is served there: no DERP, no home page.
  ASSERT_OK_AND_ASSIGN(HttpResponse derp, httpExchange(*port, derpUpgradeRequest(*port)));
  EXPECT_EQ(derp.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpResponse home, httpGet(*port, "/"));
  EXPECT_EQ(home.status, 404);
}

// Any address is accepted (who is answered is --metrics-allow's business,
// debug_netns_test); what is not an address stops startup naming the flag.
TEST(ObservabilityTest, BadMetricsAddrStopsStartup) {
  for (const char* bad : {"nonsense", "10.1.2.3", "example.com:9090", "127.0.0.1:99999"}) {
    SCOPED_TRACE(bad);
    DerpdOptions opts;
    opts.extraArgs = {"--metrics-addr", bad};
    ASSERT_OK_AND_ASSIGN(auto p, DerpdProcess::spawn(opts));
    ASSERT_OK_AND_ASSIGN(int code, p->waitExit(kWait));
    EXPECT_EQ(code, 2);
    ASSERT_TRUE(p->waitForOutputEnd(kWait));
    EXPECT_THAT(p->logText(), HasSubstr("-metrics-addr"));
  }
}

// Sockets by state follow a connection through its life: a silent one is in
// http, one that upgraded and says nothing is handshaking, a client is
// registered, and all of them leave the counts when they go. The overload
// gauges are there (zero on an idle server).
TEST(ObservabilityTest, ConnectionsByStateFollowTheHandshake) {
  auto d = startDerpd({"--metrics-addr", "127.0.0.1:0"});
  ASSERT_NE(d, nullptr);
  std::optional<uint16_t> mport = metricsPort(*d);
  ASSERT_TRUE(mport.has_value()) << d->logText();
  auto state = [&](const char* s) {
    absl::StatusOr<double> v = scrapeMetric(*mport, "derpd_connections", {{"state", s}});
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  };
  // Waits until derpd_connections{state} == want; returns the last value.
  auto waitState = [&](const char* s, double want) {
    RealClock clock;
    const Nanos deadline = clock.now() + kWait;
    double v = state(s);
    while (v != want && clock.now() < deadline) {
      ::usleep(20000);
      v = state(s);
    }
    return v;
  };
  for (const char* name :
       {"derpd_recv_no_buffers_total", "derpd_cq_overflow", "derpd_mailbox_backlog"}) {
    absl::StatusOr<double> v = scrapeMetric(*mport, name, {});
    ASSERT_TRUE(v.ok()) << name << ": " << v.status();
    EXPECT_EQ(*v, 0) << name;
  }
  // The scrape itself is a socket of the metrics listener, in http.
  const double idleHttp = state("http");
  EXPECT_EQ(state("registered"), 0);

  std::optional<TcpConn> silent;
  ASSERT_OK_AND_ASSIGN(silent, TcpConn::connect(d->port()));
  EXPECT_EQ(waitState("http", idleHttp + 1), idleHttp + 1);
  std::optional<TcpConn> upgraded;
  ASSERT_OK_AND_ASSIGN(upgraded, TcpConn::connect(d->port()));
  ASSERT_OK(rawUpgrade(*upgraded, d->port(), kWait).status());
  EXPECT_EQ(waitState("handshaking", 1), 1);
  ASSERT_OK_AND_ASSIGN(auto client, connectClient(d->port()));
  EXPECT_EQ(waitState("registered", 1), 1);
  EXPECT_EQ(state("handshaking"), 1);

  client.reset();
  upgraded.reset();
  silent.reset();
  EXPECT_EQ(waitState("registered", 0), 0);
  EXPECT_EQ(waitState("handshaking", 0), 0);
  EXPECT_EQ(waitState("http", idleHttp), idleHttp);
  EXPECT_EQ(waitState("closing", 0), 0);
}

}  // namespace
}  // namespace derpd::testing
