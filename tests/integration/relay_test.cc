// Relay behaviour of a live derpd (PROTOCOL.md "Steady state"): delivery both
// ways, order, ping, NotePreferred, fast start, PeerGone and duplicate keys.
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;
using client::OwnedFrame;

constexpr Nanos kWait = 5 * kSecond;
// derper's per-destination queue: never have more than this in flight to one
// receiver, so a legitimate queue drop cannot fail a test.
constexpr int kWindow = 32;

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start({}));
    port_ = derpd_->port();
  }

  // The server key derpd logged at startup.
  std::optional<derp::NodeKey> loggedServerKey() const {
    std::optional<std::string> line = derpd_->findLog("public key nodekey:");
    if (!line.has_value()) return std::nullopt;
    size_t at = line->find("nodekey:");
    return derp::NodeKey::parse(line->substr(at, 8 + 64));
  }

  std::unique_ptr<DerpdProcess> derpd_;
  uint16_t port_ = 0;
};

// Sends payload from -> to and checks it arrives intact with the right source.
void expectRelayed(DerpClient& from, DerpClient& to, const std::vector<uint8_t>& payload) {
  ASSERT_OK(from.sendPacket(to.publicKey(), payload));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, to.recvPacket(kWait));
  EXPECT_EQ(p.src, from.publicKey());
  EXPECT_EQ(p.payload.size(), payload.size());
  EXPECT_TRUE(p.payload == payload) << "payload of " << payload.size() << " bytes corrupted";
}

// Reads frames until one of the given type arrives.
absl::StatusOr<OwnedFrame> recvFrameOfType(DerpClient& c, derp::FrameType type, Nanos timeout,
                                           std::vector<OwnedFrame>* skipped = nullptr) {
  RealClock clock;
  Nanos deadline = clock.now() + timeout;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = c.recv(std::max<Nanos>(deadline - clock.now(), 0));
    if (!f.ok() || f->frameType() == type) return f;
    if (skipped != nullptr) skipped->push_back(*std::move(f));
    if (clock.now() >= deadline) return absl::DeadlineExceededError("frame never came");
  }
}

TEST_F(RelayTest, RelaysBothWaysWithPayloadIntact) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  EXPECT_EQ(a->serverInfo().version, 2);
  for (size_t size : {size_t{1}, size_t{1200}, derp::kMaxPacketSize}) {
    SCOPED_TRACE(absl::StrCat("payload size ", size));
    std::vector<uint8_t> payload(size);
    randombytes_buf(payload.data(), payload.size());
    expectRelayed(*a, *b, payload);
    randombytes_buf(payload.data(), payload.size());
    expectRelayed(*b, *a, payload);
  }
}

TEST_F(RelayTest, PreservesOrderOverAThousandPackets) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  constexpr uint32_t kCount = 1000;
  uint32_t expected = 0;
  for (uint32_t sent = 0; sent < kCount;) {
    uint32_t burstEnd = std::min<uint32_t>(sent + kWindow, kCount);
    for (; sent < burstEnd; ++sent)
      ASSERT_OK(a->sendPacket(b->publicKey(), taggedPayload(sent, 7, 100)));
    for (; expected < burstEnd; ++expected) {
      ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, b->recvPacket(kWait));
      ASSERT_EQ(payloadSeq(p.payload), expected) << "packets reordered or lost";
      ASSERT_TRUE(p.payload == taggedPayload(expected, 7, 100));
    }
  }
}

// --batch-wait (io_uring min_wait) changes only when a shard wakes: every
// packet still arrives, in order, and a ping still gets its pong. At its
// largest (1ms), with two shards; where the kernel has no min_wait the flag
// is ignored and this checks the plain wait.
TEST(RelayBatchWaitTest, EveryPacketArrivesInOrderWithTheLongestBatchWait) {
  DerpdOptions o;
  o.extraArgs = {"--batch-wait", "1ms"};
  ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start(o));
  // The log says which wait runs.
  EXPECT_TRUE(d->findLog("batch wait: 1000us (io_uring min_wait)") ||
              d->findLog("--batch-wait is ignored"))
      << d->logText();
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(d->port()));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(d->port()));
  constexpr uint32_t kCount = 500;
  uint32_t expected = 0;
  for (uint32_t sent = 0; sent < kCount;) {
    // Bursts and single packets: both a busy and a sleeping shard.
    const uint32_t burstEnd = std::min<uint32_t>(sent + (sent % 64 == 0 ? 1 : kWindow), kCount);
    for (; sent < burstEnd; ++sent) {
      ASSERT_OK(a->sendPacket(b->publicKey(), taggedPayload(sent, 9, 1200)));
    }
    for (; expected < burstEnd; ++expected) {
      ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, b->recvPacket(kWait));
      ASSERT_EQ(payloadSeq(p.payload), expected) << "packets reordered or lost";
      ASSERT_TRUE(p.payload == taggedPayload(expected, 9, 1200));
    }
  }
  std::vector<uint8_t> back(64, 0x42);
  expectRelayed(*b, *a, back);
}

