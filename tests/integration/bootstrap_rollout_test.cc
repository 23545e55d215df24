// -unpublished-bootstrap-dns-names name/txtname (derper's rollout): the share
// of clients a name is given to comes from txtname's TXT record, chosen by the
// client's address. Real DNS: pebble-challtestsrv (Debian's pebble) answers
// the A and TXT records on port 53 inside a network namespace of the test's
// own, and derpd runs there with a resolv.conf naming it (bind-mounted over
// /etc/resolv.conf in a mount namespace of derpd's own). Clients ask from
// forty non-loopback addresses (10.214.0.10-49 on the namespace's lo), so
// derper's per-address choice applies; its arithmetic is checked against Go's
// own generator in rollout_test. Exits 77 (skipped) when not root or a tool
// is missing. Every wait is bounded.
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"
#include "client/http_fetch.h"
#include "gtest/gtest.h"
#include "http/rollout.h"
#include "integration/child_process.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_pki.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

constexpr int kClients = 40;
constexpr Nanos kWait = 15 * kSecond;
constexpr uint16_t kManagementPort = 8055;  // inside the test's namespace: free

std::string gNs;
std::string gDir;
pid_t gDnsServer = -1;

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string clientIp(int i) { return absl::StrCat("10.214.0.", 10 + i); }

// Empty on success, else why the test cannot run here.
std::string setUpWorld() {
  if (::geteuid() != 0) return "needs root (network and mount namespaces, port 53)";
  for (const char* tool : {"ip", "unshare", "mount", "pebble-challtestsrv"}) {
    if (!findOnPath(tool)) return absl::StrCat(tool, " not found");
  }
  gNs = absl::StrCat("derpd-dns-", ::getpid());
  std::vector<std::string> steps = {"ip netns add " + gNs, "ip -n " + gNs + " link set lo up"};
  for (int i = 0; i < kClients; i++) {
    steps.push_back(absl::StrCat("ip -n ", gNs, " addr add ", clientIp(i), "/24 dev lo"));
  }
  for (const std::string& step : steps) {
    if (sh(step) != 0) return "`" + step + "` failed";
  }
  // Everything started from here on (DNS server, derpd) is in the namespace.
  const int fd = ::open(("/var/run/netns/" + gNs).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) return "setns into " + gNs + " failed";
  ::close(fd);
  absl::StatusOr<std::string> dir = makeTempDir();
  if (!dir.ok()) return std::string(dir.status().message());
  gDir = *dir;
  // No default answers: a name the test did not add does not exist.
  absl::StatusOr<pid_t> dns = launchLogged(
      {*findOnPath("pebble-challtestsrv"), "-defaultIPv4", "", "-defaultIPv6", "", "-dns01",
       "127.0.0.1:53", "-management", absl::StrCat("127.0.0.1:", kManagementPort), "-http01", "",
       "-https01", "", "-tlsalpn01", ""},
      {}, gDir + "/challtestsrv.log");
  if (!dns.ok()) return std::string(dns.status().message());
  gDnsServer = *dns;
  return "";
}

void tearDownWorld() {
  if (gDnsServer > 0) stopChild(gDnsServer);
  if (!gDir.empty()) removeTree(gDir);
  if (!gNs.empty()) sh("ip netns del " + gNs);
}

// One call to challtestsrv's management API, retried while it starts.
absl::Status manage(const std::string& path, const std::string& json) {
  const Nanos deadline = client::monotonicNow() + kWait;
  for (;;) {
    client::HttpRequest req;
    req.method = "POST";
    req.url = absl::StrCat("http://127.0.0.1:", kManagementPort, path);
    req.body = json;
    req.timeout = kSecond;
    absl::StatusOr<client::HttpResponse> r = client::fetch(req, {});
    if (r.ok() && r->status == 200) return absl::OkStatus();
    if (client::monotonicNow() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          path, " ", json, ": ",
          r.ok() ? absl::StrCat("HTTP ", r->status) : std::string(r.status().message())));
    }
    ::usleep(100 * 1000);
  }
}

