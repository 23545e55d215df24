// /debug/ and /metrics are refused (403) to a peer that is not on loopback. The test makes
// two network namespaces joined by a veth pair (10.x addresses that exist only
// inside them), moves itself into the first, starts derpd there on all
// addresses, and asks from the second with curl. Exits 77 (skipped) when
// namespaces cannot be made here.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

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

// curl from the client namespace; returns the HTTP status it printed.
std::string curlStatus(uint16_t port, const std::string& path) {
  auto r = runCommand({"/usr/sbin/ip", "netns", "exec", gClientNs, "curl", "-s", "-o",
                       "/dev/null", "-m", "5", "-w", "%{http_code}",
                       absl::StrCat("http://", kServerIp, ":", port, path)},
                      {}, 10 * kSecond);
  return r.ok() ? r->out : std::string(r.status().message());
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
