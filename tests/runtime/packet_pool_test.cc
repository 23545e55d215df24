#include "runtime/packet_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

namespace derpd {
namespace {

TEST(PacketPoolTest, PicksTheSmallestClassThatFits) {
  PacketPool pool(3);
  struct Case {
    size_t bytes;
    uint32_t capacity;
  };
  const Case cases[] = {
      {0, 2048},
      {1, 2048},
      {1280 + 5 + 32, 2048},
      {2048, 2048},
      {2049, 16384},
      {16384, 16384},
      {16385, 65536 + 128},
      {5 + 64 + 65536, 65536 + 128},
      {65536 + 128, 65536 + 128},
  };
  for (const Case& c : cases) {
    PacketBuf* b = pool.allocate(c.bytes);
    ASSERT_NE(b, nullptr) << c.bytes;
    EXPECT_EQ(b->capacity, c.capacity) << c.bytes;
    EXPECT_EQ(b->length, 0u);
    EXPECT_EQ(b->flags, 0u);
    EXPECT_EQ(b->next, nullptr);
    EXPECT_EQ(b->ownerShard, 3u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 16, 0u);
    // The whole capacity is writable (ASan/valgrind would catch an overrun into a neighbour).
    std::memset(b->data(), 0xab, b->capacity);
    pool.release(b);
  }
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(PacketPoolTest, RejectsMoreThanTheLargestClass) {
  PacketPool pool(0);
  EXPECT_EQ(pool.allocate(PacketPool::kMaxBufferBytes + 1), nullptr);
  EXPECT_EQ(pool.bytesAllocated(), 0u);
  EXPECT_GE(PacketPool::kMaxBufferBytes, 5u + 64 + 65536);
}

// Past the largest class, only on request: one system allocation each,
// outside the cap, freed by release.
TEST(PacketPoolTest, OversizeBuffersComeAndGoOutsideTheClasses) {
  PacketPool pool(3, 1 << 20);
  PacketBuf* b = pool.allocateOversize(200 << 10);
  ASSERT_NE(b, nullptr);
  EXPECT_GE(b->capacity, 200u << 10);
  EXPECT_EQ(b->sizeClass, PacketPool::kOversizeClass);
  EXPECT_EQ(b->ownerShard, 3);
  EXPECT_EQ(b->length, 0u);
  EXPECT_EQ(b->start, 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 16, 0u);
  std::memset(b->data(), 0xab, 200 << 10);  // all of it is ours (ASan checks)
  EXPECT_EQ(pool.inUse(), 1u);
  EXPECT_EQ(pool.bytesAllocated(), 0u);  // not slab memory
  pool.release(b);
  EXPECT_EQ(pool.inUse(), 0u);
  EXPECT_EQ(pool.allocateOversize(PacketPool::kMaxOversizeBytes + 1), nullptr);
  PacketBuf* max = pool.allocateOversize(PacketPool::kMaxOversizeBytes);
  ASSERT_NE(max, nullptr);
  pool.release(max);
}

TEST(PacketPoolTest, BuffersDoNotOverlap) {
  PacketPool pool(0);
  std::vector<PacketBuf*> bufs;
  for (int i = 0; i < 200; ++i) bufs.push_back(pool.allocate(1500));
  std::set<uintptr_t> starts;
  for (PacketBuf* b : bufs) {
    ASSERT_NE(b, nullptr);
    starts.insert(reinterpret_cast<uintptr_t>(b));
  }
  ASSERT_EQ(starts.size(), bufs.size());
  // Sorted starts must be at least header + capacity apart.
  uintptr_t prev = 0;
  for (uintptr_t s : starts) {
    if (prev != 0) {
      EXPECT_GE(s - prev, sizeof(PacketBuf) + 2048);
    }
    prev = s;
  }
  for (PacketBuf* b : bufs) pool.release(b);
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(PacketPoolTest, ReusesFreedBuffersWithoutGrowing) {
  PacketPool pool(1);
  std::vector<PacketBuf*> bufs;
  for (int i = 0; i < 100; ++i) bufs.push_back(pool.allocate(1300));
  for (int i = 0; i < 20; ++i) bufs.push_back(pool.allocate(9000));
  for (int i = 0; i < 5; ++i) bufs.push_back(pool.allocate(65000));
  EXPECT_EQ(pool.inUse(), 125u);
  const size_t warmed = pool.bytesAllocated();
  EXPECT_GT(warmed, 0u);

  // Steady state: the same working set churns many times and memory stays put.
  for (int round = 0; round < 1000; ++round) {
    for (PacketBuf* b : bufs) pool.release(b);
    EXPECT_EQ(pool.inUse(), 0u);
    for (size_t i = 0; i < bufs.size(); ++i) {
      const size_t bytes = i < 100 ? 1300 : i < 120 ? 9000 : 65000;
      bufs[i] = pool.allocate(bytes);
      ASSERT_NE(bufs[i], nullptr);
    }
  }
  EXPECT_EQ(pool.bytesAllocated(), warmed);
  for (PacketBuf* b : bufs) pool.release(b);
}

TEST(PacketPoolTest, ReleasedBufferIsHandedOutAgain) {
  PacketPool pool(0);
  PacketBuf* a = pool.allocate(100);
  a->length = 77;
  a->flags = 5;
  pool.release(a);
  PacketBuf* b = pool.allocate(100);
  EXPECT_EQ(a, b);  // LIFO: the most recently used buffer is the one still in cache
  EXPECT_EQ(b->length, 0u);
  EXPECT_EQ(b->flags, 0u);
  pool.release(b);
}

TEST(PacketPoolTest, CapStopsGrowthButNotReuse) {
  constexpr size_t kCap = 300 << 10;
  PacketPool pool(0, kCap);
  std::vector<PacketBuf*> bufs;
  while (PacketBuf* b = pool.allocate(2000)) {
    bufs.push_back(b);
    ASSERT_LT(bufs.size(), 10000u) << "cap not enforced";
  }
  EXPECT_LE(pool.bytesAllocated(), kCap);
  // Nearly the whole cap is usable, partial slabs included.
  EXPECT_GT(bufs.size() * 2048, kCap * 9 / 10);
  EXPECT_EQ(pool.allocate(60000), nullptr);
  EXPECT_EQ(pool.inUse(), bufs.size());

  pool.release(bufs.back());
  bufs.pop_back();
  PacketBuf* again = pool.allocate(10);
  ASSERT_NE(again, nullptr);
  bufs.push_back(again);
  for (PacketBuf* b : bufs) pool.release(b);
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(PacketPoolTest, TinyCapAllowsNothing) {
  PacketPool pool(0, 1024);
  EXPECT_EQ(pool.allocate(1), nullptr);
  EXPECT_EQ(pool.allocate(10000), nullptr);
  EXPECT_EQ(pool.bytesAllocated(), 0u);
  // Each failure is counted under its class.
  EXPECT_EQ(pool.failures()[0], 1u);
  EXPECT_EQ(pool.failures()[1], 1u);
  EXPECT_EQ(pool.failures()[2], 0u);
}

// Control frames (reserved) still get buffers when packets have taken the
// whole cap: from a reserve outside it, which packets never use, and to which
// released reserve buffers go back.
TEST(PacketPoolTest, ReserveServesControlFramesPastTheCap) {
  constexpr size_t kCap = 300 << 10;
  PacketPool pool(0, kCap);
  std::vector<PacketBuf*> packets;
  while (PacketBuf* b = pool.allocate(2000)) packets.push_back(b);
  EXPECT_EQ(pool.failures()[0], 1u);
  const size_t atCap = pool.bytesAllocated();
  std::vector<PacketBuf*> control;
  for (uint32_t i = 0; i < PacketPool::kReserveBuffers[0]; i++) {
    PacketBuf* b = pool.allocate(100, true);
    ASSERT_NE(b, nullptr) << i;
    EXPECT_EQ(b->capacity, 2048u);
    control.push_back(b);
  }
  EXPECT_GT(pool.bytesAllocated(), atCap);
  EXPECT_LE(pool.bytesAllocated(), atCap + 64 + 64 * (2048 + 64));
  EXPECT_EQ(pool.allocate(100, true), nullptr) << "the reserve is bounded";
  // A released reserve buffer serves the next control frame, never a packet.
  pool.release(control.back());
  control.pop_back();
  EXPECT_EQ(pool.allocate(100), nullptr);
  PacketBuf* again = pool.allocate(100, true);
  ASSERT_NE(again, nullptr);
  control.push_back(again);
  // 16 KiB control buffers have their own reserve; 64 KiB ones have none.
  PacketBuf* big = pool.allocate(10000, true);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->capacity, 16384u);
  control.push_back(big);
  EXPECT_EQ(pool.allocate(60000, true), nullptr);
  for (PacketBuf* b : control) pool.release(b);
  for (PacketBuf* b : packets) pool.release(b);
  EXPECT_EQ(pool.inUse(), 0u);
  // Trimming gives back every packet slab but never the reserve.
  pool.trim(0);
  EXPECT_EQ(pool.bytesAllocated(), 2 * 64 + 64 * 2112u + 16 * 16448u);
}

// Slabs whose buffers are all free go back to the system beyond what the pool
// keeps per class, and the memory can then serve another class: a pool at its
// cap with 64 KiB buffers, all released and trimmed, fills up again with 2 KiB
// ones. A slab with a buffer in use stays.
TEST(PacketPoolTest, TrimGivesFreeSlabsBackSoMemoryMovesBetweenClasses) {
  constexpr size_t kCap = 4 << 20;
  PacketPool pool(0, kCap);
  std::vector<PacketBuf*> big;
  while (PacketBuf* b = pool.allocate(60000)) big.push_back(b);
  ASSERT_GT(big.size(), 50u);
  const size_t full = pool.bytesAllocated();
  PacketBuf* held = big.front();  // keeps its slab
  for (size_t i = 1; i < big.size(); i++) pool.release(big[i]);
  EXPECT_EQ(pool.trim(0) + pool.bytesAllocated(), full);
  EXPECT_LT(pool.bytesAllocated(), 300u << 10) << "only the held buffer's slab stays";
  EXPECT_EQ(pool.trim(0), 0u) << "nothing more to give back";
  // The memory serves 2 KiB buffers now.
  std::vector<PacketBuf*> small;
  while (PacketBuf* b = pool.allocate(100)) small.push_back(b);
  EXPECT_GT(small.size() * 2048, kCap * 8 / 10);
  for (PacketBuf* b : small) pool.release(b);
  // keepBytes: that much of free slabs per class stays for the next burst.
  const size_t before = pool.bytesAllocated();
  const size_t freed = pool.trim(1 << 20);
  EXPECT_GT(freed, 0u);
  EXPECT_GE(before - freed, size_t{1} << 20);
  EXPECT_LE(before - freed, (size_t{1} << 20) + (300u << 10));
  pool.release(held);
  EXPECT_EQ(pool.inUse(), 0u);
  pool.trim(0);
  EXPECT_EQ(pool.bytesAllocated(), 0u);
}

#ifndef NDEBUG
TEST(PacketPoolDeathTest, ReleaseToTheWrongShardCrashes) {
  PacketPool mine(1);
  PacketPool other(2);
  PacketBuf* b = other.allocate(10);
  EXPECT_DEATH(mine.release(b), "ownerShard");
  other.release(b);
}
#endif

}  // namespace
}  // namespace derpd
