// The admission limits' arithmetic: derper's accept token bucket (as Go's
// rate.Limiter.Allow) and the per-address counts.
#include "relay/accept_limits.h"

#include <gtest/gtest.h>

#include <limits>
#include <thread>
#include <vector>

namespace derpd::relay {
namespace {

constexpr Nanos kT0 = 1000 * kSecond;

TEST(AcceptRateTest, BurstThenTheRate) {
  AcceptRate r;
  r.configure(10, 3);  // 10 a second, 3 at once
  EXPECT_TRUE(r.limited());
  for (int i = 0; i < 3; i++) EXPECT_TRUE(r.allow(kT0)) << i;
  EXPECT_FALSE(r.allow(kT0));
  EXPECT_FALSE(r.allow(kT0 + 99 * kMillisecond));
  EXPECT_TRUE(r.allow(kT0 + 100 * kMillisecond));
  EXPECT_FALSE(r.allow(kT0 + 100 * kMillisecond));
  // A quiet second refills the bucket to its burst, not beyond.
  const Nanos later = kT0 + 5 * kSecond;
  for (int i = 0; i < 3; i++) EXPECT_TRUE(r.allow(later)) << i;
  EXPECT_FALSE(r.allow(later));
}

TEST(AcceptRateTest, DerpersDefaultsAndEdges) {
  AcceptRate unlimited;
  unlimited.configure(std::numeric_limits<double>::infinity(), std::numeric_limits<int64_t>::max());
  EXPECT_FALSE(unlimited.limited());
  for (int i = 0; i < 1000; i++) EXPECT_TRUE(unlimited.allow(kT0));
  AcceptRate hugeBurst;  // a finite rate with derper's default burst: no overflow
  hugeBurst.configure(1, std::numeric_limits<int64_t>::max());
  for (int i = 0; i < 1000; i++) EXPECT_TRUE(hugeBurst.allow(kT0));
  AcceptRate slow;  // one per hour
  slow.configure(1.0 / 3600, 1);
  EXPECT_TRUE(slow.allow(kT0));
  EXPECT_FALSE(slow.allow(kT0 + 3599 * kSecond));
  EXPECT_TRUE(slow.allow(kT0 + 3600 * kSecond));
}

TEST(AcceptRateTest, ThreadsShareOneBucket) {
  AcceptRate r;
  r.configure(1e-3, 500);  // no refill to speak of: exactly the burst gets in
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; i++) allowed += r.allow(kT0) ? 1 : 0;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 500);
}

TEST(PerIpCountsTest, CapsEachAddressAlone) {
  PerIpCounts counts;
  PerIpCounts::Ip a{}, b{};
  a[15] = 1;
  b[15] = 2;
  for (int i = 0; i < 3; i++) EXPECT_TRUE(counts.acquire(a, 3));
  EXPECT_FALSE(counts.acquire(a, 3));
  EXPECT_TRUE(counts.acquire(b, 3));
  counts.release(a);
  EXPECT_TRUE(counts.acquire(a, 3));
  EXPECT_FALSE(counts.acquire(a, 3));
  for (int i = 0; i < 3; i++) counts.release(a);
  counts.release(a);  // more releases than acquires: ignored
  for (int i = 0; i < 3; i++) EXPECT_TRUE(counts.acquire(a, 3));
  EXPECT_FALSE(counts.acquire(a, 3));
}

}  // namespace
}  // namespace derpd::relay