// A client that connects again with the same key gets its handshake's box
// key from the cache (derpd_handshake_box_key_hits_total), and its boxes
// still open: it is served as before.
TEST_F(RelayTest, ReconnectingClientIsServedFromTheBoxKeyCache) {
  client::ClientOptions o;
  o.port = port_;
  const derp::PrivateKey key = derp::PrivateKey::generate();
  o.key = key;
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  for (int round = 0; round < 3; round++) {
    SCOPED_TRACE(round);
    ASSERT_OK_AND_ASSIGN(auto a, DerpClient::connect(o));
    EXPECT_EQ(a->serverInfo().version, 2);  // the ServerInfo box opened
    expectRelayed(*a, *b, std::vector<uint8_t>(100, static_cast<uint8_t>(round)));
    expectRelayed(*b, *a, std::vector<uint8_t>(100, static_cast<uint8_t>(round)));
    a->close();
  }
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(port_));
  EXPECT_GE(sumMetric(m, "derpd_handshake_box_key_hits_total"), 2);
}

TEST_F(RelayTest, PingGetsMatchingPong) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  ASSERT_OK_AND_ASSIGN(Nanos rtt, a->ping(kWait));
  EXPECT_GT(rtt, 0);

  // A long ping (up to 1000 B is legal) is answered with its first 8 bytes.
  std::vector<uint8_t> body(derp::kMaxPingLen);
  randombytes_buf(body.data(), body.size());
  ASSERT_OK(a->sendRaw(frameBytes(static_cast<uint8_t>(derp::FrameType::kPing), body)));
  ASSERT_OK_AND_ASSIGN(OwnedFrame pong, recvFrameOfType(*a, derp::FrameType::kPong, kWait));
  ASSERT_EQ(pong.body.size(), derp::kPingDataLen);
  EXPECT_TRUE(std::equal(pong.body.begin(), pong.body.end(), body.begin()));
}

TEST_F(RelayTest, NotePreferredIsAccepted) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  ASSERT_OK(a->notePreferred(true));
  ASSERT_OK(a->notePreferred(false));
  ASSERT_OK(a->notePreferred(true));
  // The connection is still served afterwards.
  EXPECT_OK(a->ping(kWait).status());
  expectRelayed(*a, *b, taggedPayload(1, 2, 64));
  expectRelayed(*b, *a, taggedPayload(3, 4, 64));
}

TEST_F(RelayTest, FastStartWithClientInfoInTheSameWrite) {
  std::optional<derp::NodeKey> serverKey = loggedServerKey();
  ASSERT_TRUE(serverKey.has_value()) << "derpd did not log 'public key nodekey:<hex>'";
  client::ClientOptions opts = clientOptions(port_);
  opts.fastStart = true;
  opts.serverKey = *serverKey;
  ASSERT_OK_AND_ASSIGN(auto fast, DerpClient::connect(opts));
  EXPECT_EQ(fast->serverKey(), *serverKey);
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  EXPECT_EQ(b->serverKey(), *serverKey);
  expectRelayed(*fast, *b, taggedPayload(1, 1, 300));
  expectRelayed(*b, *fast, taggedPayload(2, 2, 300));
}

TEST_F(RelayTest, FastStartWithoutKnownServerKey) {
  client::ClientOptions opts = clientOptions(port_);
  opts.fastStart = true;
  ASSERT_OK_AND_ASSIGN(auto fast, DerpClient::connect(opts));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  expectRelayed(*fast, *b, taggedPayload(1, 1, 300));
  expectRelayed(*b, *fast, taggedPayload(2, 2, 300));
}

