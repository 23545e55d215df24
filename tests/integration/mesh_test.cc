// Regional mesh (PROTOCOL.md "Mesh", issue 8) across real derpd processes:
// three nodes on 127.0.0.1-3 sharing one port. Clients on different nodes
// reach each other; a killed node's clients are gone and back after a
// restart; a client that moves is found on its new node; a wrong or missing
// mesh key is refused; the watcher protocol byte by byte; 1,000 clients; TLS
// links, never made to a peer whose certificate --mesh-ca did not issue; a
// node draining on SIGTERM. Every wait is bounded.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/mesh_cluster.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_pki.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;
using client::OwnedFrame;
using derp::PeerGoneReason;

constexpr Nanos kWait = 5 * kSecond;
// A key reaching the other nodes (or a re-formed link) before the first send
// there succeeds.
constexpr Nanos kPropagation = 10 * kSecond;
constexpr Nanos kQuiet = 300 * kMillisecond;  // long enough for a wrongly relayed packet to show
constexpr size_t kPayloadSize = kMeshPayloadSize;

constexpr char kOutPackets[] = "derpd_mesh_forwarded_out_packets_total";
constexpr char kOutBytes[] = "derpd_mesh_forwarded_out_bytes_total";
constexpr char kInPackets[] = "derpd_mesh_forwarded_in_packets_total";
constexpr char kInBytes[] = "derpd_mesh_forwarded_in_bytes_total";
constexpr char kInPacketsByPeer[] = "derpd_mesh_forwarded_in_packets_by_peer_total";
constexpr char kInBytesByPeer[] = "derpd_mesh_forwarded_in_bytes_by_peer_total";
constexpr char kPeerKeys[] = "derpd_mesh_peer_keys";
constexpr char kClosed[] = "derpd_connections_closed_total";
constexpr char kDropped[] = "derpd_packets_dropped_total";

Nanos now() {
  static const RealClock clock;
  return clock.now();
}

Nanos until(Nanos deadline) { return std::max<Nanos>(deadline - now(), 0); }


// Reads frames until one of type T satisfies pred; others are skipped.
template <typename T, typename Pred>
absl::StatusOr<T> recvFrameWhere(DerpClient& c, Pred pred, Nanos timeout) {
  const Nanos deadline = now() + timeout;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = c.recv(until(deadline));
    if (!f.ok()) return f.status();
    absl::StatusOr<derp::Frame> parsed = f->parse();
    if (!parsed.ok()) return parsed.status();
    if (const T* t = std::get_if<T>(&*parsed); t != nullptr && pred(*t)) return *t;
  }
}

void expectPeerGone(DerpClient& c, const derp::NodeKey& key, PeerGoneReason reason) {
  absl::StatusOr<derp::PeerGoneFrame> gone = recvFrameWhere<derp::PeerGoneFrame>(
      c, [&](const derp::PeerGoneFrame& g) { return g.key == key; }, kWait);
  ASSERT_TRUE(gone.ok()) << "no PeerGone(" << key.toString() << "): " << gone.status();
  ASSERT_TRUE(gone->reason.has_value()) << "PeerGone without the reason byte";
  EXPECT_EQ(*gone->reason, reason);
}

// Ok once the server has closed c (frames before that are skipped).
absl::Status expectClosedByServer(DerpClient& c) {
  const Nanos deadline = now() + kWait;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = c.recv(until(deadline));
    if (absl::IsUnavailable(f.status())) return absl::OkStatus();
    if (!f.ok()) return absl::Status(f.status().code(), "connection still open");
  }
}



void expectExchange(DerpClient& a, DerpClient& b, uint32_t tag) {
  ASSERT_OK(sendUntilDelivered(a, b, tag, kPropagation));
  ASSERT_OK(sendUntilDelivered(b, a, tag + 1, kPropagation));
}

// count packets from -> to, all arriving in order (once the route is known).
void expectBurst(DerpClient& from, DerpClient& to, uint32_t tag, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) ASSERT_OK(from.sendPacket(to.publicKey(), meshPayload(i, tag)));
  for (uint32_t i = 0; i < count; ++i) {
    ASSERT_OK_AND_ASSIGN(uint32_t seq, recvTagged(to, from.publicKey(), tag, kWait));
    ASSERT_EQ(seq, i) << "burst tagged " << tag << " reordered or lost";
  }
}

