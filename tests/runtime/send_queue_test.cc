#include "runtime/send_queue.h"

#include <gtest/gtest.h>

#include <vector>

#include "runtime/packet_pool.h"

namespace derpd {
namespace {

class SendQueueTest : public ::testing::Test {
 protected:
  ~SendQueueTest() override {
    for (PacketBuf* b : live_) pool_.release(b);
  }

  // A packet of `length` bytes whose first byte is `tag`, tracked for release.
  PacketBuf* packet(uint32_t length, uint8_t tag) {
    PacketBuf* b = pool_.allocate(length);
    b->length = length;
    b->data()[0] = tag;
    live_.push_back(b);
    return b;
  }

  // Tags along a chain, which the test then no longer needs to follow.
  static std::vector<int> tags(PacketBuf* chain) {
    std::vector<int> out;
    for (PacketBuf* b = chain; b != nullptr; b = b->next) out.push_back(b->data()[0]);
    return out;
  }

  PacketPool pool_{0};
  std::vector<PacketBuf*> live_;
};

TEST_F(SendQueueTest, FifoWithinCaps) {
  SendQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pop(), nullptr);
  EXPECT_EQ(q.front(), nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(q.push(packet(100, i)), nullptr);
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.bytes(), 500u);
  EXPECT_EQ(q.front()->data()[0], 0);
  for (int i = 0; i < 5; ++i) {
    PacketBuf* b = q.pop();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->data()[0], i);
    EXPECT_EQ(b->next, nullptr);
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

TEST_F(SendQueueTest, PacketCapDropsOldestFirst) {
  SendQueue q(4, 1 << 20);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.push(packet(10, i)), nullptr);
  EXPECT_EQ(tags(q.push(packet(10, 4))), std::vector<int>({0}));
  EXPECT_EQ(tags(q.push(packet(10, 5))), std::vector<int>({1}));
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.bytes(), 40u);
  EXPECT_EQ(tags(q.takeAll()), std::vector<int>({2, 3, 4, 5}));
}

TEST_F(SendQueueTest, DefaultCaps) {
  SendQueue q;
  EXPECT_EQ(q.maxPackets(), 32u);
  EXPECT_EQ(q.maxBytes(), 512u << 10);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q.push(packet(1280, i)), nullptr);
  EXPECT_EQ(tags(q.push(packet(1280, 32))), std::vector<int>({0}));
  q.takeAll();
}

TEST_F(SendQueueTest, ByteCapDropsAsManyOldAsNeeded) {
  SendQueue q(100, 1000);
  EXPECT_EQ(q.push(packet(300, 0)), nullptr);
  EXPECT_EQ(q.push(packet(300, 1)), nullptr);
  EXPECT_EQ(q.push(packet(300, 2)), nullptr);
  EXPECT_EQ(q.bytes(), 900u);
  // 900 + 700 = 1600: both of the two oldest must go to get back to 1000.
  EXPECT_EQ(tags(q.push(packet(700, 3))), std::vector<int>({0, 1}));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.bytes(), 1000u);
  EXPECT_EQ(tags(q.takeAll()), std::vector<int>({2, 3}));
}

TEST_F(SendQueueTest, OversizedPacketIsKeptAlone) {
  SendQueue q(100, 1000);
  EXPECT_EQ(q.push(packet(400, 0)), nullptr);
  EXPECT_EQ(q.push(packet(400, 1)), nullptr);
  EXPECT_EQ(tags(q.push(packet(5000, 2))), std::vector<int>({0, 1}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.bytes(), 5000u);
  // The next packet pushes the oversized one out.
  EXPECT_EQ(tags(q.push(packet(10, 3))), std::vector<int>({2}));
  EXPECT_EQ(tags(q.takeAll()), std::vector<int>({3}));
}

TEST_F(SendQueueTest, TakeAllEmptiesAndQueueIsReusable) {
  SendQueue q(3, 1000);
  EXPECT_EQ(q.takeAll(), nullptr);
  for (int i = 0; i < 3; ++i) q.push(packet(50, i));
  EXPECT_EQ(tags(q.takeAll()), std::vector<int>({0, 1, 2}));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_EQ(q.pop(), nullptr);
  EXPECT_EQ(q.push(packet(50, 7)), nullptr);
  EXPECT_EQ(q.pop()->data()[0], 7);
  EXPECT_TRUE(q.empty());
}

TEST_F(SendQueueTest, PopAfterDropsKeepsAccountingExact) {
  SendQueue q(3, 250);
  size_t dropped = 0;
  for (int i = 0; i < 50; ++i) {
    for (PacketBuf* b = q.push(packet(40 + i % 70, i)); b != nullptr; b = b->next) ++dropped;
    if (i % 7 == 0) q.pop();
    size_t bytes = 0;
    size_t n = 0;
    for (PacketBuf* b = q.front(); b != nullptr; b = b->next) {
      bytes += b->length;
      ++n;
    }
    ASSERT_EQ(q.bytes(), bytes);
    ASSERT_EQ(q.size(), n);
    ASSERT_LE(n, 3u);
    ASSERT_TRUE(n == 1 || bytes <= 250);
  }
  EXPECT_GT(dropped, 0u);
  q.takeAll();
}

}  // namespace
}  // namespace derpd