// PROTOCOL.md: when a client disconnects, every client it had sent packets to
// gets PeerGone(key, disconnected).
TEST_F(RelayTest, PeerGoneDisconnectedToThoseItSentTo) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port_));
  derp::NodeKey bKey = b->publicKey();
  expectRelayed(*b, *a, taggedPayload(1, 1, 50));
  b->close();
  ASSERT_OK_AND_ASSIGN(OwnedFrame f, recvFrameOfType(*a, derp::FrameType::kPeerGone, kWait));
  ASSERT_OK_AND_ASSIGN(derp::Frame parsed, f.parse());
  const auto* gone = std::get_if<derp::PeerGoneFrame>(&parsed);
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->key, bKey);
  ASSERT_TRUE(gone->reason.has_value()) << "PeerGone without the reason byte";
  EXPECT_EQ(*gone->reason, derp::PeerGoneReason::kDisconnected);
}

TEST_F(RelayTest, PeerGoneNotHereForUnknownDestination) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port_));
  derp::NodeKey nobody = derp::PrivateKey::generate().publicKey();
  ASSERT_OK(a->sendPacket(nobody, taggedPayload(1, 1, 80)));
  ASSERT_OK_AND_ASSIGN(OwnedFrame f, recvFrameOfType(*a, derp::FrameType::kPeerGone, kWait));
  ASSERT_OK_AND_ASSIGN(derp::Frame parsed, f.parse());
  const auto* gone = std::get_if<derp::PeerGoneFrame>(&parsed);
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->key, nobody);
  ASSERT_TRUE(gone->reason.has_value()) << "PeerGone without the reason byte";
  EXPECT_EQ(*gone->reason, derp::PeerGoneReason::kNotHere);
  ASSERT_OK_AND_ASSIGN(double dropped, waitForMetric(port_, "derpd_packets_dropped_total",
                                                     {{"reason", "unknown_dest"}}, 1, kWait));
  EXPECT_EQ(dropped, 1);
}

// Two connections with one key: the one that sent most recently receives; the
// other is told with a Health frame.
TEST_F(RelayTest, DuplicateKeyMostRecentSenderReceives) {
  ASSERT_OK_AND_ASSIGN(auto peer, connectClient(port_));
  client::ClientOptions opts = clientOptions(port_);
  ASSERT_OK_AND_ASSIGN(auto first, DerpClient::connect(opts));
  ASSERT_OK_AND_ASSIGN(auto second, DerpClient::connect(opts));
  ASSERT_EQ(first->publicKey(), second->publicKey());
  const derp::NodeKey shared = first->publicKey();

  std::vector<OwnedFrame> firstFrames;
  std::vector<OwnedFrame> secondFrames;
  auto sawHealth = [](const std::vector<OwnedFrame>& frames) {
    for (const OwnedFrame& f : frames) {
      if (f.frameType() == derp::FrameType::kHealth && !f.body.empty()) return true;
    }
    return false;
  };

  // `first` sends (the peer receiving it proves the server has seen it), so it
  // is the active one and gets the reply.
  expectRelayed(*first, *peer, taggedPayload(1, 1, 60));
  ASSERT_OK(peer->sendPacket(shared, taggedPayload(2, 2, 60)));
  ASSERT_OK_AND_ASSIGN(OwnedFrame toFirst,
                       recvFrameOfType(*first, derp::FrameType::kRecvPacket, kWait, &firstFrames));
  EXPECT_EQ(payloadSeq(std::vector<uint8_t>(toFirst.body.begin() + 32, toFirst.body.end())), 2u);

  // Now `second` sends and takes over.
  expectRelayed(*second, *peer, taggedPayload(3, 3, 60));
  ASSERT_OK(peer->sendPacket(shared, taggedPayload(4, 4, 60)));
  ASSERT_OK_AND_ASSIGN(OwnedFrame toSecond, recvFrameOfType(*second, derp::FrameType::kRecvPacket,
                                                            kWait, &secondFrames));
  EXPECT_EQ(payloadSeq(std::vector<uint8_t>(toSecond.body.begin() + 32, toSecond.body.end())), 4u);

  // `first` must not get packet 4; collect what it does get for a moment.
  RealClock clock;
  Nanos until = clock.now() + 300 * kMillisecond;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = first->recv(std::max<Nanos>(until - clock.now(), 0));
    if (!f.ok()) {
      ASSERT_TRUE(absl::IsDeadlineExceeded(f.status())) << f.status();
      break;
    }
    EXPECT_NE(f->frameType(), derp::FrameType::kRecvPacket)
        << "the inactive duplicate received a packet";
    firstFrames.push_back(*std::move(f));
  }
  EXPECT_TRUE(sawHealth(firstFrames))
      << "the inactive duplicate got no Health frame (the active one got "
      << (sawHealth(secondFrames) ? "one" : "none") << ")";
}

