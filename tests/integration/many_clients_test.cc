// 1,000 concurrent clients on one derpd, each sent one packet by one sender.
#include <sys/resource.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr int kClients = 1000;
constexpr Nanos kWait = 10 * kSecond;
// This process holds kClients sockets, derpd as many again plus its own.
constexpr rlim_t kNeededFiles = 2 * kClients + 256;

TEST(ManyClientsTest, AThousandClientsEachGetTheirPacket) {
  ASSERT_OK(ensureFileLimit(kNeededFiles));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  const uint16_t port = derpd->port();

  ASSERT_OK_AND_ASSIGN(auto sender, connectClient(port));
  std::vector<std::unique_ptr<DerpClient>> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    client::ClientOptions opts = clientOptions(port);
    opts.timeout = kWait;
    auto c = DerpClient::connect(opts);
    ASSERT_TRUE(c.ok()) << "client " << i << ": " << c.status();
    clients.push_back(*std::move(c));
  }
  ASSERT_OK_AND_ASSIGN(double connected,
                       waitForMetric(port, "derpd_current_connections", {}, kClients + 1, kWait));
  EXPECT_EQ(connected, kClients + 1);

  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK(sender->sendPacket(clients[i]->publicKey(),
                                 taggedPayload(static_cast<uint32_t>(i), 99, 120)));
  }
  int received = 0;
  for (int i = 0; i < kClients; ++i) {
    auto p = clients[i]->recvPacket(kWait);
    ASSERT_TRUE(p.ok()) << "client " << i << " (after " << received << " received): " << p.status();
    EXPECT_EQ(p->src, sender->publicKey());
    EXPECT_TRUE(p->payload == taggedPayload(static_cast<uint32_t>(i), 99, 120))
        << "client " << i << " got someone else's packet (seq " << payloadSeq(p->payload) << ")";
    ++received;
  }
  EXPECT_EQ(received, kClients);
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(port));
  EXPECT_EQ(sumMetric(m, "derpd_packets_dropped_total"), 0);
}

}  // namespace
}  // namespace derpd::testing
