// The admission limits against floods from real sockets: --max-conns-per-ip
// (one address cannot hold the server's fds; another still connects),
// -accept-connection-limit/-burst (derper's accept rate) and
// --max-handshakes-per-shard (connections that never finish their
// handshake). Every refusal is counted in derpd_accepts_limited_total.
#include <unistd.h>

#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"
#include "integration/derpd_process.h"
#include "integration/mesh_cluster.h"
#include "integration/test_pki.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr char kLimited[] = "derpd_accepts_limited_total";
constexpr Nanos kWait = 10 * kSecond;

absl::StatusOr<MetricsNode> startDerpd(std::vector<std::string> args, int shards = 2) {
  DerpdOptions o;
  o.shards = shards;
  o.extraArgs = {"--metrics-addr", "127.0.0.1:0", "-stun=false"};
  o.extraArgs.insert(o.extraArgs.end(), args.begin(), args.end());
  return startWithMetrics(o);
}

// A DERP handshake on a raw connection from sourceIp: ServerInfo arrives.
absl::Status handshakeFrom(uint16_t port, const char* sourceIp) {
  absl::StatusOr<TcpConn> c = TcpConn::connect(port, 0, sourceIp);
  if (!c.ok()) return c.status();
  absl::StatusOr<derp::NodeKey> serverKey = rawUpgrade(*c, port);
  if (!serverKey.ok()) return serverKey.status();
  if (absl::Status st = c->writeAll(
          clientInfoFrameBytes(derp::PrivateKey::generate(), *serverKey, R"({"version":2})"));
      !st.ok()) {
    return st;
  }
  absl::StatusOr<RawFrame> info = readRawFrame(*c);
  if (!info.ok()) return info.status();
  if (info->type != static_cast<uint8_t>(derp::FrameType::kServerInfo)) {
    return absl::InternalError("not ServerInfo");
  }
  return absl::OkStatus();
}

// Connects until one succeeds (slots are given back when closed sockets are
// reaped, a moment after the close).
absl::Status eventuallyConnects(uint16_t port) {
  absl::Status last;
  for (int i = 0; i < 50; i++) {
    absl::StatusOr<std::unique_ptr<DerpClient>> c = connectClient(port);
    if (c.ok()) return absl::OkStatus();
    last = c.status();
    ::usleep(100 * 1000);
  }
  return last;
}

TEST(LimitsTest, OneAddressIsCappedAnotherStillConnects) {
  constexpr int kCap = 256;
  constexpr int kFlood = 2000;
  ASSERT_OK(ensureFileLimit(kFlood + 512));
  ASSERT_OK_AND_ASSIGN(MetricsNode node, startDerpd({"--max-conns-per-ip", "256"}));
  const uint16_t port = node.process->port();
  std::vector<TcpConn> flood;
  for (int i = 0; i < kFlood; i++) {
    ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(port));
    flood.push_back(std::move(c));
  }
  ASSERT_OK_AND_ASSIGN(double limited, waitForMetric(node.metricsPort, kLimited,
                                                     {{"reason", "per_ip"}}, kFlood - kCap, kWait));
  EXPECT_EQ(limited, kFlood - kCap);
  // The refused ones were closed at once; the ones held are still open.
  size_t closed = 0;
  for (TcpConn& c : flood) closed += c.expectClosed(kMillisecond).ok() ? 1 : 0;
  EXPECT_EQ(closed, static_cast<size_t>(kFlood - kCap));
  // Another address is served meanwhile, and relays.
  EXPECT_OK(handshakeFrom(port, "127.0.0.2"));
  EXPECT_OK(handshakeFrom(port, "127.0.0.3"));
  // 127.0.0.1 is full until its connections go.
  EXPECT_FALSE(connectClient(port).ok());
  flood.clear();
  EXPECT_OK(eventuallyConnects(port));
  EXPECT_TRUE(node.process->findLog("refusing connections (--max-conns-per-ip): 127.0.0.1 has 256")
                  .has_value())
      << node.process->logText();
}

