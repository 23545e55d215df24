// Every way a client can misbehave closes that connection only, counted under
// the expected reason, while a pair of good clients keeps relaying.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr Nanos kWait = 5 * kSecond;
constexpr const char* kClosed = "derpd_connections_closed_total";

uint8_t typeByte(derp::FrameType t) { return static_cast<uint8_t>(t); }

class BadInputTest : public ::testing::Test {
 protected:
  void startDerpd(std::vector<std::string> extraArgs = {}) {
    DerpdOptions opts;
    opts.extraArgs = std::move(extraArgs);
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
    port_ = derpd_->port();
    ASSERT_OK_AND_ASSIGN(a_, connectClient(port_));
    ASSERT_OK_AND_ASSIGN(b_, connectClient(port_));
    expectGoodPairRelays();
  }

  // A client with a 4 KiB receive buffer, for tests that never read it.
  absl::StatusOr<std::unique_ptr<DerpClient>> connectSlowReader() {
    client::ClientOptions opts = clientOptions(port_);
    opts.receiveBufferBytes = 4096;
    return DerpClient::connect(opts);
  }

  void expectGoodPairRelays() {
    ++round_;
    std::vector<uint8_t> ab = taggedPayload(round_, 1, 500);
    std::vector<uint8_t> ba = taggedPayload(round_, 2, 500);
    ASSERT_OK(a_->sendPacket(b_->publicKey(), ab));
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p1, b_->recvPacket(kWait));
    EXPECT_TRUE(p1.src == a_->publicKey() && p1.payload == ab);
    ASSERT_OK(b_->sendPacket(a_->publicKey(), ba));
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p2, a_->recvPacket(kWait));
    EXPECT_TRUE(p2.src == b_->publicKey() && p2.payload == ba);
  }

  // Waits until a connection close is counted under one of the reasons.
  void expectClosedFor(const std::vector<std::string>& reasons, Nanos timeout = kWait) {
    RealClock clock;
    Nanos deadline = clock.now() + timeout;
    for (;;) {
      ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(port_));
      for (const std::string& r : reasons) {
        if (sumMetric(m, kClosed, {{"reason", r}}) >= 1) {
          std::printf("closed with reason %s\n", r.c_str());
          return;
        }
      }
      if (clock.now() >= deadline) {
        std::string seen;
        for (const MetricSample& s : m) {
          if (s.name == kClosed && s.value > 0) {
            for (const auto& [k, v] : s.labels) absl::StrAppend(&seen, k, "=", v, " ");
            absl::StrAppend(&seen, "-> ", s.value, "; ");
          }
        }
        FAIL() << "no close counted with reason " << absl::StrJoin(reasons, " or ")
               << "; closes counted: " << (seen.empty() ? "none" : seen);
      }
      ::usleep(20000);
    }
  }

  // A handshaken raw connection: upgrade, valid ClientInfo, ServerInfo read.
  void rawHandshake(TcpConn& conn) {
    ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(conn, port_));
    derp::PrivateKey key = derp::PrivateKey::generate();
    ASSERT_OK(conn.writeAll(clientInfoFrameBytes(key, serverKey, R"({"version":2})")));
    ASSERT_OK_AND_ASSIGN(RawFrame info, readRawFrame(conn));
    ASSERT_EQ(info.type, typeByte(derp::FrameType::kServerInfo));
  }

  std::unique_ptr<DerpdProcess> derpd_;
  uint16_t port_ = 0;
  std::unique_ptr<DerpClient> a_;
  std::unique_ptr<DerpClient> b_;
  uint32_t round_ = 0;
};

TEST_F(BadInputTest, OversizeSendPacket) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  rawHandshake(bad);
  const uint32_t len = derp::kKeyLen + derp::kMaxPacketSize + 1;
  std::vector<uint8_t> frame = frameHeaderBytes(typeByte(derp::FrameType::kSendPacket), len);
  frame.resize(frame.size() + len);  // zero destination key and payload
  // The server may close before taking it all: a failed write is fine.
  (void)bad.writeAll(frame);
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"frame_too_large", "bad_frame"});
  expectGoodPairRelays();
}

TEST_F(BadInputTest, FrameOverOneMebibyteClosesOnTheHeaderAlone) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  rawHandshake(bad);
  // An unknown type: unknown frames are skipped, but never one this long.
  ASSERT_OK(bad.writeAll(frameHeaderBytes(0x30, static_cast<uint32_t>(derp::kMaxFrameLen + 1))));
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"frame_too_large"});
  expectGoodPairRelays();
}