absl::Status addA(const std::string& name, const std::string& ip) {
  return manage("/add-a", absl::StrCat(R"({"host":")", name, R"(.","addresses":[")", ip, R"("]})"));
}

absl::Status setTxt(const std::string& name, const std::string& value) {
  return manage("/set-txt", absl::StrCat(R"({"host":")", name, R"(.","value":")", value, R"("})"));
}

// GET /bootstrap-dns?q=name from sourceIp; the body.
absl::StatusOr<std::string> query(uint16_t port, const std::string& sourceIp,
                                  const std::string& name) {
  absl::StatusOr<TcpConn> conn = TcpConn::connect(port, 0, sourceIp.c_str());
  if (!conn.ok()) return conn.status();
  absl::Status st = conn->writeAll(absl::StrCat(
      "GET /bootstrap-dns?q=", name, " HTTP/1.1\r\nHost: derp\r\nConnection: close\r\n\r\n"));
  if (!st.ok()) return st;
  absl::StatusOr<HttpResponse> r = readHttpResponse(*conn);
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::InternalError(absl::StrCat("HTTP ", r->status));
  return r->body;
}

// The relay's form of an address: IPv4 mapped into IPv6.
std::array<uint8_t, 16> mapped(int i) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 214, 0, static_cast<uint8_t>(10 + i)};
}

class BootstrapRolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(std::string derpd, binaryFromEnv("DERPD_BINARY"));
    ASSERT_OK(replaceFileAtomically(gDir, "resolv.conf",
                                    "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n"));
    // DerpdProcess runs $DERPD_BINARY: here a script that execs derpd (same
    // pid, so signals reach it) with the test's resolv.conf.
    const std::string script = absl::StrCat(
        "#!/bin/sh\nexec unshare --mount --propagation private -- sh -c "
        "'mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"' sh ",
        gDir, "/resolv.conf '", derpd, "' \"$@\"\n");
    ASSERT_OK(replaceFileAtomically(gDir, "derpd-with-dns", script));
    ASSERT_EQ(::chmod((gDir + "/derpd-with-dns").c_str(), 0755), 0) << strerror(errno);
    realDerpd_ = derpd;
    ::setenv("DERPD_BINARY", (gDir + "/derpd-with-dns").c_str(), 1);
  }

  void TearDown() override {
    if (!realDerpd_.empty()) ::setenv("DERPD_BINARY", realDerpd_.c_str(), 1);
  }

  std::string realDerpd_;
};