uint16_t localPort(const DerpClient& c) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(c.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// ::ffff:127.0.0.1, the address our clients connect from.
std::array<uint8_t, 16> mappedLoopback() {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
}

std::vector<uint8_t> forwardPacketBytes(const derp::NodeKey& src, const derp::NodeKey& dst,
                                        const std::vector<uint8_t>& packet) {
  return derp::encodeFrame(derp::ForwardPacketFrame{src, dst, packet});
}

std::vector<uint8_t> watchConnsBytes() {
  return frameHeaderBytes(static_cast<uint8_t>(derp::FrameType::kWatchConns), 0);
}

std::vector<uint8_t> closePeerBytes(const derp::NodeKey& key) {
  return frameBytes(static_cast<uint8_t>(derp::FrameType::kClosePeer), key.bytes);
}

class MeshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fdLimit_ = raiseFdLimit(); }

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(mesh_, MeshCluster::start({}));
    ASSERT_OK(mesh_->waitFormed());
  }

  // Node n's value of name (summed over samples matching filter); -1 and a
  // failure when it cannot be scraped.
  double metric(int n, std::string_view name, const Labels& filter = {}) {
    absl::StatusOr<double> v = scrapeMetric(mesh_->metricsPort(n), name, filter);
    EXPECT_TRUE(v.ok()) << "node " << n << ": " << v.status();
    return v.ok() ? *v : -1;
  }

  // Waits for node n's counter to reach before + by, and checks it went no further.
  void expectIncrease(int n, std::string_view name, const Labels& filter, double before,
                      double by) {
    ASSERT_OK_AND_ASSIGN(double v, waitForMetricWhere(
                                       mesh_->metricsPort(n), name, filter,
                                       [&](double v) { return v >= before + by; }, kWait));
    EXPECT_EQ(v - before, by) << name << " on node " << n;
  }

  // Waits until node n has learned at least `keys` keys from peer.
  void expectPeerKeys(int n, int peer, double keys, Nanos timeout = kPropagation) {
    ASSERT_OK_AND_ASSIGN(double v,
                         waitForMetricWhere(
                             mesh_->metricsPort(n), kPeerKeys, {{"peer", mesh_->label(peer)}},
                             [&](double v) { return v >= keys; }, timeout));
    ASSERT_GE(v, keys) << "node " << n << " knows too few keys of node " << peer;
  }

  static inline uint64_t fdLimit_ = 0;
  std::unique_ptr<MeshCluster> mesh_;
};

TEST_F(MeshTest, FormsWithoutLinkingToItself) {
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(mesh_->metricsPort(1)));
  for (const MetricSample& s : m) {
    for (const auto& [name, value] : s.labels) {
      EXPECT_FALSE(name == "peer" && value == mesh_->label(1))
          << s.name << " names node 1 itself as a peer";
    }
  }
  EXPECT_EQ(sumMetric(m, "derpd_mesh_peer_up"), 2);
  EXPECT_GE(sumMetric(m, "derpd_mesh_peer_connects_total", {{"peer", mesh_->label(2)}}), 1);
}

TEST_F(MeshTest, ClientsOnDifferentNodesReachEachOther) {
  ASSERT_OK_AND_ASSIGN(auto a, mesh_->connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, mesh_->connect(3));
  expectExchange(*a, *b, 1);
  if (HasFatalFailure()) return;

  const Labels toNode3 = {{"peer", mesh_->label(3)}};
  const Labels toNode1 = {{"peer", mesh_->label(1)}};
  const double out1 = metric(1, kOutPackets, toNode3), outBytes1 = metric(1, kOutBytes, toNode3);
  const double out3 = metric(3, kOutPackets, toNode1);
  const double in1 = metric(1, kInPackets), in3 = metric(3, kInPackets);
  const double inBytes3 = metric(3, kInBytes);
  const double out2 = metric(2, kOutPackets), in2 = metric(2, kInPackets);
  // Per peer: what node 1 sent node 3 is counted on node 3 under node 1's label.
  const double in3from1 = metric(3, kInPacketsByPeer, toNode1);
  const double inBytes3from1 = metric(3, kInBytesByPeer, toNode1);
  const double in1from3 = metric(1, kInPacketsByPeer, toNode3);

  constexpr uint32_t kBurst = 10;
  expectBurst(*a, *b, 3, kBurst);
  expectBurst(*b, *a, 4, kBurst);
  if (HasFatalFailure()) return;
  expectIncrease(1, kOutPackets, toNode3, out1, kBurst);
  expectIncrease(3, kInPackets, {}, in3, kBurst);
  expectIncrease(3, kInBytes, {}, inBytes3, kBurst * kPayloadSize);
  expectIncrease(3, kOutPackets, toNode1, out3, kBurst);
  expectIncrease(1, kInPackets, {}, in1, kBurst);
  expectIncrease(1, kOutBytes, toNode3, outBytes1, kBurst * kPayloadSize);
  expectIncrease(3, kInPacketsByPeer, toNode1, in3from1, kBurst);
  expectIncrease(3, kInBytesByPeer, toNode1, inBytes3from1, kBurst * kPayloadSize);
  expectIncrease(1, kInPacketsByPeer, toNode3, in1from3, kBurst);
  EXPECT_EQ(metric(1, "derpd_mesh_forward_drops_total"), 0);
  EXPECT_EQ(metric(3, "derpd_mesh_forward_drops_total"), 0);
  // Node 2 carried nothing: the nodes forward straight to the destination's node.
  EXPECT_EQ(metric(2, kOutPackets), out2);
  EXPECT_EQ(metric(2, kInPackets), in2);
}