// Two connections of one key that take turns sending (a cloned key) fight: at
// the third turn (a, b, a) both are disabled, as derper's disableFighters
// does. Packets to the key drop as dup_client, both are told with a Health
// frame, and more turns cost nothing: no activation (a mail to every shard
// each) and no Health frame. When one leaves, the other receives again.
TEST_F(RelayTest, DuplicateKeyFightersAreDisabledUntilOneIsLeft) {
  ASSERT_OK_AND_ASSIGN(auto peer, connectClient(port_));
  client::ClientOptions opts = clientOptions(port_);
  ASSERT_OK_AND_ASSIGN(auto a, DerpClient::connect(opts));
  ASSERT_OK_AND_ASSIGN(auto b, DerpClient::connect(opts));
  const derp::NodeKey shared = a->publicKey();
  auto metric = [&](std::string_view name, const Labels& filter = {}) {
    absl::StatusOr<double> v = scrapeMetric(port_, name, filter);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  };
  // What a connection got for a while: Health frames (non-empty ones say
  // "duplicate"), and no packet.
  auto drain = [](DerpClient& c, Nanos d) {
    std::vector<OwnedFrame> got;
    RealClock clock;
    const Nanos until = clock.now() + d;
    for (;;) {
      absl::StatusOr<OwnedFrame> f = c.recv(std::max<Nanos>(until - clock.now(), 0));
      if (!f.ok()) break;
      got.push_back(*std::move(f));
    }
    return got;
  };
  auto count = [](const std::vector<OwnedFrame>& frames, derp::FrameType type) {
    return std::count_if(frames.begin(), frames.end(),
                         [&](const OwnedFrame& f) { return f.frameType() == type; });
  };
  // Each turn waits a moment: the activation reaches the other shard's
  // replica by mail, and a fight is a pattern of turns every replica has seen.
  uint32_t seq = 0;
  auto turn = [&](DerpClient& who) {
    expectRelayed(who, *peer, taggedPayload(++seq, 1, 60));
    ::usleep(50 * 1000);
  };
  turn(*a);
  turn(*b);
  turn(*a);
  ASSERT_OK_AND_ASSIGN(double fights, waitForMetric(port_, "derpd_duplicate_key_fights_total",
                                                    {}, 1, kWait));
  EXPECT_EQ(fights, 1);
  const double activations = metric("derpd_duplicate_key_activations_total");
  EXPECT_LE(activations, 2);
  drain(*a, 100 * kMillisecond);
  drain(*b, 100 * kMillisecond);
  for (int i = 0; i < 50; i++) {
    expectRelayed(*b, *peer, taggedPayload(++seq, 2, 60));
    expectRelayed(*a, *peer, taggedPayload(++seq, 3, 60));
  }
  EXPECT_EQ(metric("derpd_duplicate_key_activations_total"), activations);
  EXPECT_EQ(metric("derpd_duplicate_key_fights_total"), 1);
  // Packets to the key are dropped, counted; neither connection gets one.
  ASSERT_OK(peer->sendPacket(shared, taggedPayload(++seq, 4, 60)));
  ASSERT_OK_AND_ASSIGN(double dropped, waitForMetric(port_, "derpd_packets_dropped_total",
                                                     {{"reason", "dup_client"}}, 1, kWait));
  EXPECT_EQ(dropped, 1);
  std::vector<OwnedFrame> toA = drain(*a, 200 * kMillisecond);
  std::vector<OwnedFrame> toB = drain(*b, 200 * kMillisecond);
  EXPECT_EQ(count(toA, derp::FrameType::kRecvPacket), 0);
  EXPECT_EQ(count(toB, derp::FrameType::kRecvPacket), 0);
  EXPECT_EQ(count(toA, derp::FrameType::kHealth), 0) << "Health frames for turns after the fight";
  EXPECT_EQ(count(toB, derp::FrameType::kHealth), 0) << "Health frames for turns after the fight";
  // b leaves: a is alone, told all is well, and receives again.
  b->close();
  ASSERT_OK_AND_ASSIGN(OwnedFrame cleared,
                       recvFrameOfType(*a, derp::FrameType::kHealth, kWait));
  EXPECT_TRUE(cleared.body.empty()) << "the Health frame does not clear the problem";
  ASSERT_OK(peer->sendPacket(shared, taggedPayload(++seq, 5, 60)));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet back, a->recvPacket(kWait));
  EXPECT_EQ(payloadSeq(back.payload), seq);
}

}  // namespace
}  // namespace derpd::testing
