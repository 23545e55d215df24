#include "runtime/spsc_ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace derpd {
namespace {

TEST(SpscRingTest, StartsEmpty) {
  SpscRing<int> ring(8);
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.sizeApprox(), 0u);
  int v = -1;
  EXPECT_FALSE(ring.tryPop(v));
  EXPECT_EQ(v, -1);
}

TEST(SpscRingTest, FifoUntilFull) {
  SpscRing<int> ring(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ring.tryPush(i));
  EXPECT_FALSE(ring.tryPush(99));
  EXPECT_EQ(ring.sizeApprox(), 4u);
  for (int i = 0; i < 4; ++i) {
    int v = -1;
    ASSERT_TRUE(ring.tryPop(v));
    EXPECT_EQ(v, i);
  }
  EXPECT_TRUE(ring.empty());
}

TEST(SpscRingTest, WrapsAroundManyTimes) {
  SpscRing<uint32_t> ring(8);
  uint32_t next = 0;
  uint32_t expected = 0;
  for (int round = 0; round < 1000; ++round) {
    // Varying fill levels move the indices across the wrap at every offset.
    const int n = round % 8 + 1;
    for (int i = 0; i < n; ++i) ASSERT_TRUE(ring.tryPush(next++));
    for (int i = 0; i < n; ++i) {
      uint32_t v = 0;
      ASSERT_TRUE(ring.tryPop(v));
      ASSERT_EQ(v, expected++);
    }
  }
  EXPECT_TRUE(ring.empty());
}

TEST(SpscRingTest, PopBatchTakesWhatIsThere) {
  SpscRing<int> ring(8);
  int out[16] = {};
  EXPECT_EQ(ring.popBatch(out, 16), 0u);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(ring.tryPush(i));
  EXPECT_EQ(ring.popBatch(out, 4), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], i);
  // Refill across the wrap point, then take more than is there.
  for (int i = 6; i < 12; ++i) ASSERT_TRUE(ring.tryPush(i));
  EXPECT_FALSE(ring.tryPush(12));
  EXPECT_EQ(ring.popBatch(out, 16), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], i + 4);
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.popBatch(out, 0), 0u);
}

TEST(SpscRingTest, IndicesLiveOnSeparateCacheLines) {
  // Not observable through the API, but the point of the layout: the consumer's and the
  // producer's indices sit on two lines of their own (the slots are allocated apart).
  EXPECT_GE(sizeof(SpscRing<uint8_t>), 2 * 64u);
  EXPECT_EQ(alignof(SpscRing<uint8_t>), 64u);
}

TEST(SpscRingTest, CapacityIsChosenAtConstruction) {
  SpscRing<int> ring(64);
  EXPECT_EQ(ring.capacity(), 64u);
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(ring.tryPush(i));
  EXPECT_FALSE(ring.tryPush(64));
  EXPECT_EQ(ring.sizeApprox(), 64u);
  int v = -1;
  ASSERT_TRUE(ring.tryPop(v));
  EXPECT_EQ(v, 0);
}

// Two threads move 1,000,000 sequence numbers through a small ring, so both sides spend time
// on the full and empty edges. The consumer checks order and completeness; a deadline turns a
// lost element into a failure instead of a hang.
TEST(SpscRingTest, TwoThreadsKeepOrderAndLoseNothing) {
  constexpr uint64_t kCount = 1'000'000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  SpscRing<uint64_t> ring(1024);
  std::atomic<bool> timedOut{false};

  std::thread producer([&] {
    for (uint64_t i = 0; i < kCount;) {
      if (ring.tryPush(i)) {
        ++i;
      } else if (timedOut.load(std::memory_order_relaxed)) {
        return;
      } else {
        std::this_thread::yield();
      }
    }
  });

  uint64_t expected = 0;
  uint64_t outOfOrder = 0;
  uint64_t batch[64];
  size_t spins = 0;
  while (expected < kCount) {
    // Alternate single pops and batches so both consumer paths see contention.
    size_t n = 0;
    if (expected % 2 == 0) {
      n = ring.popBatch(batch, 64);
    } else if (ring.tryPop(batch[0])) {
      n = 1;
    }
    for (size_t i = 0; i < n; ++i) {
      if (batch[i] != expected) ++outOfOrder;
      expected = batch[i] + 1;
    }
    if (n == 0 && ++spins % 1024 == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        timedOut.store(true);
        break;
      }
      std::this_thread::yield();
    }
  }
  producer.join();
  EXPECT_FALSE(timedOut.load()) << "stalled at " << expected;
  EXPECT_EQ(outOfOrder, 0u);
  EXPECT_EQ(expected, kCount);
  EXPECT_TRUE(ring.empty());
}

}  // namespace
}  // namespace derpd