TEST(LimitsTest, AcceptRateIsDerpersTokenBucket) {
  constexpr int kBurst = 10;
  constexpr double kRate = 20;
  constexpr int kFlood = 300;
  ASSERT_OK(ensureFileLimit(kFlood + 512));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-accept-connection-limit", "20", "-accept-connection-burst",
                                   absl::StrCat(kBurst)}));
  const uint16_t port = node.process->port();
  const Nanos start = client::monotonicNow();
  std::vector<TcpConn> flood;
  for (int i = 0; i < kFlood; i++) {
    ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(port));
    flood.push_back(std::move(c));
  }
  ASSERT_OK_AND_ASSIGN(double accepts,
                       waitForMetric(node.metricsPort, "derpd_accepts_total", {}, 1, kWait));
  (void)accepts;
  // Every connection is either accepted or refused; wait for all to be seen.
  double limited = 0;
  for (int i = 0; i < 100; i++) {
    ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(node.metricsPort));
    limited = sumMetric(m, kLimited, {{"reason", "rate"}});
    if (limited + sumMetric(m, "derpd_accepts_total") >= kFlood) break;
    ::usleep(50 * 1000);
  }
  const double seconds = static_cast<double>(client::monotonicNow() - start) / kSecond;
  // At most the burst plus what the rate refilled while the flood lasted.
  EXPECT_GE(limited, kFlood - kBurst - kRate * seconds - 1) << seconds << " s";
  EXPECT_LE(limited, kFlood - kBurst);
  flood.clear();
  // The bucket refills: a client a moment later is served.
  ::usleep(200 * 1000);
  EXPECT_OK(eventuallyConnects(port));
}

TEST(LimitsTest, ConnectionsStuckInTheirHandshakeAreCappedPerShard) {
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"--max-handshakes-per-shard", "20"}, /*shards=*/1));
  const uint16_t port = node.process->port();
  // Handshaken clients are not counted: more than 20 of them connect.
  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int i = 0; i < 30; i++) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(port));
    clients.push_back(std::move(c));
  }
  // Connections that never send a request hold the shard's 20 places.
  std::vector<TcpConn> idle;
  for (int i = 0; i < 50; i++) {
    ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(port));
    idle.push_back(std::move(c));
  }
  ASSERT_OK_AND_ASSIGN(double limited, waitForMetric(node.metricsPort, kLimited,
                                                     {{"reason", "handshakes"}}, 30, kWait));
  EXPECT_EQ(limited, 30);
  EXPECT_FALSE(connectClient(port).ok()) << "a new handshake while 20 are held";
  idle.clear();
  EXPECT_OK(eventuallyConnects(port));
  // The clients connected before are still served.
  std::vector<uint8_t> payload = taggedPayload(1, 1, 64);
  ASSERT_OK(clients[0]->sendPacket(clients[29]->publicKey(), payload));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, clients[29]->recvPacket(5 * kSecond));
  EXPECT_EQ(p.payload, payload);
}

