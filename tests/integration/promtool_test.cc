// derpd's /metrics passes Prometheus's own linter, `promtool check metrics`
// (Debian package prometheus), with clients connected and traffic counted.
// Exits 77 (skipped) when promtool is not installed.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

constexpr const char* kPromtool = "/usr/bin/promtool";

TEST(PromtoolTest, MetricsPassPromtoolCheck) {
  ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start({}));
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(d->port()));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(d->port()));
  ASSERT_OK(a->sendPacket(b->publicKey(), taggedPayload(1, 1, 64)));
  ASSERT_OK_AND_ASSIGN(auto p, b->recvPacket(5 * kSecond));
  ASSERT_OK_AND_ASSIGN(HttpResponse m, httpGet(d->port(), "/metrics"));
  ASSERT_EQ(m.status, 200);
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  const std::string path = dir + "/metrics.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fwrite(m.body.data(), 1, m.body.size(), f);
  std::fclose(f);
  // promtool reads the exposition on stdin.
  ASSERT_OK_AND_ASSIGN(CommandResult r, runCommand({"/bin/sh", "-c",
                                                    std::string(kPromtool) +
                                                        " check metrics < " + path},
                                                   {}, 30 * kSecond));
  removeTree(dir);
  EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
  EXPECT_EQ(r.out + r.err, "") << "promtool found problems";
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  if (::access(derpd::testing::kPromtool, X_OK) != 0) {
    std::printf("skipped: %s is not installed (Debian package prometheus)\n",
                derpd::testing::kPromtool);
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