TEST_F(MeshTest, KilledNodesClientsAreGoneAndBackAfterRestart) {
  const derp::PrivateKey xKey = derp::PrivateKey::generate();
  ASSERT_OK_AND_ASSIGN(auto x, mesh_->connect(2, xKey));
  ASSERT_OK_AND_ASSIGN(auto y, mesh_->connect(1));
  ASSERT_OK(sendUntilDelivered(*x, *y, 1, kPropagation));
  const derp::NodeKey xPub = x->publicKey();
  const double connects = metric(1, "derpd_mesh_peer_connects_total", {{"peer", mesh_->label(2)}});

  ASSERT_OK(mesh_->kill(2));
  // Y had received from X: told that X left, as if X had been local.
  expectPeerGone(*y, xPub, PeerGoneReason::kDisconnected);
  if (HasFatalFailure()) return;
  ASSERT_OK(y->sendPacket(xPub, meshPayload(2, 2)));
  expectPeerGone(*y, xPub, PeerGoneReason::kNotHere);
  ASSERT_OK(mesh_->waitPeerUp(1, 2, false, kWait));
  ASSERT_OK(mesh_->waitPeerUp(3, 2, false, kWait));
  EXPECT_EQ(metric(1, kPeerKeys, {{"peer", mesh_->label(2)}}), 0);

  ASSERT_OK(mesh_->restart(2));
  ASSERT_OK_AND_ASSIGN(x, mesh_->connect(2, xKey));
  ASSERT_OK(mesh_->waitFormed());
  expectExchange(*y, *x, 10);
  EXPECT_GT(metric(1, "derpd_mesh_peer_connects_total", {{"peer", mesh_->label(2)}}), connects);
}

TEST_F(MeshTest, MovingClientIsFoundOnItsNewNode) {
  const derp::PrivateKey mKey = derp::PrivateKey::generate();
  ASSERT_OK_AND_ASSIGN(auto m, mesh_->connect(1, mKey));
  ASSERT_OK_AND_ASSIGN(auto c, mesh_->connect(2));
  ASSERT_OK(sendUntilDelivered(*c, *m, 1, kPropagation));

  // Break before make: from node 1 to node 3.
  m->close();
  ASSERT_OK_AND_ASSIGN(m, mesh_->connect(3, mKey));
  ASSERT_OK(sendUntilDelivered(*c, *m, 2, kPropagation));
  expectBurst(*c, *m, 3, 10);
  if (HasFatalFailure()) return;

  // Make before break: back to node 1 while still on node 3, node 2 seeing
  // both; node 3's PeerGone must not hide the copy on node 1.
  const double fromNode1 = metric(2, kPeerKeys, {{"peer", mesh_->label(1)}});
  ASSERT_OK_AND_ASSIGN(auto m1, mesh_->connect(1, mKey));
  expectPeerKeys(2, 1, fromNode1 + 1);
  if (HasFatalFailure()) return;
  m->close();
  ASSERT_OK(sendUntilDelivered(*c, *m1, 4, kPropagation));
  expectBurst(*c, *m1, 5, 10);
  expectBurst(*m1, *c, 6, 10);
}

TEST_F(MeshTest, WrongMeshKeyIsRefused) {
  // A fourth node with another region's key, meshing with node 1.
  ASSERT_OK(replaceFileAtomically(mesh_->dir(), "other.psk", randomMeshKey()));
  ASSERT_OK_AND_ASSIGN(auto node4, DerpdProcess::start(mesh_->nodeOptions(
                                       "127.0.0.4", mesh_->dir() + "/node4.key", mesh_->label(1),
                                       mesh_->dir() + "/other.psk", {})));
  ASSERT_OK_AND_ASSIGN(double denied,
                       waitForMetricWhere(
                           mesh_->metricsPort(1), kClosed, {{"reason", "mesh_frame_denied"}},
                           [](double v) { return v >= 1; }, kWait));
  EXPECT_GE(denied, 1) << "node 1 never refused node 4's WatchConns";
  ASSERT_OK_AND_ASSIGN(uint16_t metrics4, metricsPortOf(*node4));
  EXPECT_EQ(scrapeMetric(metrics4, kPeerKeys, {{"peer", mesh_->label(1)}}).value_or(-1), 0);

  // So node 1 never learns node 4's clients.
  client::ClientOptions o4 = mesh_->clientOptions(1);
  o4.host = "127.0.0.4";
  ASSERT_OK_AND_ASSIGN(auto d, DerpClient::connect(o4));
  ASSERT_OK_AND_ASSIGN(auto e, mesh_->connect(1));
  ASSERT_OK(e->sendPacket(d->publicKey(), meshPayload(1, 1)));
  expectPeerGone(*e, d->publicKey(), PeerGoneReason::kNotHere);
  EXPECT_TRUE(absl::IsDeadlineExceeded(recvTagged(*d, e->publicKey(), 1, kQuiet).status()));

  // Nor does a client with a wrong key get to watch.
  client::ClientOptions wrong = mesh_->clientOptions(1);
  wrong.meshKey = randomMeshKey();
  ASSERT_OK_AND_ASSIGN(auto w, DerpClient::connect(wrong));
  ASSERT_OK(w->sendRaw(watchConnsBytes()));
  EXPECT_OK(expectClosedByServer(*w));
}

