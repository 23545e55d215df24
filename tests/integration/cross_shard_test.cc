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

TEST(CrossShardTest, EveryClientReachesEveryOther) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  const uint16_t port = derpd->port();

  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(port));
    clients.push_back(std::move(c));
  }

  // The kernel spreads connections over the shards' SO_REUSEPORT listeners; with
  // 16 connections both shards get some (all on one: probability 2^-15).
  ASSERT_OK_AND_ASSIGN(double connected,
                       waitForMetric(port, "derpd_current_connections", {}, kClients, kWait));
  EXPECT_EQ(connected, kClients);
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

}  // namespace
}  // namespace derpd::testing