TEST_F(BadInputTest, ClientInfoBoxDoesNotOpen) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(bad, port_));
  // Claims one key but seals with another.
  derp::NodeKey claimed = derp::PrivateKey::generate().publicKey();
  std::vector<uint8_t> body(claimed.bytes.begin(), claimed.bytes.end());
  std::string json = R"({"version":2})";
  std::vector<uint8_t> sealed =
      derp::sealBox(derp::PrivateKey::generate(), serverKey, asBytes(json));
  body.insert(body.end(), sealed.begin(), sealed.end());
  ASSERT_OK(bad.writeAll(frameBytes(typeByte(derp::FrameType::kClientInfo), body)));
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"bad_client_info"});
  expectGoodPairRelays();
}

// derper's limit: a ClientInfo up to 256 KiB is a client (bigger than the
// pool's largest buffer: it gets one of its own), one byte more is not.
TEST_F(BadInputTest, ClientInfoUpTo256KiBIsAcceptedAndLargerClosed) {
  startDerpd();
  auto clientInfoOfSize = [](const derp::NodeKey& serverKey, size_t frameBody) {
    // key (32) + nonce (24) + box tag (16) + JSON
    const size_t json = frameBody - 32 - 24 - 16;
    std::string text = R"({"version":2,"pad":")";
    text.append(json - text.size() - 2, 'x');
    text += "\"}";
    return clientInfoFrameBytes(derp::PrivateKey::generate(), serverKey, text);
  };
  ASSERT_OK_AND_ASSIGN(TcpConn big, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(big, port_));
  std::vector<uint8_t> frame = clientInfoOfSize(serverKey, derp::kMaxClientInfoLen);
  ASSERT_EQ(frame.size(), derp::kFrameHeaderLen + (256 << 10));
  ASSERT_OK(big.writeAll(frame));
  ASSERT_OK_AND_ASSIGN(RawFrame info, readRawFrame(big));
  EXPECT_EQ(info.type, typeByte(derp::FrameType::kServerInfo));

  ASSERT_OK_AND_ASSIGN(TcpConn bigger, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(serverKey, rawUpgrade(bigger, port_));
  (void)bigger.writeAll(clientInfoOfSize(serverKey, derp::kMaxClientInfoLen + 1));
  EXPECT_OK(bigger.expectClosed(kWait));
  expectClosedFor({"frame_too_large"});
  expectGoodPairRelays();
  // The big one's buffer went back (nothing held before authentication).
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(port_));
  EXPECT_EQ(sumMetric(m, "derpd_preauth_bytes", {}), 0);
}

// The AppName of a ClientInfo is counted for /debug/apps (loopback here).
TEST_F(BadInputTest, AppNameIsCountedOnDebugApps) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(conn, port_));
  ASSERT_OK(conn.writeAll(clientInfoFrameBytes(derp::PrivateKey::generate(), serverKey,
                                               R"({"version":2,"AppName":"derpd-test-app"})")));
  ASSERT_OK_AND_ASSIGN(RawFrame info, readRawFrame(conn));
  ASSERT_EQ(info.type, typeByte(derp::FrameType::kServerInfo));
  ASSERT_OK_AND_ASSIGN(HttpResponse apps, httpGet(port_, "/debug/apps"));
  EXPECT_EQ(apps.status, 200);
  EXPECT_NE(apps.body.find("1 derpd-test-app\n"), std::string::npos) << apps.body;
  EXPECT_NE(apps.body.find(" (none)\n"), std::string::npos) << apps.body;  // a_ and b_
}

TEST_F(BadInputTest, ClientInfoWithInvalidJson) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(bad, port_));
  ASSERT_OK(bad.writeAll(
      clientInfoFrameBytes(derp::PrivateKey::generate(), serverKey, "{\"version\":2,,garbage")));
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"bad_client_info"});
  expectGoodPairRelays();
}

TEST_F(BadInputTest, FirstFrameNotClientInfo) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(bad, port_));
  (void)serverKey;
  std::vector<uint8_t> ping(derp::kPingDataLen, 0x42);
  ASSERT_OK(bad.writeAll(frameBytes(typeByte(derp::FrameType::kPing), ping)));
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"not_client_info"});
  expectGoodPairRelays();
}