TEST(MeshStartupTest, BadPskFileStopsStartupNamingTheFile) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  absl::Cleanup removeDir = [&] { removeTree(dir); };
  const std::string good = randomMeshKey();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"short.psk", good.substr(1)},
      {"nothex.psk", "z" + good.substr(1)},
      {"long.psk", good + "00"},
      {"empty.psk", "\n"},
  };
  for (const auto& [name, content] : cases) {
    SCOPED_TRACE(name);
    ASSERT_OK(replaceFileAtomically(dir, name, content));
  }
  std::vector<std::string> files = {dir + "/missing.psk"};
  for (const auto& c : cases) files.push_back(dir + "/" + c.first);
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    DerpdOptions opts;
    opts.extraArgs = {"-stun=false", "-mesh-with", "127.0.0.2:3340", "-mesh-psk-file", file};
    ASSERT_OK_AND_ASSIGN(auto p, DerpdProcess::spawn(opts));
    ASSERT_OK_AND_ASSIGN(int code, p->waitExit(kWait));
    EXPECT_NE(code, 0);
    ASSERT_TRUE(p->waitForOutputEnd(kWait));
    EXPECT_TRUE(p->findLog(file).has_value()) << "the error does not name the file:\n"
                                              << p->logText();
  }
}

// derper's default key file, used when -mesh-psk-file is not given at all:
// $HOME/keys/derp-mesh.key here. A client holding that key may watch the
// node; -mesh-psk-file= (given, empty) turns the default off.
TEST(MeshStartupTest, DerpersDefaultKeyFileIsUsedUnlessTheFlagIsGiven) {
  ASSERT_OK_AND_ASSIGN(std::string home, makeTempDir());
  absl::Cleanup removeDir = [&] { removeTree(home); };
  ASSERT_EQ(::mkdir((home + "/keys").c_str(), 0700), 0);
  const std::string key = randomMeshKey();
  ASSERT_OK(replaceFileAtomically(home + "/keys", "derp-mesh.key", key + "\n"));
  for (bool flagGiven : {false, true}) {
    SCOPED_TRACE(flagGiven);
    DerpdOptions opts;
    opts.extraArgs = {"-stun=false"};
    if (flagGiven) opts.extraArgs.push_back("-mesh-psk-file=");
    opts.env = {{"HOME", home}};
    ASSERT_OK_AND_ASSIGN(auto d, DerpdProcess::start(opts));
    const std::string logged =
        absl::StrCat("mesh key file: ", home, "/keys/derp-mesh.key (derper's default location");
    EXPECT_EQ(d->findLog(logged).has_value(), !flagGiven) << d->logText();
    client::ClientOptions o;
    o.port = d->port();
    ASSERT_OK_AND_ASSIGN(auto regular, DerpClient::connect(o));
    client::ClientOptions w = o;
    w.key = derp::PrivateKey::generate();
    w.meshKey = key;
    ASSERT_OK_AND_ASSIGN(auto watcher, DerpClient::connect(w));
    ASSERT_OK(watcher->sendRaw(watchConnsBytes()));
    if (flagGiven) {
      EXPECT_OK(expectClosedByServer(*watcher));
      continue;
    }
    // Accepted as a mesh peer: it is told who is here.
    const Nanos deadline = now() + kWait;
    bool present = false;
    while (!present) {
      ASSERT_OK_AND_ASSIGN(OwnedFrame f, watcher->recv(until(deadline)));
      if (f.frameType() != derp::FrameType::kPeerPresent) continue;
      ASSERT_OK_AND_ASSIGN(derp::Frame parsed, f.parse());
      present = std::get<derp::PeerPresentFrame>(parsed).key == regular->publicKey();
    }
  }
}

