// Packets whose ends sit on different shards: 16 clients on a 2-shard derpd,
// every client sends to every other, and the per-shard counters prove that
// both the local and the cross-shard path carried packets.
#include <cstdio>
#include <memory>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr int kClients = 16;
constexpr Nanos kWait = 10 * kSecond;

// kClients clients, and derpd counting them all as connected.
void connectAll(uint16_t port, std::vector<std::unique_ptr<DerpClient>>& clients) {
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(port));
    clients.push_back(std::move(c));
  }
  ASSERT_OK_AND_ASSIGN(double connected,
                       waitForMetric(port, "derpd_current_connections", {}, kClients, kWait));
  ASSERT_EQ(connected, kClients);
}

TEST(CrossShardTest, EveryClientReachesEveryOther) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  const uint16_t port = derpd->port();

  std::vector<std::unique_ptr<DerpClient>> clients;
  ASSERT_NO_FATAL_FAILURE(connectAll(port, clients));

  // The kernel spreads connections over the shards' SO_REUSEPORT listeners; with
  // 16 connections both shards get some (all on one: probability 2^-15).
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> before, scrapeMetrics(port));
  EXPECT_GT(sumMetric(before, "derpd_accepts_total", {{"shard", "0"}}), 0);
  EXPECT_GT(sumMetric(before, "derpd_accepts_total", {{"shard", "1"}}), 0);

  // Each destination gets kClients - 1 packets: under derper's 32-packet queue.
  for (int from = 0; from < kClients; ++from) {
    for (int to = 0; to < kClients; ++to) {
      if (from == to) continue;
      ASSERT_OK(clients[from]->sendPacket(
          clients[to]->publicKey(),
          taggedPayload(static_cast<uint32_t>(from), static_cast<uint32_t>(to), 200)));
    }
  }
  for (int to = 0; to < kClients; ++to) {
    std::set<uint32_t> senders;
    for (int n = 0; n < kClients - 1; ++n) {
      auto p = clients[to]->recvPacket(kWait);
      ASSERT_TRUE(p.ok()) << "client " << to << " got " << n << " of " << kClients - 1
                          << " packets: " << p.status();
      uint32_t from = payloadSeq(p->payload);
      ASSERT_LT(from, static_cast<uint32_t>(kClients));
      EXPECT_EQ(p->src, clients[from]->publicKey());
      EXPECT_EQ(payloadTag(p->payload), static_cast<uint32_t>(to)) << "misdelivered packet";
      EXPECT_TRUE(p->payload == taggedPayload(from, static_cast<uint32_t>(to), 200));
      EXPECT_TRUE(senders.insert(from).second) << "duplicate packet from " << from;
    }
  }

  constexpr double kTotal = kClients * (kClients - 1);
  ASSERT_OK_AND_ASSIGN(double relayed,
                       waitForMetric(port, "derpd_packets_relayed_total", {}, kTotal, kWait));
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> after, scrapeMetrics(port));
  const double local = sumMetric(after, "derpd_packets_relayed_total", {{"path", "local"}});
  const double cross = sumMetric(after, "derpd_packets_relayed_total", {{"path", "cross_shard"}});
  std::printf("relayed %.0f packets: %.0f local, %.0f cross-shard\n", relayed, local, cross);
  EXPECT_EQ(relayed, kTotal);
  EXPECT_EQ(local + cross, kTotal);
  EXPECT_GT(local, 0);
  EXPECT_GT(cross, 0);
  // Counted on the sender's shard: both shards sent.
  EXPECT_GT(sumMetric(after, "derpd_packets_relayed_total", {{"shard", "0"}}), 0);
  EXPECT_GT(sumMetric(after, "derpd_packets_relayed_total", {{"shard", "1"}}), 0);
  EXPECT_EQ(sumMetric(after, "derpd_packets_dropped_total"), 0);
}

// Shards wake each other only when asleep (ShardLoop's eventcount): one
// packet in flight at a time between clients on four shards, so the
// receiver's shard is usually asleep when the mail comes, and a lost wake-up
// would hold a packet until a timer fired. Statistics are off, so the only
// timers left are the keep-alives (a minute away): a lost wake-up shows as
// a receive that times out. The counters show both paths were taken.
TEST(CrossShardTest, SleepingShardsAreWokenForEveryPacket) {
  DerpdOptions o;
  o.shards = 4;
  o.extraArgs = {"-stats-interval", "0"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(o));
  const uint16_t port = derpd->port();
  std::vector<std::unique_ptr<DerpClient>> clients;
  ASSERT_NO_FATAL_FAILURE(connectAll(port, clients));
  constexpr uint32_t kRounds = 600;
  for (uint32_t round = 0; round < kRounds; ++round) {
    const size_t from = round % kClients;
    const size_t to =
        (round * 7 + 3) % kClients == from ? (from + 1) % kClients : (round * 7 + 3) % kClients;
    ASSERT_OK(clients[from]->sendPacket(clients[to]->publicKey(), taggedPayload(round, 5, 100)));
    auto p = clients[to]->recvPacket(kWait);
    ASSERT_TRUE(p.ok()) << "round " << round << ": " << p.status();
    ASSERT_EQ(payloadSeq(p->payload), round);
    // Now and then a burst, so that some mail finds its shard awake.
    if (round % 50 == 0) {
      for (uint32_t k = 0; k < 8; ++k) {
        ASSERT_OK(clients[from]->sendPacket(clients[to]->publicKey(), taggedPayload(k, 6, 100)));
      }
      for (uint32_t k = 0; k < 8; ++k) {
        auto q = clients[to]->recvPacket(kWait);
        ASSERT_TRUE(q.ok()) << "burst after round " << round << ": " << q.status();
      }
    }
  }
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(port));
  EXPECT_GT(sumMetric(m, "derpd_shard_wakes_total", {{"result", "sent"}}), 0);
  std::fprintf(stderr, "[test] wakes sent %.0f, skipped %.0f\n",
               sumMetric(m, "derpd_shard_wakes_total", {{"result", "sent"}}),
               sumMetric(m, "derpd_shard_wakes_total", {{"result", "skipped"}}));
}

}  // namespace
}  // namespace derpd::testing
