// Debian's own STUN clients against a live derpd: stun-client's `stun` (RFC
// 3489, wants MAPPED-ADDRESS) and coturn's `turnutils_stunclient` (RFC 5389,
// reads XOR-MAPPED-ADDRESS) must both print the address they sent from.
// Exits 77 (skipped) when either tool is not installed.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

constexpr const char* kStun = "/usr/bin/stun";
constexpr const char* kTurnutils = "/usr/bin/turnutils_stunclient";

// The port in "<prefix><digits>" somewhere in text, or 0 when there is none.
int portAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return 0;
  size_t i = at + prefix.size();
  int port = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9' && port <= 65535) {
    port = port * 10 + (text[i++] - '0');
  }
  return port;
}

class StunClientsTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    DerpdOptions opts;
    opts.extraArgs = std::move(extra);
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
    ASSERT_TRUE(derpd_->waitForLog("STUN listening on udp://", 5 * kSecond));
    std::optional<std::string> line = derpd_->findLog("STUN listening on udp://");
    port_ = line->substr(line->rfind(':') + 1);
  }
  std::unique_ptr<DerpdProcess> derpd_;
  std::string port_;
};

TEST_F(StunClientsTest, StunClientGetsItsMappedAddress) {
  start();
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       runCommand({kStun, "-v", "127.0.0.1:" + port_}, {}, 20 * kSecond));
  std::string all = r.out + r.err;
  std::printf("%s\n", all.c_str());
  const int mapped = portAfter(all, "MappedAddress = 127.0.0.1:");
  EXPECT_TRUE(mapped > 0 && mapped <= 65535) << all;
  // Its exit status is a bit set; bit 0 says it got a mapped address.
  EXPECT_TRUE(r.exitCode & 1) << "exit " << r.exitCode;
}

TEST_F(StunClientsTest, TurnutilsGetsItsReflexiveAddressOverIpv4AndIpv6) {
  start({"-a", ":0"});  // wildcard: one dual-stack STUN socket answers both
  ASSERT_OK_AND_ASSIGN(CommandResult r4,
                       runCommand({kTurnutils, "-p", port_, "127.0.0.1"}, {}, 10 * kSecond));
  std::string all4 = r4.out + r4.err;
  std::printf("%s\n", all4.c_str());
  EXPECT_EQ(r4.exitCode, 0);
  const int port4 = portAfter(all4, "UDP reflexive addr: 127.0.0.1:");
  EXPECT_TRUE(port4 > 0 && port4 <= 65535) << all4;

  ASSERT_OK_AND_ASSIGN(CommandResult r6,
                       runCommand({kTurnutils, "-p", port_, "::1"}, {}, 10 * kSecond));
  std::string all6 = r6.out + r6.err;
  std::printf("%s\n", all6.c_str());
  EXPECT_EQ(r6.exitCode, 0);
  const int port6 = portAfter(all6, "UDP reflexive addr: ::1:");
  EXPECT_TRUE(port6 > 0 && port6 <= 65535) << all6;
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  for (const char* tool : {derpd::testing::kStun, derpd::testing::kTurnutils}) {
    if (::access(tool, X_OK) != 0) {
      std::printf("skipped: %s is not installed (packages stun-client and coturn)\n", tool);
      return 77;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