TEST_F(MeshTest, MeshFramesWithoutMeshKeyCloseTheConnection) {
  ASSERT_OK_AND_ASSIGN(auto a, mesh_->connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, mesh_->connect(1));
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> frames = {
      {"ForwardPacket", forwardPacketBytes(a->publicKey(), b->publicKey(), meshPayload(0, 5))},
      {"WatchConns", watchConnsBytes()},
      {"ClosePeer", closePeerBytes(b->publicKey())},
  };
  for (const auto& [what, bytes] : frames) {
    SCOPED_TRACE(what);
    const double before = metric(1, kClosed, {{"reason", "mesh_frame_denied"}});
    ASSERT_OK_AND_ASSIGN(auto rogue, mesh_->connect(1));
    ASSERT_OK(rogue->sendRaw(bytes));
    EXPECT_OK(expectClosedByServer(*rogue));
    expectIncrease(1, kClosed, {{"reason", "mesh_frame_denied"}}, before, 1);
  }
  // b got no forged packet, was not closed, and both keep relaying.
  ASSERT_OK(a->sendPacket(b->publicKey(), meshPayload(1, 6)));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, b->recvPacket(kWait));
  EXPECT_EQ(p.src, a->publicKey());
  EXPECT_EQ(payloadTag(p.payload), 6u) << "the forged ForwardPacket was delivered";
  expectBurst(*b, *a, 7, 5);
}

TEST_F(MeshTest, WatcherSeesClientsForwardsAndClosesPeers) {
  ASSERT_OK_AND_ASSIGN(auto r, mesh_->connect(1));
  client::ClientOptions proberOpts = mesh_->clientOptions(1);
  proberOpts.isProber = true;
  ASSERT_OK_AND_ASSIGN(auto prober, DerpClient::connect(proberOpts));
  client::ClientOptions watcherOpts = mesh_->clientOptions(1);
  watcherOpts.meshKey = mesh_->meshKey();
  ASSERT_OK_AND_ASSIGN(auto w, DerpClient::connect(watcherOpts));
  ASSERT_OK(w->sendRaw(watchConnsBytes()));

  // Everyone on node 1: our three clients and the links from nodes 2 and 3.
  struct Expected {
    uint8_t flags;
    std::optional<uint16_t> port;  // known for our own clients
  };
  std::map<std::string, Expected> expected = {
      {w->publicKey().hex(), {derp::kPeerPresentIsMeshPeer, localPort(*w)}},
      {r->publicKey().hex(), {derp::kPeerPresentIsRegular, localPort(*r)}},
      {prober->publicKey().hex(), {derp::kPeerPresentIsProber, localPort(*prober)}},
      {mesh_->serverKey(2).hex(), {derp::kPeerPresentIsMeshPeer, std::nullopt}},
      {mesh_->serverKey(3).hex(), {derp::kPeerPresentIsMeshPeer, std::nullopt}},
  };
  std::map<std::string, derp::PeerPresentFrame> seen;
  const Nanos deadline = now() + kWait;
  while (seen.size() < expected.size()) {
    ASSERT_OK_AND_ASSIGN(OwnedFrame f, w->recv(until(deadline)));
    if (f.frameType() != derp::FrameType::kPeerPresent) continue;
    ASSERT_EQ(f.body.size(), derp::kPeerPresentLen);
    ASSERT_OK_AND_ASSIGN(derp::Frame parsed, f.parse());
    const auto& present = std::get<derp::PeerPresentFrame>(parsed);
    EXPECT_TRUE(expected.contains(present.key.hex())) << "unexpected " << present.key.toString();
    seen.emplace(present.key.hex(), present);
  }
  for (const auto& [key, want] : expected) {
    SCOPED_TRACE(key);
    const derp::PeerPresentFrame& got = seen.at(key);
    EXPECT_EQ(got.flags, want.flags);
    ASSERT_TRUE(got.ip.has_value());
    if (!want.port.has_value()) {  // a mesh link: from some 127/8 address
      EXPECT_TRUE(std::equal(got.ip->begin(), got.ip->begin() + 13, mappedLoopback().begin()));
      continue;
    }
    EXPECT_TRUE(*got.ip == mappedLoopback());
    EXPECT_EQ(got.port, *want.port);
  }

  // Clients that come and go.
  ASSERT_OK_AND_ASSIGN(auto n, mesh_->connect(1));
  const derp::NodeKey nKey = n->publicKey();
  ASSERT_OK_AND_ASSIGN(derp::PeerPresentFrame present,
                       recvFrameWhere<derp::PeerPresentFrame>(
                           *w, [&](const auto& f) { return f.key == nKey; }, kWait));
  EXPECT_EQ(present.flags, derp::kPeerPresentIsRegular);
  EXPECT_EQ(present.port, localPort(*n));
  n->close();
  ASSERT_OK(recvFrameWhere<derp::PeerGoneFrame>(
                *w, [&](const auto& f) { return f.key == nKey; }, kWait)
                .status());

  // ForwardPacket: delivered with the source it names.
  const derp::NodeKey claimed = derp::PrivateKey::generate().publicKey();
  const double in = metric(1, kInPackets), inBytes = metric(1, kInBytes);
  ASSERT_OK(w->sendRaw(forwardPacketBytes(claimed, r->publicKey(), meshPayload(0, 20))));
  EXPECT_OK(recvTagged(*r, claimed, 20, kWait).status());
  expectIncrease(1, kInPackets, {}, in, 1);
  expectIncrease(1, kInBytes, {}, inBytes, kPayloadSize);

  // ... but never forwarded again: one for a client on node 2 is dropped.
  ASSERT_OK_AND_ASSIGN(auto q, mesh_->connect(2));
  ASSERT_OK(sendUntilDelivered(*r, *q, 21, kPropagation));  // node 1 knows q is on node 2
  const Labels onFwd = {{"reason", "unknown_dest_on_fwd"}};
  const double dropped = metric(1, kDropped, onFwd);
  const double out = metric(1, kOutPackets, {{"peer", mesh_->label(2)}});
  ASSERT_OK(w->sendRaw(forwardPacketBytes(claimed, q->publicKey(), meshPayload(0, 22))));
  expectIncrease(1, kDropped, onFwd, dropped, 1);
  EXPECT_TRUE(absl::IsDeadlineExceeded(recvTagged(*q, claimed, 22, kQuiet).status()));
  EXPECT_EQ(metric(1, kOutPackets, {{"peer", mesh_->label(2)}}), out);

  // ClosePeer: every connection of the key goes; others stay.
  ASSERT_OK_AND_ASSIGN(auto proberAgain, mesh_->connect(1, proberOpts.key));
  ASSERT_OK(w->sendRaw(closePeerBytes(prober->publicKey())));
  EXPECT_OK(expectClosedByServer(*prober));
  EXPECT_OK(expectClosedByServer(*proberAgain));
  EXPECT_OK(r->ping(kWait).status());
  EXPECT_OK(w->ping(kWait).status());
}

