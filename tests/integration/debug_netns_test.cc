// /debug/ and /metrics are refused (403) to a peer that is not on loopback, a
// tailnet address (100.64.0.0/10, fd7a:115c:a1e0::/48) or in --metrics-allow.
// The test makes two network namespaces joined by a veth pair (10.x, 100.x and
// fd7a:: addresses that exist only inside them), moves itself into the first,
// starts derpd there on all addresses, and asks from the second with curl.
// Exits 77 (skipped) when namespaces cannot be made here.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

std::string gServerNs;
std::string gClientNs;
constexpr const char* kServerIp = "10.213.77.1";
constexpr const char* kClientIp = "10.213.77.2";
// Tailscale's ranges, on the same link.
constexpr const char* kServerTailnetIp = "100.100.77.1";
constexpr const char* kClientTailnetIp = "100.100.77.2";
constexpr const char* kServerTailnetIp6 = "fd7a:115c:a1e0::1";
constexpr const char* kClientTailnetIp6 = "fd7a:115c:a1e0::2";

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

void removeNamespaces() {
  sh("ip netns del " + gServerNs);
  sh("ip netns del " + gClientNs);
}

// Empty on success, else why the namespaces could not be made.
std::string makeNamespaces() {
  const std::string pid = std::to_string(::getpid());
  gServerNs = "derpd-srv-" + pid;
  gClientNs = "derpd-cli-" + pid;
  const std::string vs = "dvs" + pid;
  const std::string vc = "dvc" + pid;
  const std::string steps[] = {
      "ip netns add " + gServerNs,
      "ip netns add " + gClientNs,
      "ip link add " + vs + " netns " + gServerNs + " type veth peer name " + vc + " netns " +
          gClientNs,
      "ip -n " + gServerNs + " addr add " + kServerIp + "/24 dev " + vs,
      "ip -n " + gClientNs + " addr add " + kClientIp + "/24 dev " + vc,
      "ip -n " + gServerNs + " addr add " + kServerTailnetIp + "/24 dev " + vs,
      "ip -n " + gClientNs + " addr add " + kClientTailnetIp + "/24 dev " + vc,
      "ip -n " + gServerNs + " addr add " + kServerTailnetIp6 + "/64 dev " + vs + " nodad",
      "ip -n " + gClientNs + " addr add " + kClientTailnetIp6 + "/64 dev " + vc + " nodad",
      "ip -n " + gServerNs + " link set lo up",
      "ip -n " + gClientNs + " link set lo up",
      "ip -n " + gServerNs + " link set " + vs + " up",
      "ip -n " + gClientNs + " link set " + vc + " up",
  };
  for (const std::string& step : steps) {
    if (sh(step) != 0) return "`" + step + "` failed";
  }
  // derpd inherits this process's namespace.
  int fd = ::open(("/var/run/netns/" + gServerNs).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) return "setns into " + gServerNs + " failed";
  ::close(fd);
  return "";
}

// curl from the client namespace, to the server's address `to` (from the
// client's address on the same network); returns the HTTP status it printed.
std::string curlStatus(uint16_t port, const std::string& path, const std::string& to = kServerIp) {
  const std::string host = to.find(':') != std::string::npos ? "[" + to + "]" : to;
  auto r =
      runCommand({"/usr/sbin/ip", "netns", "exec", gClientNs, "curl", "-s", "-o", "/dev/null", "-m",
                  "5", "-w", "%{http_code}", absl::StrCat("http://", host, ":", port, path)},
                 {}, 10 * kSecond);
  return r.ok() ? r->out : std::string(r.status().message());
}

// The port of derpd's own --metrics-addr listener (bound to all addresses).
uint16_t metricsPort(const DerpdProcess& d) {
  EXPECT_TRUE(d.waitForLog("/metrics and /debug/ on http://", 5 * kSecond));
  std::string line = d.findLog("/metrics and /debug/ on http://").value_or("");
  uint32_t port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) << line;
  return static_cast<uint16_t>(port);
}