// A client may pipeline frames behind its ClientInfo before it reads a byte.
// Pings sent faster than their pongs are read are answered while the queue
// has room and dropped (counted) beyond it, as derper drops them: they never
// push the ServerKey or the ServerInfo (held until every shard has the
// client) out of the queue, which dropped its oldest frames when full.
TEST_F(BadInputTest, PipelinedPingsNeverCrowdOutTheHandshake) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, serverKeyOf(*derpd_));
  constexpr uint32_t kPings = 600;
  std::vector<uint8_t> tail =
      clientInfoFrameBytes(derp::PrivateKey::generate(), serverKey, R"({"version":2})");
  for (uint32_t i = 0; i < kPings; i++) {
    std::vector<uint8_t> data(derp::kPingDataLen, 0);
    for (int b = 0; b < 4; b++) data[4 + b] = static_cast<uint8_t>(i >> (24 - 8 * b));
    std::vector<uint8_t> ping = frameBytes(typeByte(derp::FrameType::kPing), data);
    tail.insert(tail.end(), ping.begin(), ping.end());
  }
  ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey sent, rawUpgrade(c, port_, kWait, tail));
  EXPECT_TRUE(sent == serverKey);
  ASSERT_OK_AND_ASSIGN(RawFrame info, readRawFrame(c));
  EXPECT_EQ(info.type, typeByte(derp::FrameType::kServerInfo));
  // Then pongs in the order of their pings, for as many as there was room.
  uint32_t pongs = 0;
  int64_t last = -1;
  for (;;) {
    absl::StatusOr<RawFrame> f = readRawFrame(c, kSecond);
    if (!f.ok()) break;
    if (f->type != typeByte(derp::FrameType::kPong)) continue;
    ASSERT_EQ(f->body.size(), derp::kPingDataLen);
    int64_t seq = 0;
    for (int b = 4; b < 8; b++) seq = (seq << 8) | static_cast<uint8_t>(f->body[b]);
    EXPECT_GT(seq, last);
    last = seq;
    pongs++;
  }
  EXPECT_GE(pongs, 1u);
  EXPECT_LT(pongs, kPings);
  ASSERT_OK_AND_ASSIGN(double dropped, scrapeMetric(port_, "derpd_pongs_dropped_total", {}));
  EXPECT_EQ(dropped + pongs, kPings);
  expectGoodPairRelays();
}

TEST_F(BadInputTest, MeshFrameWithoutMeshKey) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(auto bad, connectClient(port_));
  ASSERT_OK(bad->sendRaw(frameBytes(typeByte(derp::FrameType::kWatchConns), {})));
  absl::StatusOr<client::OwnedFrame> f;
  do {
    f = bad->recv(kWait);
  } while (f.ok());
  EXPECT_TRUE(absl::IsUnavailable(f.status())) << "connection not closed: " << f.status();
  expectClosedFor({"mesh_frame_denied"});
  expectGoodPairRelays();
}

TEST_F(BadInputTest, GarbageBeforeTheUpgradeGets400) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  std::string garbage = "\x16\x03\x01\x02 \xff\xfe garbage\r\n\r\n";
  ASSERT_OK(bad.writeAll(garbage));
  ASSERT_OK_AND_ASSIGN(HttpResponse r, readHttpResponse(bad));
  EXPECT_EQ(r.status, 400) << r.statusLine;
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"bad_request"});
  expectGoodPairRelays();
}

TEST_F(BadInputTest, RequestHeadOver16KiBGets431) {
  startDerpd();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  // No blank line: the head is still open when it passes the limit.
  std::string head = absl::StrCat("GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ",
                                  std::string(16 * 1024 + 100, 'a'));
  ASSERT_OK(bad.writeAll(head));
  ASSERT_OK_AND_ASSIGN(HttpResponse r, readHttpResponse(bad));
  EXPECT_EQ(r.status, 431) << r.statusLine;
  EXPECT_OK(bad.expectClosed(kWait));
  expectClosedFor({"head_too_large"});
  expectGoodPairRelays();
}