TEST_F(MeshTest, ThousandClientsAcrossThreeNodesAllDelivered) {
  constexpr int kClients = 1000;
  if (fdLimit_ < kClients + 200) GTEST_SKIP() << "RLIMIT_NOFILE is " << fdLimit_;
  auto nodeOf = [](int i) { return i % 3 + 1; };
  std::vector<std::unique_ptr<DerpClient>> clients;
  const Nanos connectStart = now();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, mesh_->connect(nodeOf(i)));
    c->releaseBuffers();
    clients.push_back(std::move(c));
  }
  std::printf("connected %d clients in %lld ms\n", kClients,
              static_cast<long long>((now() - connectStart) / kMillisecond));
  for (int n = 1; n <= 3; ++n) {
    for (int peer = 1; peer <= 3; ++peer) {
      if (peer != n) expectPeerKeys(n, peer, kClients / 3);
    }
  }
  if (HasFatalFailure()) return;

  // A random derangement: everyone sends one packet and receives one.
  std::mt19937 rng(20261126);
  std::vector<int> to(kClients);
  for (int i = 0; i < kClients; ++i) to[i] = i;
  std::shuffle(to.begin(), to.end(), rng);
  for (int i = 0; i < kClients; ++i) {
    if (to[i] == i) std::swap(to[i], to[(i + 1) % kClients]);
  }
  std::vector<int> from(kClients);
  int crossNode = 0;
  for (int i = 0; i < kClients; ++i) {
    from[to[i]] = i;
    crossNode += nodeOf(i) != nodeOf(to[i]) ? 1 : 0;
  }
  double inBefore = 0;
  for (int n = 1; n <= 3; ++n) inBefore += metric(n, kInPackets);

  std::vector<int> missing(kClients);  // receivers still waiting
  for (int i = 0; i < kClients; ++i) missing[i] = i;
  int resent = 0;
  for (int round = 0; round < 3 && !missing.empty(); ++round) {
    for (int dst : missing) {
      ASSERT_OK(clients[from[dst]]->sendPacket(clients[dst]->publicKey(), meshPayload(from[dst], dst)));
    }
    resent += round > 0 ? static_cast<int>(missing.size()) : 0;
    std::vector<int> still;
    const Nanos deadline = now() + kWait;
    for (int dst : missing) {
      absl::StatusOr<uint32_t> seq =
          recvTagged(*clients[dst], clients[from[dst]]->publicKey(), dst,
                     std::max<Nanos>(until(deadline), 20 * kMillisecond));
      if (seq.ok()) {
        EXPECT_EQ(*seq, static_cast<uint32_t>(from[dst]));
      } else {
        still.push_back(dst);
      }
    }
    missing = std::move(still);
  }
  std::printf("%d packets (%d across nodes), %d resent, %zu never arrived\n", kClients, crossNode,
              resent, missing.size());
  EXPECT_EQ(kClients - static_cast<int>(missing.size()), kClients) << "packets delivered";
  double inAfter = 0;
  for (int n = 1; n <= 3; ++n) inAfter += metric(n, kInPackets);
  EXPECT_GE(inAfter - inBefore, crossNode);
  EXPECT_LE(inAfter - inBefore, crossNode + resent);
}

