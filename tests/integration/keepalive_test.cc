// KeepAlive (PROTOCOL.md "Steady state"): an idle client gets a KeepAlive frame
// every 60 s plus up to 5 s of jitter. This test waits for one, so it takes
// about a minute; it runs beside the others. (The timer wheel's unit tests
// cover re-arming; a second interval here cost CI another minute.)
#include <memory>

#include "client/derp_client.h"
#include "derp/frame.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

TEST(KeepAliveTest, IdleClientGetsKeepAliveEverySixtyToSixtyFiveSeconds) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  ASSERT_OK_AND_ASSIGN(auto client, connectClient(derpd->port()));
  RealClock clock;
  Nanos last = clock.now();
  for (int i = 0; i < 1; i++) {
    absl::StatusOr<client::OwnedFrame> f = client->recv(70 * kSecond);
    ASSERT_OK(f.status());
    ASSERT_EQ(f->frameType(), derp::FrameType::kKeepAlive) << "type " << int(f->type);
    EXPECT_TRUE(f->body.empty());
    Nanos now = clock.now();
    double gap = static_cast<double>(now - last) / kSecond;
    std::printf("keep-alive %d after %.2f s\n", i + 1, gap);
    EXPECT_GE(gap, 59.5);
    EXPECT_LE(gap, 66.0);
    last = now;
  }
  // Still a working client afterwards.
  ASSERT_OK_AND_ASSIGN(auto peer, connectClient(derpd->port()));
  std::vector<uint8_t> payload = {1, 2, 3};
  ASSERT_OK(peer->sendPacket(client->publicKey(), payload));
  ASSERT_OK_AND_ASSIGN(auto p, client->recvPacket(5 * kSecond));
  EXPECT_EQ(p.payload, payload);
}

}  // namespace
}  // namespace derpd::testing