// The whole handshake has a 10 s deadline (PROTOCOL.md): this test waits ~10 s.
TEST_F(BadInputTest, HandshakeTimeout) {
  startDerpd();
  RealClock clock;
  Nanos start = clock.now();
  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port_));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, rawUpgrade(bad, port_));
  (void)serverKey;
  EXPECT_OK(bad.expectClosed(14 * kSecond));
  Nanos elapsed = clock.now() - start;
  std::printf("silent client closed after %.2f s\n", static_cast<double>(elapsed) / kSecond);
  EXPECT_GE(elapsed, 9 * kSecond) << "closed before the 10 s handshake deadline";
  EXPECT_LE(elapsed, 13 * kSecond);
  expectClosedFor({"handshake_timeout"});
  expectGoodPairRelays();
}

// A client that never reads while packets pour in is ended by the write
// timeout; the sender and everyone else are unaffected.
TEST_F(BadInputTest, NeverReadingClientEndsByWriteTimeout) {
  startDerpd({"-tcp-write-timeout", "1s"});
  ASSERT_OK_AND_ASSIGN(auto slow, connectSlowReader());
  ASSERT_OK_AND_ASSIGN(auto flooder, connectClient(port_));

  RealClock clock;
  Nanos start = clock.now();
  Nanos deadline = start + 20 * kSecond;
  Nanos nextCheck = start;
  bool ended = false;
  bool relayedDuringFlood = false;
  uint32_t seq = 0;
  while (!ended && clock.now() < deadline) {
    for (int i = 0; i < 32; ++i) {
      ASSERT_OK(flooder->sendPacket(slow->publicKey(), taggedPayload(seq++, 5, 1200)));
    }
    if (clock.now() >= nextCheck) {
      nextCheck = clock.now() + 100 * kMillisecond;
      if (!relayedDuringFlood) {
        expectGoodPairRelays();
        relayedDuringFlood = true;
      }
      ASSERT_OK_AND_ASSIGN(double n, scrapeMetric(port_, kClosed, {{"reason", "write_timeout"}}));
      ended = n >= 1;
    } else {
      ::usleep(2000);
    }
  }
  std::printf("flooded %u packets; write timeout after %.2f s\n", seq,
              static_cast<double>(clock.now() - start) / kSecond);
  ASSERT_TRUE(ended) << "the never-reading client was not closed for write_timeout within 20 s";
  EXPECT_GE(clock.now() - start, 1 * kSecond) << "closed before the 1 s write timeout";

  // Its connection really is closed: draining it ends in EOF or reset.
  absl::StatusOr<client::OwnedFrame> f;
  do {
    f = slow->recv(kWait);
  } while (f.ok());
  EXPECT_TRUE(absl::IsUnavailable(f.status())) << "slow client still connected: " << f.status();

  EXPECT_OK(flooder->ping(kWait).status());
  expectGoodPairRelays();
}

// -tcp-write-timeout 0 means no write timeout (derper's meaning): a client that
// stops reading keeps its connection, its queue dropping the oldest packets,
// and gets the newest once it reads again.
TEST_F(BadInputTest, WriteTimeoutZeroNeverClosesAStalledReader) {
  startDerpd({"-tcp-write-timeout", "0"});
  ASSERT_OK_AND_ASSIGN(auto slow, connectSlowReader());
  ASSERT_OK_AND_ASSIGN(auto flooder, connectClient(port_));
  RealClock clock;
  const Nanos end = clock.now() + 3 * kSecond;  // past the 2 s default
  uint32_t seq = 0;
  while (clock.now() < end) {
    for (int i = 0; i < 32; ++i) {
      ASSERT_OK(flooder->sendPacket(slow->publicKey(), taggedPayload(seq++, 6, 1200)));
    }
    ::usleep(5000);
  }
  ASSERT_OK_AND_ASSIGN(double timedOut, scrapeMetric(port_, kClosed, {{"reason", "write_timeout"}}));
  EXPECT_EQ(timedOut, 0);
  ASSERT_OK_AND_ASSIGN(double dropped, scrapeMetric(port_, "derpd_packets_dropped_total",
                                                    {{"reason", "queue_head"}}));
  EXPECT_GT(dropped, 0);
  // It reads again: the connection is alive and packets flow.
  ASSERT_OK(flooder->sendPacket(slow->publicKey(), taggedPayload(seq, 7, 100)));
  bool gotLast = false;
  for (int i = 0; i < 10000 && !gotLast; i++) {
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, slow->recvPacket(kWait));
    gotLast = payloadTag(p.payload) == 7;
  }
  EXPECT_TRUE(gotLast);
  expectGoodPairRelays();
}

}  // namespace
}  // namespace derpd::testing