// Two TLS nodes (derper's file names: <certDir>/<hostname>.crt and .key, the
// hostname an IP) with certificates from `pki`, whose clients trust `pki`, and
// whose links trust only `meshCa`.
absl::StatusOr<MeshCluster::Options> tlsMeshOptions(TestPki& pki, const std::string& certDir,
                                                    const std::string& meshCa) {
  MeshCluster::Options opts;
  opts.nodes = 2;
  for (int n = 1; n <= opts.nodes; ++n) {
    absl::StatusOr<LeafFiles> leaf = pki.issue(MeshCluster::ip(n), MeshCluster::ip(n),
                                               absl::StrCat("IP:", MeshCluster::ip(n)),
                                               KeyType::kEcdsaP256);
    if (!leaf.ok()) return leaf.status();
  }
  opts.scheme = "https://";
  opts.clientCaFile = pki.caCrt();
  opts.nodeArgs = [certDir, meshCa](int n) {
    return std::vector<std::string>{"-certmode", "manual",           "-certdir",  certDir,
                                    "-hostname", MeshCluster::ip(n), "--mesh-ca", meshCa};
  };
  return opts;
}

// Also the control for PeersWithCertificatesFromAnotherCaNeverLink: the same
// nodes, their links trusting the CA that issued the certificates.
TEST(MeshTlsTest, NodesMeshOverTls) {
  std::optional<std::string> openssl = findOnPath("openssl");
  if (!openssl.has_value()) GTEST_SKIP() << "openssl is not on PATH (package openssl)";
  ASSERT_OK_AND_ASSIGN(std::string certDir, makeTempDir());
  absl::Cleanup removeDir = [&] { removeTree(certDir); };
  absl::StatusOr<TestPki> pki = TestPki::create(certDir, *openssl);
  ASSERT_TRUE(pki.ok()) << pki.status();
  ASSERT_OK_AND_ASSIGN(MeshCluster::Options opts, tlsMeshOptions(*pki, certDir, pki->caCrt()));
  ASSERT_OK_AND_ASSIGN(auto mesh, MeshCluster::start(opts));
  ASSERT_TRUE(mesh->node(1).findLog("listening on https://").has_value());
  ASSERT_OK(mesh->waitFormed());
  ASSERT_OK_AND_ASSIGN(auto a, mesh->connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, mesh->connect(2));
  EXPECT_FALSE(a->tlsVersion().empty());
  expectExchange(*a, *b, 1);
  if (!HasFatalFailure()) expectBurst(*a, *b, 3, 10);
}

