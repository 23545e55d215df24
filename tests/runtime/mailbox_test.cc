// The mailbox over two real threads: per-pair order, nothing lost when a ring
// is full (the outbox holds the rest back), and wake-ups asked for once per flush.
#include "runtime/mailbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <semaphore>
#include <thread>
#include <vector>

namespace derpd {
namespace {

TEST(MailboxTest, OrderAndOverflowAcrossThreads) {
  Mailbox mb(2);
  constexpr uint32_t kCount = 200000;
  std::thread consumer([&] {
    uint32_t expect = 0;
    MailMessage batch[64];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (expect < kCount && std::chrono::steady_clock::now() < deadline) {
      Mailbox::Ring* ring = mb.incoming(0, 1);  // null until the first send
      size_t n = ring != nullptr ? ring->popBatch(batch, 64) : 0;
      for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(batch[i].idx, expect);
        expect++;
      }
    }
    EXPECT_EQ(expect, kCount);
  });
  Outbox out(mb, 0);
  size_t wakes = 0;
  for (uint32_t i = 0; i < kCount; i++) {
    MailMessage m;
    m.idx = i;
    out.send(1, m);  // bursts far beyond the ring's capacity
    if (i % 10000 == 9999) out.flush([&](size_t to) { wakes += to == 1; });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (out.hasBacklog() && std::chrono::steady_clock::now() < deadline) {
    out.flush([&](size_t) { wakes++; });
  }
  consumer.join();
  EXPECT_FALSE(out.hasBacklog());
  EXPECT_GT(wakes, 0u);
}

// Memory grows with the pairs that talk, not with the square of the shard
// count: no ring exists before a first send, and the rings' size shrinks as
// shards are added so that all of them together stay within kTotalSlots.
TEST(MailboxTest, RingsAreCreatedByTheirFirstSendAndSizedByShardCount) {
  Mailbox mb(128);
  EXPECT_EQ(mb.ringsCreated(), 0u);
  EXPECT_EQ(mb.incoming(3, 7), nullptr);
  Outbox out(mb, 3);
  out.send(7, MailMessage{});
  out.send(7, MailMessage{});
  EXPECT_EQ(mb.ringsCreated(), 1u);
  ASSERT_NE(mb.incoming(3, 7), nullptr);
  EXPECT_EQ(mb.incoming(3, 7)->sizeApprox(), 2u);
  EXPECT_EQ(mb.incoming(7, 3), nullptr);

  EXPECT_EQ(Mailbox::ringCapacity(1), Mailbox::kMaxRingCapacity);
  EXPECT_EQ(Mailbox::ringCapacity(2), Mailbox::kMaxRingCapacity);
  EXPECT_EQ(Mailbox::ringCapacity(16), Mailbox::kMaxRingCapacity);
  EXPECT_EQ(Mailbox::ringCapacity(64), 256u);
  EXPECT_EQ(Mailbox::ringCapacity(128), 64u);
  EXPECT_EQ(Mailbox::ringCapacity(1024), Mailbox::kMinRingCapacity);
  for (size_t n : {2, 8, 16, 32, 64, 100, 128}) {
    const size_t all = n * (n - 1) * Mailbox::ringCapacity(n) * sizeof(MailMessage);
    EXPECT_LE(all, Mailbox::kTotalSlots * sizeof(MailMessage)) << n << " shards";
  }
}

TEST(MailboxTest, FlushWakesOnlyDestinationsThatGotMail) {
  Mailbox mb(3);
  Outbox out(mb, 0);
  MailMessage m;
  out.send(2, m);
  std::vector<size_t> woken;
  out.flush([&](size_t to) { woken.push_back(to); });
  ASSERT_EQ(woken.size(), 1u);
  EXPECT_EQ(woken[0], 2u);
  woken.clear();
  out.flush([&](size_t to) { woken.push_back(to); });
  EXPECT_TRUE(woken.empty());
}

// What a full ring refuses is counted per destination (held), and for a
// destination that will never read again it can be handed back and dropped
// (discard), after which nothing is left to retry.
TEST(MailboxTest, HeldMailIsCountedAndCanBeDiscarded) {
  Mailbox mb(3);
  Outbox out(mb, 0);
  const size_t extra = 10;
  for (uint32_t i = 0; i < mb.ringCapacity() + extra; i++) {
    MailMessage m;
    m.idx = i;
    out.send(1, m);
  }
  out.send(2, MailMessage{});
  EXPECT_EQ(out.held(1), extra);
  EXPECT_EQ(out.held(2), 0u);
  std::vector<uint32_t> dropped;
  out.discard(1, [&](const MailMessage& m) { dropped.push_back(m.idx); });
  ASSERT_EQ(dropped.size(), extra);
  EXPECT_EQ(dropped.front(), mb.ringCapacity());  // the oldest held first
  EXPECT_EQ(out.held(1), 0u);
  EXPECT_FALSE(out.hasBacklog());
}

// A sender whose ring is full sleeps until the receiver, having read, wakes
// it (raiseWaiting / takeWaitingSender); the receiver sleeps until woken for
// mail. Over 200,000 messages (about a hundred full rings) no wake-up is
// lost: a lost one would leave a side asleep until its 2 s timeout, counted.
TEST(MailboxTest, ASenderWaitingForRoomIsWokenOnceTheReceiverReads) {
  Mailbox mb(2);
  constexpr uint32_t kCount = 200000;
  constexpr auto kLost = std::chrono::seconds(2);
  std::counting_semaphore<> senderWake(0), receiverWake(0);
  std::atomic<int> receiverTimeouts{0};
  std::thread receiver([&] {
    uint32_t expect = 0;
    MailMessage batch[64];
    while (expect < kCount) {
      Mailbox::Ring* ring = mb.incoming(0, 1);  // null until the first send
      size_t n = ring != nullptr ? ring->popBatch(batch, 64) : 0;
      for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(batch[i].idx, expect);
        expect++;
      }
      if (n > 0 && mb.takeWaitingSender(0, 1)) senderWake.release();
      if (n == 0 && !receiverWake.try_acquire_for(kLost)) {
        if (++receiverTimeouts > 5) break;
      }
    }
    EXPECT_EQ(expect, kCount);
  });
  Outbox out(mb, 0);
  int senderTimeouts = 0;
  int waits = 0;
  uint32_t next = 0;
  while ((next < kCount || out.hasBacklog()) && senderTimeouts <= 5) {
    for (int i = 0; i < 5000 && next < kCount; i++) {
      MailMessage m;
      m.idx = next++;
      out.send(1, m);
    }
    out.flush([&](size_t) { receiverWake.release(); });
    if (out.hasBacklog()) {
      waits++;
      if (!senderWake.try_acquire_for(kLost)) senderTimeouts++;
    }
  }
  receiver.join();
  EXPECT_EQ(senderTimeouts, 0) << "the sender slept through room in the ring";
  EXPECT_EQ(receiverTimeouts.load(), 0);
  EXPECT_GT(waits, 10) << "the ring was never full";
}

}  // namespace
}  // namespace derpd