// -rate-config: a client sending as fast as it can is read at the limit
// (its socket pushes back), loses nothing, and is told the limit in
// ServerInfo; mesh peers are exempt; SIGHUP applies a new file to connected
// clients. The lower bound on the time is the limiter working, not a speed.
// 2 MB in 16 kB packets: more than a paused connection may hold, so a
// receive that drained the socket's backlog at a pause (the multishot
// receive did) closed the sender (held_input_overflow) with packets lost.
TEST(LimitsTest, RateConfigPacesReadsLosesNothingAndReloads) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  const std::string psk = randomMeshKey();
  ASSERT_OK(replaceFileAtomically(dir, "mesh.psk", psk));
  ASSERT_OK(
      replaceFileAtomically(dir, "rate.json", R"({"PerClientRateLimitBytesPerSec": 1000000})"));
  ASSERT_OK_AND_ASSIGN(MetricsNode node, startDerpd({"-rate-config", dir + "/rate.json",
                                                     "-mesh-psk-file", dir + "/mesh.psk"}));
  const uint16_t port = node.process->port();
  ASSERT_TRUE(node.process
                  ->findLog("rate config applied: client-rate=1000000 bytes/sec, "
                            "client-burst=65568 bytes")
                  .has_value())
      << node.process->logText();
  ASSERT_OK_AND_ASSIGN(auto sender, connectClient(port));
  ASSERT_OK_AND_ASSIGN(auto receiver, connectClient(port));
  EXPECT_EQ(sender->serverInfo().tokenBucketBytesPerSecond, 1000000);
  EXPECT_EQ(sender->serverInfo().tokenBucketBytesBurst, 65568);

  constexpr uint32_t kPackets = 128;
  constexpr size_t kSize = 16000;
  const Nanos start = client::monotonicNow();
  absl::Status sent;
  std::thread writer([&] {
    for (uint32_t i = 0; i < kPackets && sent.ok(); i++) {
      sent = sender->sendPacket(receiver->publicKey(), taggedPayload(i, 5, kSize));
    }
  });
  for (uint32_t i = 0; i < kPackets; i++) {
    absl::StatusOr<DerpClient::Packet> p = receiver->recvPacket(10 * kSecond);
    ASSERT_TRUE(p.ok()) << "packet " << i << ": " << p.status();
    ASSERT_EQ(p->payload, taggedPayload(i, 5, kSize)) << "packet " << i;
  }
  writer.join();
  ASSERT_OK(sent);
  const double seconds = static_cast<double>(client::monotonicNow() - start) / kSecond;
  const double charged = kPackets * (kSize + 32.0);
  EXPECT_GE(seconds, 0.8 * (charged - 65568) / 1000000) << "read faster than the limit";
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(node.metricsPort));
  const double waits = sumMetric(m, "derpd_rate_limit_waits_total");
  EXPECT_GT(waits, 0);
  EXPECT_EQ(sumMetric(m, "derpd_packets_dropped_total"), 0);
  EXPECT_EQ(sumMetric(m, "derpd_connections_closed_total", {{"reason", "held_input_overflow"}}), 0);

  // A mesh peer is not limited and is told no limit.
  client::ClientOptions peerOpts = clientOptions(port);
  peerOpts.meshKey = psk;
  ASSERT_OK_AND_ASSIGN(auto peer, DerpClient::connect(peerOpts));
  EXPECT_FALSE(peer->serverInfo().tokenBucketBytesPerSecond.has_value());
  const derp::NodeKey nobody = derp::PrivateKey::generate().publicKey();
  for (uint32_t i = 0; i < kPackets; i++) {
    ASSERT_OK(peer->sendPacket(nobody, taggedPayload(i, 6, kSize)));
  }
  ASSERT_OK(peer->ping(5 * kSecond).status());
  EXPECT_EQ(*scrapeMetric(node.metricsPort, "derpd_rate_limit_waits_total"), waits);

  // SIGHUP: a bad file keeps the limit; a zero rate lifts it for the
  // connected sender too.
  ASSERT_OK(replaceFileAtomically(dir, "rate.json", "{not json"));
  ASSERT_OK(node.process->sendSignal(SIGHUP));
  ASSERT_TRUE(node.process->waitForLog("-rate-config not reloaded", kWait));
  ASSERT_OK(replaceFileAtomically(dir, "rate.json", R"({"PerClientRateLimitBytesPerSec": 0})"));
  ASSERT_OK(node.process->sendSignal(SIGHUP));
  ASSERT_TRUE(node.process->waitForLog("rate config applied: client-rate=0", kWait));
  for (uint32_t i = 0; i < kPackets; i++) {
    ASSERT_OK(sender->sendPacket(nobody, taggedPayload(i, 7, kSize)));
  }
  ASSERT_OK(sender->ping(5 * kSecond).status());
  EXPECT_EQ(*scrapeMetric(node.metricsPort, "derpd_rate_limit_waits_total"), waits);
  removeTree(dir);
}

}  // namespace
}  // namespace derpd::testing