TEST(DebugNetnsTest, DebugIsRefusedToANonLoopbackPeer) {
  DerpdOptions opts;
  opts.extraArgs = {"-a", ":0"};  // after the defaults: all addresses
  ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start(opts));
  // The other namespace reaches it...
  EXPECT_EQ(curlStatus(d->port(), "/generate_204"), "204");
  // ...but not its debug pages.
  EXPECT_EQ(curlStatus(d->port(), "/debug/"), "403");
  EXPECT_EQ(curlStatus(d->port(), "/debug/varz"), "403");
  EXPECT_EQ(curlStatus(d->port(), "/debug/metrics"), "403");
  EXPECT_EQ(curlStatus(d->port(), "/metrics"), "403");
  // Loopback (inside the server's namespace) may.
  ASSERT_OK_AND_ASSIGN(HttpResponse local, httpGet(d->port(), "/debug/varz"));
  EXPECT_EQ(local.status, 200);
  ASSERT_OK_AND_ASSIGN(HttpResponse metrics, httpGet(d->port(), "/metrics"));
  EXPECT_EQ(metrics.status, 200);
}

// derper's rule: an operator reaches /debug/ over the tailnet.
TEST(DebugNetnsTest, TailnetPeersMayReadDebugAndMetrics) {
  DerpdOptions opts;
  opts.extraArgs = {"-a", ":0"};
  ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start(opts));
  EXPECT_EQ(curlStatus(d->port(), "/debug/varz", kServerTailnetIp), "200");
  EXPECT_EQ(curlStatus(d->port(), "/metrics", kServerTailnetIp), "200");
  EXPECT_EQ(curlStatus(d->port(), "/debug/varz", kServerTailnetIp6), "200");
  EXPECT_EQ(curlStatus(d->port(), "/metrics", kServerTailnetIp6), "200");
  EXPECT_EQ(curlStatus(d->port(), "/metrics", kServerIp), "403");  // the 10.x address is not
}

// A Prometheus on the pod network scrapes a hostNetwork derpd: --metrics-addr
// on all addresses, --metrics-allow naming the scraper's network.
TEST(DebugNetnsTest, MetricsAllowAdmitsItsPrefixesOnEveryListener) {
  DerpdOptions opts;
  opts.extraArgs = {
      "-a", ":0", "--metrics-addr", "0.0.0.0:0", "--metrics-allow", "192.0.2.0/24,10.213.77.0/28"};
  ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start(opts));
  const uint16_t mport = metricsPort(*d);
  ASSERT_NE(mport, 0);
  EXPECT_TRUE(d->findLog("anyone else gets 403").has_value());
  EXPECT_EQ(curlStatus(mport, "/metrics"), "200");
  EXPECT_EQ(curlStatus(mport, "/debug/varz"), "200");
  EXPECT_EQ(curlStatus(d->port(), "/metrics"), "200");
  // The metrics listener serves nothing else.
  EXPECT_EQ(curlStatus(mport, "/generate_204"), "404");

  DerpdOptions other;
  other.extraArgs = {"-a",
                     ":0",
                     "--metrics-addr",
                     "0.0.0.0:0",
                     "--metrics-allow",
                     "10.213.77.0/31"};  // 10.213.77.0 and .1: not the client's .2
  ASSERT_OK_AND_ASSIGN(auto e, DerpdProcess::start(other));
  const uint16_t eport = metricsPort(*e);
  ASSERT_NE(eport, 0);
  // The main listener answers 403; the metrics listener, which serves nothing
  // else, closes the connection as soon as it is accepted, and counts it.
  EXPECT_EQ(curlStatus(e->port(), "/debug/varz"), "403");
  EXPECT_EQ(curlStatus(eport, "/metrics"), "000");
  ASSERT_OK_AND_ASSIGN(HttpResponse local, httpGet(eport, "/metrics"));
  EXPECT_EQ(local.status, 200);
  EXPECT_NE(local.body.find("derpd_accepts_limited_total{reason=\"not_observer\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  using namespace derpd::testing;
  if (::access("/usr/bin/curl", X_OK) != 0) {
    std::printf("skipped: curl is not installed\n");
    return 77;
  }
  std::string why = makeNamespaces();
  if (!why.empty()) {
    std::printf("skipped: cannot make network namespaces here: %s\n", why.c_str());
    removeNamespaces();
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  removeNamespaces();
  return rc;
}