TEST_F(BootstrapRolloutTest, TxtRecordSharesNameByClientAddress) {
  ASSERT_OK(addA("pub.test", "192.0.2.1"));
  ASSERT_OK(addA("half.test", "192.0.2.50"));
  ASSERT_OK(addA("all.test", "192.0.2.100"));
  ASSERT_OK(addA("none.test", "192.0.2.10"));
  ASSERT_OK(addA("norecord.test", "192.0.2.11"));
  ASSERT_OK(addA("garbled.test", "192.0.2.12"));
  ASSERT_OK(addA("plain.test", "192.0.2.13"));
  ASSERT_OK(setTxt("r50.test", "50"));
  ASSERT_OK(setTxt("r100.test", "100"));
  ASSERT_OK(setTxt("r0.test", "0"));
  ASSERT_OK(setTxt("garbage.test", "fifty"));

  DerpdOptions o;
  o.extraArgs = {"--metrics-addr", "127.0.0.1:0",
                 // derper accepts /txtname on published names too, and ignores it.
                 "-bootstrap-dns-names", "pub.test/r0.test", "-unpublished-bootstrap-dns-names",
                 "half.test/r50.test,all.test/r100.test,none.test/r0.test,"
                 "norecord.test/nosuch.test,garbled.test/garbage.test,plain.test"};
  ASSERT_OK_AND_ASSIGN(MetricsNode node, startWithMetrics(std::move(o)));
  DerpdProcess& d = *node.process;

  // The first resolution runs in the background right after start.
  const Nanos deadline = client::monotonicNow() + kWait;
  std::string published;
  for (;;) {
    absl::StatusOr<std::string> body = query(d.port(), clientIp(0), "");
    if (body.ok() && body->find("192.0.2.1") != std::string::npos) {
      published = *body;
      break;
    }
    ASSERT_LT(client::monotonicNow(), deadline) << d.logText();
    ::usleep(50 * 1000);
  }
  EXPECT_EQ(published, "{\n\t\"pub.test\": [\n\t\t\"192.0.2.1\"\n\t]\n}");
  // The round's lines are logged in list order; derpd's output is read by
  // another thread of the test, so wait for the last before looking.
  ASSERT_TRUE(d.waitForLog("garbled.test is given to 0% of clients (TXT garbage.test)", kWait))
      << d.logText();
  EXPECT_TRUE(d.findLog("half.test is given to 50% of clients (TXT r50.test)")) << d.logText();
  EXPECT_TRUE(d.findLog("all.test is given to 100% of clients")) << d.logText();
  EXPECT_TRUE(d.findLog("none.test is given to 0% of clients")) << d.logText();
  EXPECT_TRUE(d.findLog("nosuch.test (TXT)")) << d.logText();
  EXPECT_TRUE(d.findLog("garbage.test's TXT record holds no percentage")) << d.logText();
  EXPECT_FALSE(d.findLog("r0.test (TXT)")) << "a published name's TXT name is not looked up";

  int halfIn = 0;
  int excluded = 0;
  for (int i = 0; i < kClients; i++) {
    SCOPED_TRACE(clientIp(i));
    const bool want = http::rolloutIncludes(mapped(i), 0.5);
    for (int round = 0; round < 2; round++) {  // the same answer every time
      ASSERT_OK_AND_ASSIGN(std::string half, query(d.port(), clientIp(i), "half.test"));
      EXPECT_EQ(half, want ? "{\n\t\"half.test\": [\n\t\t\"192.0.2.50\"\n\t]\n}" : published);
      excluded += want ? 0 : 1;
    }
    halfIn += want ? 1 : 0;
    ASSERT_OK_AND_ASSIGN(std::string all, query(d.port(), clientIp(i), "all.test"));
    EXPECT_EQ(all, "{\n\t\"all.test\": [\n\t\t\"192.0.2.100\"\n\t]\n}");
    ASSERT_OK_AND_ASSIGN(std::string plain, query(d.port(), clientIp(i), "plain.test"));
    EXPECT_EQ(plain, "{\n\t\"plain.test\": [\n\t\t\"192.0.2.13\"\n\t]\n}");
    for (const char* none : {"none.test", "norecord.test", "garbled.test"}) {
      ASSERT_OK_AND_ASSIGN(std::string body, query(d.port(), clientIp(i), none));
      EXPECT_EQ(body, published) << none;
      excluded++;
    }
  }
  // Forty addresses at 50%: some in, some out.
  EXPECT_GT(halfIn, 5);
  EXPECT_LT(halfIn, kClients - 5);

  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(node.metricsPort));
  EXPECT_EQ(sumMetric(m, "derpd_bootstrap_dns_queries_total", {{"result", "rollout_excluded"}}),
            excluded);
  EXPECT_EQ(sumMetric(m, "derpd_bootstrap_dns_queries_total", {{"result", "unpublished"}}),
            2 * kClients + 2 * halfIn);
  ASSERT_OK_AND_ASSIGN(HttpResponse varz, httpGet(d.port(), "/debug/varz"));
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> v, parsePrometheusText(varz.body));
  EXPECT_EQ(sumMetric(v, "bootstrap_dns_unpublished_percent_misses"), excluded);
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  const std::string why = derpd::testing::setUpWorld();
  if (!why.empty()) {
    derpd::testing::tearDownWorld();
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  derpd::testing::tearDownWorld();
  return rc;
}