TEST(MeshTlsTest, PeersWithCertificatesFromAnotherCaNeverLink) {
  constexpr Nanos kHold = 3 * kSecond;  // both nodes running, retrying, never linked
  std::optional<std::string> openssl = findOnPath("openssl");
  if (!openssl.has_value()) GTEST_SKIP() << "openssl is not on PATH (package openssl)";
  ASSERT_OK_AND_ASSIGN(std::string certDir, makeTempDir());
  absl::Cleanup removeDir = [&] { removeTree(certDir); };
  ASSERT_OK_AND_ASSIGN(std::string otherDir, makeTempDir());
  absl::Cleanup removeOther = [&] { removeTree(otherDir); };
  absl::StatusOr<TestPki> pki = TestPki::create(certDir, *openssl);
  ASSERT_TRUE(pki.ok()) << pki.status();
  // Another CA, even with the same subject name: the links trust only it.
  absl::StatusOr<TestPki> other = TestPki::create(otherDir, *openssl);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_OK_AND_ASSIGN(MeshCluster::Options opts, tlsMeshOptions(*pki, certDir, other->caCrt()));
  ASSERT_OK_AND_ASSIGN(auto mesh, MeshCluster::start(opts));

  // Node 1 was serving before node 2 started, so node 2's first try got as
  // far as the certificate (node 1's first try may have found nothing listening).
  const std::string toNode1 = "cannot link to " + mesh->label(1);
  ASSERT_TRUE(mesh->node(2).waitForLog(toNode1, kWait)) << mesh->node(2).logText();
  const std::string line = mesh->node(2).findLog(toNode1).value_or("");
  EXPECT_NE(line.find("certificate"), std::string::npos) << line;
  ASSERT_TRUE(mesh->node(1).waitForLog("cannot link to " + mesh->label(2), kWait))
      << mesh->node(1).logText();

  // Clients (who trust the issuing CA) connect, but cannot reach each other.
  ASSERT_OK_AND_ASSIGN(auto a, mesh->connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, mesh->connect(2));
  ASSERT_OK(a->sendPacket(b->publicKey(), meshPayload(0, 1)));
  expectPeerGone(*a, b->publicKey(), PeerGoneReason::kNotHere);
  EXPECT_TRUE(absl::IsDeadlineExceeded(recvTagged(*b, a->publicKey(), 1, kQuiet).status()));

  // However long the nodes keep retrying.
  const Nanos holdEnd = now() + kHold;
  do {
    for (int n = 1; n <= 2; ++n) {
      const Labels peer = {{"peer", mesh->label(3 - n)}};
      ASSERT_OK_AND_ASSIGN(double up,
                           scrapeMetric(mesh->metricsPort(n), "derpd_mesh_peer_up", peer));
      ASSERT_EQ(up, 0) << "node " << n << " linked to a peer its --mesh-ca did not issue";
      ASSERT_OK_AND_ASSIGN(double connects, scrapeMetric(mesh->metricsPort(n),
                                                         "derpd_mesh_peer_connects_total", peer));
      ASSERT_EQ(connects, 0) << "node " << n;
    }
    ::usleep(100 * kMillisecond / kMicrosecond);
  } while (now() < holdEnd);
  EXPECT_TRUE(mesh->node(1).running());
  EXPECT_TRUE(mesh->node(2).running());
}

// SIGTERM on a mesh node: its clients and the other nodes' links to it are
// told Restarting; it serves its clients until they leave, then closes its
// own links and exits 0, well before its drain time.
TEST(MeshDrainTest, DrainingNodeTellsClientsAndPeersThenExits) {
  constexpr Nanos kExitAfterLastClient = 3 * kSecond;  // far less than the drain time
  MeshCluster::Options opts;
  opts.nodeArgs = [](int n) {
    return n == 2 ? std::vector<std::string>{"--drain-timeout", "8s"} : std::vector<std::string>{};
  };
  ASSERT_OK_AND_ASSIGN(auto mesh, MeshCluster::start(opts));
  ASSERT_OK(mesh->waitFormed());
  ASSERT_OK_AND_ASSIGN(auto x, mesh->connect(2));
  ASSERT_OK_AND_ASSIGN(auto y, mesh->connect(1));
  expectExchange(*x, *y, 1);
  if (HasFatalFailure()) return;
  const derp::NodeKey xPub = x->publicKey();

  ASSERT_OK(mesh->node(2).sendSignal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(derp::RestartingFrame restarting,
                       recvFrameWhere<derp::RestartingFrame>(
                           *x, [](const derp::RestartingFrame&) { return true; }, kWait));
  EXPECT_GT(restarting.reconnectInMs, 0u);
  // The other nodes' links to node 2 were told too, and let go of its clients.
  const std::string restartingLine = "mesh: " + mesh->label(2) + " is restarting";
  for (int n : {1, 3}) {
    EXPECT_TRUE(mesh->node(n).waitForLog(restartingLine, kWait))
        << "node " << n << ":\n" << mesh->node(n).logText();
  }
  expectPeerGone(*y, xPub, PeerGoneReason::kDisconnected);
  if (HasFatalFailure()) return;
  ASSERT_OK(mesh->waitPeerUp(1, 2, false, kWait));

  // Still serving X while it stays, its own links carrying X's packets out.
  EXPECT_TRUE(absl::IsDeadlineExceeded(mesh->node(2).waitExit(kQuiet).status()))
      << "node 2 exited with a client still connected";
  ASSERT_OK(x->ping(kWait).status());
  ASSERT_OK(sendUntilDelivered(*x, *y, 3, kWait));

  x->close();
  ASSERT_OK_AND_ASSIGN(int code, mesh->node(2).waitExit(kExitAfterLastClient));
  EXPECT_EQ(code, 0) << mesh->node(2).logText();
  ASSERT_OK(y->sendPacket(xPub, meshPayload(2, 2)));
  expectPeerGone(*y, xPub, PeerGoneReason::kNotHere);

  // Nodes 1 and 3 stay meshed.
  ASSERT_OK_AND_ASSIGN(auto z, mesh->connect(3));
  expectExchange(*y, *z, 10);
}

}  // namespace
}  // namespace derpd::testing
