// -rate-config: derper's JSON as derper applies it, and the per-client
// bucket's arithmetic (Go's rate.Limiter ReserveN: charge, then wait).
#include "relay/rate_limit.h"

#include <gtest/gtest.h>

namespace derpd::relay {
namespace {

TEST(RateConfigTest, DerpersJson) {
  auto c = parseRateConfig(
      R"({"PerClientRateLimitBytesPerSec": 1000000, "PerClientRateBurstBytes": 2000000})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bytesPerSecond, 1000000u);
  EXPECT_EQ(c->burst, 2000000u);
  // Go matches field names in any case and ignores others.
  c = parseRateConfig(R"({"perclientratelimitbytespersec": 5000, "Other": "x"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bytesPerSecond, 5000u);
  EXPECT_EQ(c->burst, kMinRateBurst) << "a burst below one maximum frame is raised to it";
  EXPECT_EQ(kMinRateBurst, 65568u);
  // A zero rate is no limit at all, whatever the burst.
  c = parseRateConfig(R"({"PerClientRateBurstBytes": 99999999})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, RateConfig{});
  c = parseRateConfig("{}");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, RateConfig{});
  for (const char* bad : {"", "[]", "not json", R"({"PerClientRateLimitBytesPerSec": -1})",
                          R"({"PerClientRateLimitBytesPerSec": "1000"})",
                          R"({"PerClientRateLimitBytesPerSec": 1.5})"}) {
    EXPECT_FALSE(parseRateConfig(bad).ok()) << bad;
  }
}

TEST(TokenBucketTest, ChargeThenWaitForTheDebt) {
  constexpr Nanos kT0 = 100 * kSecond;
  TokenBucket b;
  b.reset(RateConfig{100000, 100000}, kT0);  // 100 kB/s, 100 kB burst
  EXPECT_EQ(b.take(60000, kT0), 0);
  EXPECT_EQ(b.take(40000, kT0), 0);
  // Into debt: 10 kB at 100 kB/s is 100 ms.
  const Nanos wait = b.take(10000, kT0);
  EXPECT_NEAR(static_cast<double>(wait), 100e6, 1e3);
  // After the wait the debt is paid; the next 10 kB waits again.
  EXPECT_NEAR(static_cast<double>(b.take(10000, kT0 + wait)), 100e6, 1e3);
  // A quiet while refills up to the burst only.
  const Nanos later = kT0 + 60 * kSecond;
  EXPECT_EQ(b.take(60000, later), 0);
  EXPECT_EQ(b.take(40000, later), 0);
  EXPECT_GT(b.take(1, later), 0);
  // A frame is charged at most one maximum frame.
  TokenBucket big;
  big.reset(RateConfig{1000, kMinRateBurst}, kT0);
  EXPECT_EQ(big.take(1 << 20, kT0), 0);
  // No limit: never a wait.
  TokenBucket off;
  off.reset(RateConfig{}, kT0);
  EXPECT_EQ(off.take(1 << 30, kT0), 0);
}

}  // namespace
}  // namespace derpd::relay
