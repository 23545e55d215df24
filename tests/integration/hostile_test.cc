// Hostile clients against one derpd: each attack runs while honest clients
// are connected, and afterwards those clients still relay, a fresh pair can
// connect, and every refusal is counted by its reason.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/unique_fd.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"
#include "integration/thread_control.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr Nanos kWait = 10 * kSecond;

// A TCP connection to 127.0.0.1:port that never sends a byte (the connect
// completes in the kernel's backlog whether or not derpd accepts it).
absl::StatusOr<UniqueFd> silentConnection(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: errno ", errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 &&
      errno != EINPROGRESS) {
    return absl::InternalError(absl::StrCat("connect: errno ", errno));
  }
  return fd;
}

class HostileTest : public ::testing::Test {
 protected:
  static constexpr int kHonestReceivers = 20;
  static constexpr size_t kRssBound = 32 << 20;

  // derpd (2 shards, metrics on their own listener) with a pair of honest
  // clients and kHonestReceivers slow receivers (small socket buffers) that
  // are sent to throughout.
  // The floods come from 127.0.0.1, as the honest clients do: without the
  // per-address cap (limits_test covers it), which would refuse them before
  // the defence each test is about.
  void start(DerpdOptions opts) {
    opts.extraArgs.insert(opts.extraArgs.end(),
                          {"--metrics-addr", "127.0.0.1:0", "--max-conns-per-ip", "0"});
    ASSERT_OK_AND_ASSIGN(MetricsNode node, startWithMetrics(std::move(opts)));
    derpd_ = std::move(node.process);
    metricsPort_ = node.metricsPort;
    ASSERT_OK_AND_ASSIGN(a_, connectClient(derpd_->port()));
    ASSERT_OK_AND_ASSIGN(b_, connectClient(derpd_->port()));
    for (int i = 0; i < kHonestReceivers; i++) {
      client::ClientOptions o = clientOptions(derpd_->port());
      o.receiveBufferBytes = 4096;
      ASSERT_OK_AND_ASSIGN(auto r, DerpClient::connect(o));
      receivers_.push_back(std::move(r));
    }
    expectHonestServiceHolds();
    baselineRss_ = rssBytes();
    ASSERT_GT(baselineRss_, 0u);
  }

  // derpd's resident memory now (/proc/PID/status VmRSS), 0 if unreadable.
  size_t rssBytes() const {
    std::ifstream status(absl::StrCat("/proc/", derpd_->pid(), "/status"));
    std::string line;
    while (std::getline(status, line)) {
      size_t kb = 0;
      if (line.rfind("VmRSS:", 0) == 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(
                                                               absl::StripSuffix(line.substr(6), "kB")),
                                                           &kb)) {
        return kb * 1024;
      }
    }
    return 0;
  }

  // After an attack, once its connections are gone: derpd's memory is within
  // `extra` of what it used serving the honest clients alone. (The packet pool
  // keeps what it grew to, so the bound covers what an attack may make it grow;
  // measured: 0 to 9 MiB above a 9-10 MiB baseline.) Not under AddressSanitizer
  // (the sanitizer stage sets ASAN_OPTIONS): its shadow memory and quarantine
  // are not derpd's.
  void expectRssWithin(size_t extra) {
    if (std::getenv("ASAN_OPTIONS") != nullptr) return;
    const size_t rss = rssBytes();
    EXPECT_LE(rss, baselineRss_ + extra)
        << "RSS " << (rss >> 20) << " MiB, baseline " << (baselineRss_ >> 20) << " MiB";
  }

  // The honest pair relays both ways, every slow receiver gets its packet.
  void expectHonestServiceHolds() {
    ++round_;
    expectPairRelays(*a_, *b_, round_);
    for (size_t i = 0; i < receivers_.size(); i++) {
      std::vector<uint8_t> p = taggedPayload(round_, static_cast<uint32_t>(100 + i), 300);
      ASSERT_OK(a_->sendPacket(receivers_[i]->publicKey(), p));
      ASSERT_OK_AND_ASSIGN(DerpClient::Packet got, receivers_[i]->recvPacket(kWait));
      EXPECT_TRUE(got.src == a_->publicKey() && got.payload == p) << "receiver " << i;
    }
  }

  static void expectPairRelays(DerpClient& x, DerpClient& y, uint32_t seq) {
    std::vector<uint8_t> xy = taggedPayload(seq, 1, 500);
    std::vector<uint8_t> yx = taggedPayload(seq, 2, 500);
    ASSERT_OK(x.sendPacket(y.publicKey(), xy));
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p1, y.recvPacket(kWait));
    EXPECT_TRUE(p1.src == x.publicKey() && p1.payload == xy);
    ASSERT_OK(y.sendPacket(x.publicKey(), yx));
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p2, x.recvPacket(kWait));
    EXPECT_TRUE(p2.src == y.publicKey() && p2.payload == yx);
  }

  void expectFreshPairRelays() {
    ASSERT_OK_AND_ASSIGN(auto x, connectClient(derpd_->port()));
    ASSERT_OK_AND_ASSIGN(auto y, connectClient(derpd_->port()));
    expectPairRelays(*x, *y, ++round_);
  }

  // Scrapes until the metric's sum falls below `below`; returns the last value.
  absl::StatusOr<double> waitForMetricBelow(std::string_view name, double below, Nanos timeout) {
    RealClock clock;
    const Nanos deadline = clock.now() + timeout;
    for (;;) {
      absl::StatusOr<double> v = scrapeMetric(metricsPort_, name, {});
      if (!v.ok() || *v < below || clock.now() >= deadline) return v;
      ::usleep(20000);
    }
  }

  double metric(std::string_view name, const Labels& filter = {}) {
    absl::StatusOr<double> v = scrapeMetric(metricsPort_, name, filter);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  // A client that landed on `shard` (the kernel spreads connections over the
  // shards' listeners; the others are closed again).
  std::unique_ptr<DerpClient> connectOn(int shard) {
    const Labels on = {{"shard", absl::StrCat(shard)}};
    for (int i = 0; i < 64; i++) {
      const double before = metric("derpd_current_connections", on);
      absl::StatusOr<std::unique_ptr<DerpClient>> c = connectClient(derpd_->port());
      EXPECT_OK(c.status());
      if (!c.ok()) return nullptr;
      if (metric("derpd_current_connections", on) > before) return std::move(*c);
    }
    ADD_FAILURE() << "no connection landed on shard " << shard;
    return nullptr;
  }

  // /metrics while a shard is stopped: it is served by whichever shard's
  // listener the kernel picks, and a scrape that lands on the stopped one
  // waits, so each try is short.
  double scrapeAround(std::string_view name, const Labels& filter = {}) {
    for (int i = 0; i < 100; i++) {
      absl::StatusOr<HttpResponse> r = httpGet(metricsPort_, "/metrics", "", 200 * kMillisecond);
      if (!r.ok() || r->status != 200) continue;
      absl::StatusOr<std::vector<MetricSample>> m = parsePrometheusText(r->body);
      if (m.ok()) return sumMetric(*m, name, filter);
    }
    ADD_FAILURE() << "no scrape was answered";
    return -1;
  }

  // Scrapes (around a stopped shard) until mailbox_full drops reach `want`.
  double waitForMailboxFull(double want) {
    RealClock clock;
    double v = 0;
    for (Nanos deadline = clock.now() + kWait; clock.now() < deadline; ::usleep(20000)) {
      v = scrapeAround("derpd_packets_dropped_total", kMailboxFull);
      if (v >= want) break;
    }
    return v;
  }

  // Holds thread tid stopped (in `stopped`; the test is skipped where ptrace
  // is not allowed), then sends `count` 100-byte packets (tagged `tag`) from
  // sender to receiver.
  void stopAndSend(pid_t tid, DerpClient& sender, DerpClient& receiver, uint32_t count,
                   uint32_t tag, std::unique_ptr<StoppedThread>& stopped) {
    absl::StatusOr<std::unique_ptr<StoppedThread>> t = StoppedThread::stop(tid);
    if (absl::IsUnavailable(t.status())) {
      GTEST_SKIP() << "cannot ptrace derpd here (" << t.status() << ")";
    }
    ASSERT_OK(t.status());
    stopped = std::move(*t);
    for (uint32_t i = 0; i < count; i++) {
      ASSERT_OK(sender.sendPacket(receiver.publicKey(), taggedPayload(i, tag, 100)));
    }
  }

  inline static const Labels kMailboxFull = {{"reason", "mailbox_full"}};

  std::unique_ptr<DerpdProcess> derpd_;
  uint16_t metricsPort_ = 0;
  std::unique_ptr<DerpClient> a_, b_;
  std::vector<std::unique_ptr<DerpClient>> receivers_;
  uint32_t round_ = 0;
  size_t baselineRss_ = 0;
};

// More connections than the open-file limit allows, none of them sending a
// byte, held past the header timeout (the shape of a report where accept
// failed with EMFILE while waves of these closed). derpd keeps a reserve of
// fds, so accept never fails: what is over its budget is accepted and closed
// at once, counted; the rest close on the header timeout; honest clients
// keep their service throughout and a fresh pair connects afterwards.
TEST_F(HostileTest, FdFloodIsRefusedAtTheBudgetAndNeverRunsOutOfFds) {
  constexpr int kFdLimit = 512;
  constexpr int kFlood = 2000;
  ASSERT_OK(ensureFileLimit(kFlood + 512));
  DerpdOptions opts;
  opts.openFileLimit = kFdLimit;
  start(opts);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(derpd_->findLog("open-file limit: up to ").has_value()) << derpd_->logText();

  std::vector<UniqueFd> flood;
  for (int i = 0; i < kFlood; i++) {
    ASSERT_OK_AND_ASSIGN(UniqueFd fd, silentConnection(derpd_->port()));
    flood.push_back(std::move(fd));
  }
  ASSERT_OK_AND_ASSIGN(double refused, waitForMetric(metricsPort_, "derpd_accepts_refused_total",
                                                     {}, 1, kWait));
  EXPECT_GE(refused, 1);
  expectHonestServiceHolds();
  // Past the 10 s header timeout: the accepted part of the flood is closed
  // for it, and accept has gone on taking (and refusing) the rest meanwhile.
  ASSERT_OK_AND_ASSIGN(double timedOut,
                       waitForMetric(metricsPort_, "derpd_connections_closed_total",
                                     {{"reason", "header_timeout"}}, 1, 15 * kSecond));
  EXPECT_GE(timedOut, 1);
  expectHonestServiceHolds();
  flood.clear();
  expectFreshPairRelays();
  expectHonestServiceHolds();
  // Every flood connection was either refused or closed for saying nothing
  // (or is still open, within the budget); none was lost to an accept error.
  EXPECT_FALSE(derpd_->findLog("Too many open files").has_value()) << derpd_->logText();
  EXPECT_FALSE(derpd_->findLog("runtime error").has_value()) << derpd_->logText();
  EXPECT_TRUE(derpd_->running());
  flood.clear();
  expectRssWithin(kRssBound);
}

// A slowloris: 2,000 connections that start a request and add a header line
// every second, never finishing it. The header deadline runs from accept and
// is not pushed back by bytes, so all of them are closed for it (counted) at
// 10 s while honest clients keep their service.
TEST_F(HostileTest, SlowlorisIsClosedAtTheHeaderDeadline) {
  constexpr int kSlow = 2000;
  ASSERT_OK(ensureFileLimit(kSlow + 512));
  start({});
  if (HasFatalFailure()) return;
  std::vector<UniqueFd> slow;
  for (int i = 0; i < kSlow; i++) {
    ASSERT_OK_AND_ASSIGN(UniqueFd fd, silentConnection(derpd_->port()));
    slow.push_back(std::move(fd));
  }
  RealClock clock;
  const Nanos begin = clock.now();
  auto dribble = [&](std::string_view line) {
    size_t open = 0;
    for (const UniqueFd& fd : slow) {
      if (::send(fd.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) open++;
    }
    return open;
  };
  dribble("GET / HTTP/1.1\r\n");
  bool checked = false;
  for (int s = 1; s <= 13; s++) {
    ::usleep(1000 * 1000);
    dribble("X-Slow: 1\r\n");
    if (!checked && clock.now() - begin >= 4 * kSecond) {
      expectHonestServiceHolds();  // in the middle of it
      checked = true;
    }
  }
  ASSERT_OK_AND_ASSIGN(double timedOut,
                       waitForMetric(metricsPort_, "derpd_connections_closed_total",
                                     {{"reason", "header_timeout"}}, kSlow, kWait));
  EXPECT_GE(timedOut, kSlow);
  // The server closed every one of them: a read sees the end (or a reset).
  size_t stillOpen = 0;
  for (const UniqueFd& fd : slow) {
    char buf[512];
    ssize_t n;
    while ((n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
    }
    if (n < 0 && errno == EAGAIN) stillOpen++;
  }
  EXPECT_EQ(stillOpen, 0u);
  expectHonestServiceHolds();
  expectFreshPairRelays();
  slow.clear();
  expectRssWithin(kRssBound);
}

// Connections that upgrade, announce a 60,000-byte ClientInfo, send a little
// of it and wait: each would have a 64 KiB pool buffer reserved until the
// handshake timeout. Their sum is bounded per shard (16 MiB); the rest are
// closed (preauth_memory), the pool stays near the bound, and honest clients,
// whose ClientInfo is small, keep connecting and relaying meanwhile.
TEST_F(HostileTest, PreAuthMemoryIsBoundedAndHonestHandshakesGoOn) {
  constexpr int kAttackers = 400;  // 400 x 60,000 B = 24 MB asked for
  constexpr uint32_t kAnnounced = 60000;
  ASSERT_OK(ensureFileLimit(kAttackers + 512));
  DerpdOptions opts;
  opts.shards = 1;  // one shard, one budget
  start(opts);
  if (HasFatalFailure()) return;
  std::vector<uint8_t> partial = frameHeaderBytes(
      static_cast<uint8_t>(derp::FrameType::kClientInfo), kAnnounced);
  partial.resize(partial.size() + 100, 0x5a);
  std::vector<TcpConn> attackers;
  int closedAtOnce = 0;  // refused in the turn their header arrived, before any reply
  for (int i = 0; i < kAttackers; i++) {
    ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(derpd_->port()));
    if (rawUpgrade(c, derpd_->port(), kWait, partial).ok()) {
      attackers.push_back(std::move(c));
    } else {
      closedAtOnce++;
    }
  }
  // Each admitted one holds a 64 KiB-class buffer: 255 fit in 16 MiB.
  const double admitted = (16 << 20) / (65536 + 128);
  ASSERT_OK_AND_ASSIGN(double refused,
                       waitForMetric(metricsPort_, "derpd_connections_closed_total",
                                     {{"reason", "preauth_memory"}}, kAttackers - admitted, kWait));
  EXPECT_GE(refused, kAttackers - admitted);
  EXPECT_GE(closedAtOnce, kAttackers - admitted - 1);
  EXPECT_LE(metric("derpd_preauth_bytes"), 16 << 20);
  // The pool holds the admitted bodies and little more (before the bound, it
  // took 24 MiB of 64 KiB buffers).
  EXPECT_LE(metric("derpd_pool_bytes"), 20 << 20);
  expectFreshPairRelays();
  expectHonestServiceHolds();
  attackers.clear();
  // Their budget comes back as they go.
  ASSERT_OK_AND_ASSIGN(double left,
                       waitForMetricBelow("derpd_preauth_bytes", 1, kWait));
  EXPECT_EQ(left, 0);
  // And the pool gives the 64 KiB buffers they held back to the system
  // (it keeps 2 MiB of free slabs per size class).
  ASSERT_OK_AND_ASSIGN(double pool, waitForMetricBelow("derpd_pool_bytes", 8 << 20, kWait));
  EXPECT_LT(pool, 8 << 20);
  expectFreshPairRelays();
  expectRssWithin(kRssBound);
}

// Mesh watchers that fall behind together. Each watcher's backlog is one
// 16 KiB buffer (--mesh-watcher-queue-kb 16): 292 PeerPresent frames of 56 B.
// 1. A watcher whose WatchConns replay (293 keys) overflows it is closed in
//    the middle of walking the directory, which its departure changes.
// 2. Two watchers whose sockets are full and whose backlogs hold exactly 292
//    frames (32 B left) both overflow on the next client: closing the first
//    tells the second that the first is gone, which overflows it too, all
//    while the first notification still walks the list of watchers.
// A close must never change what its caller is iterating: both are closed,
// counted, and everyone else is served.
TEST_F(HostileTest, MeshWatchersThatFallBehindTogetherAreClosedSafely) {
  constexpr int kFit = 16384 / (derp::kFrameHeaderLen + derp::kPeerPresentLen);  // 292
  ASSERT_EQ(kFit, 292);
  ASSERT_OK(ensureFileLimit(kFit + 512));
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  std::string meshKey;
  std::random_device rd;
  for (int i = 0; i < 64; i++) meshKey.push_back("0123456789abcdef"[rd() % 16]);
  {
    std::ofstream psk(dir + "/mesh.psk");
    psk << meshKey << "\n";
  }
  DerpdOptions opts;
  opts.shards = 1;  // every watcher on the shard that notifies them
  opts.extraArgs = {"-mesh-psk-file", dir + "/mesh.psk", "--mesh-watcher-queue-kb", "16"};
  start(opts);
  removeTree(dir);
  if (HasFatalFailure()) return;
  auto watcher = [&]() {
    client::ClientOptions o = clientOptions(derpd_->port());
    o.meshKey = meshKey;
    o.receiveBufferBytes = 4096;
    return DerpClient::connect(o);
  };
  const std::vector<uint8_t> watchConns =
      frameHeaderBytes(static_cast<uint8_t>(derp::FrameType::kWatchConns), 0);
  auto clientsAre = [&](int n) -> absl::Status {
    absl::StatusOr<double> v = waitForMetricBelow("derpd_clients", n + 1, kWait);
    if (!v.ok()) return v.status();
    if (*v != n) return absl::InternalError(absl::StrCat("derpd_clients ", *v, ", want ", n));
    return absl::OkStatus();
  };
  const Labels overflow = {{"reason", "watcher_overflow"}};

  // 1. 293 keys with the watcher's own: its replay overflows.
  ASSERT_OK_AND_ASSIGN(auto w0, watcher());
  std::vector<std::unique_ptr<DerpClient>> fillers;
  while (static_cast<int>(fillers.size() + receivers_.size()) + 3 < kFit + 1) {
    ASSERT_OK_AND_ASSIGN(auto f, connectClient(derpd_->port()));
    fillers.push_back(std::move(f));
  }
  ASSERT_OK(clientsAre(kFit + 1));
  ASSERT_OK(w0->sendRaw(watchConns));
  ASSERT_OK_AND_ASSIGN(double closed,
                       waitForMetric(metricsPort_, "derpd_connections_closed_total", overflow, 1,
                                     kWait));
  EXPECT_EQ(closed, 1);
  ASSERT_OK(clientsAre(kFit));
  expectHonestServiceHolds();

  // 2. Two watchers with full sockets: packets to them until their queues
  // drop (the kernel holds what it can, the rest waits in derpd).
  ASSERT_OK_AND_ASSIGN(auto w1, watcher());
  ASSERT_OK_AND_ASSIGN(auto w2, watcher());
  for (DerpClient* w : {w1.get(), w2.get()}) {
    const double before = metric("derpd_packets_dropped_total", {{"reason", "queue_head"}});
    for (int round = 0; round < 200; round++) {
      for (int i = 0; i < 64; i++) {
        ASSERT_OK(a_->sendPacket(w->publicKey(), taggedPayload(round, i, 1200)));
      }
      if (metric("derpd_packets_dropped_total", {{"reason", "queue_head"}}) > before) break;
    }
    ASSERT_GT(metric("derpd_packets_dropped_total", {{"reason", "queue_head"}}), before);
  }
  fillers.resize(fillers.size() - 2);  // 292 keys with both watchers
  ASSERT_OK(clientsAre(kFit));
  ASSERT_OK(w1->sendRaw(watchConns));
  ASSERT_OK(w2->sendRaw(watchConns));
  ASSERT_OK_AND_ASSIGN(double watching,
                       waitForMetric(metricsPort_, "derpd_mesh_watchers", {}, 2, kWait));
  ASSERT_EQ(watching, 2);
  EXPECT_EQ(metric("derpd_connections_closed_total", overflow), 1);  // 292 fit
  // One more client: both backlogs overflow in the same notification.
  ASSERT_OK_AND_ASSIGN(auto last, connectClient(derpd_->port()));
  ASSERT_OK_AND_ASSIGN(closed, waitForMetric(metricsPort_, "derpd_connections_closed_total",
                                             overflow, 3, kWait));
  EXPECT_EQ(closed, 3);
  ASSERT_OK_AND_ASSIGN(double left, waitForMetricBelow("derpd_mesh_watchers", 1, kWait));
  EXPECT_EQ(left, 0);
  EXPECT_TRUE(derpd_->running());
  expectHonestServiceHolds();
  expectPairRelays(*last, *fillers.front(), ++round_);
  expectFreshPairRelays();
  fillers.clear();
  expectRssWithin(kRssBound);
}

// A shard that stops reading its mail (its thread held stopped through
// ptrace: descheduled, or stuck) while a client on another shard keeps
// sending to a client on it. The sending shard fills the ring between them
// (2,048 messages), holds 8,192 more back and drops the rest, counted
// (mailbox_full); while it holds mail back it sleeps until the stopped shard
// reads again, instead of retrying every turn at full CPU. Once the shard
// runs again, everything held reaches the receiver's queue: what the
// receiver reads is in order, and what its queue dropped is counted.
TEST_F(HostileTest, MailToAStoppedShardIsBoundedAndTheSenderSleeps) {
  constexpr uint32_t kPackets = 12000;
  constexpr uint32_t kRingAndHeld = 2048 + 8192;
  start({});
  if (HasFatalFailure()) return;
  // A sender on shard 0 and a receiver on shard 1.
  std::unique_ptr<DerpClient> sender = connectOn(0);
  std::unique_ptr<DerpClient> receiver = connectOn(1);
  ASSERT_TRUE(sender != nullptr && receiver != nullptr);
  const pid_t shard0 = threadNamed(derpd_->pid(), "derpd-shard0");
  const pid_t shard1 = threadNamed(derpd_->pid(), "derpd-shard1");
  ASSERT_GT(shard0, 0);
  ASSERT_GT(shard1, 0);
  const double droppedBefore = metric("derpd_packets_dropped_total", kMailboxFull);

  std::unique_ptr<StoppedThread> stopped;
  stopAndSend(shard1, *sender, *receiver, kPackets, 9, stopped);
  if (IsSkipped() || HasFatalFailure()) return;
  EXPECT_EQ(waitForMailboxFull(droppedBefore + kPackets - kRingAndHeld) - droppedBefore,
            kPackets - kRingAndHeld);
  EXPECT_EQ(scrapeAround("derpd_mailbox_backlog", {{"shard", "0"}}), 8192);
  // Shard 0 holds mail back and has nothing else to do: it must sleep.
  const long cpuBefore = threadCpuTicks(derpd_->pid(), shard0);
  ::usleep(2000 * 1000);
  const long cpuUsed = threadCpuTicks(derpd_->pid(), shard0) - cpuBefore;
  const long ticksPerSecond = ::sysconf(_SC_CLK_TCK);
  EXPECT_LT(cpuUsed, ticksPerSecond / 2)
      << "shard 0 used " << cpuUsed << " ticks of CPU in 2 s while its mail was held back";

  // Resumed, shard 1 gets what was held, faster than the receiver reads: its
  // queue (32 packets, as derper's) drops the oldest (queue_head). What it
  // gets is in order, up to the last packet held, and the rest is counted.
  const double queueDropsBefore =
      scrapeAround("derpd_packets_dropped_total", {{"reason", "queue_head"}});
  stopped->resume();
  uint32_t received = 0;
  int64_t last = -1;
  while (last < kRingAndHeld - 1) {
    ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, receiver->recvPacket(kWait));
    const uint32_t seq = payloadSeq(p.payload);
    ASSERT_EQ(p.payload, taggedPayload(seq, 9, 100));
    ASSERT_GT(static_cast<int64_t>(seq), last);
    last = seq;
    received++;
  }
  EXPECT_EQ(metric("derpd_mailbox_backlog"), 0);
  EXPECT_EQ(metric("derpd_packets_dropped_total", {{"reason", "queue_head"}}) - queueDropsBefore,
            kRingAndHeld - received);
  expectHonestServiceHolds();
  expectFreshPairRelays();
}

// Mail held for a shard that has left its loop: in a drain (SIGTERM), the
// stopped shard's last client leaves, so that shard exits as soon as it runs
// again, while the other still holds thousands of packets for it and keeps
// serving its own client. The held packets are discarded and counted
// (gone_disconnected), as are those still in the ring to it and in the
// closed receiver's queue: every packet sent is written or dropped by reason,
// as the stats lines (the last one written at exit) add up.
TEST_F(HostileTest, MailHeldForAShardThatExitedIsDroppedAndCounted) {
  constexpr uint32_t kPackets = 12000;
  DerpdOptions opts;
  opts.extraArgs = {"--stats-interval", "1s", "--drain-timeout", "30s"};
  start(opts);
  if (HasFatalFailure()) return;
  std::unique_ptr<DerpClient> sender = connectOn(0);
  std::unique_ptr<DerpClient> receiver = connectOn(1);
  ASSERT_TRUE(sender != nullptr && receiver != nullptr);
  // Only those two stay.
  a_.reset();
  b_.reset();
  receivers_.clear();
  ASSERT_OK_AND_ASSIGN(double left, waitForMetricBelow("derpd_current_connections", 3, kWait));
  ASSERT_EQ(left, 2);
  const pid_t shard1 = threadNamed(derpd_->pid(), "derpd-shard1");
  ASSERT_GT(shard1, 0);
  const double droppedBefore = metric("derpd_packets_dropped_total", kMailboxFull);
  // What the stats lines will have counted before these packets.
  const double accountedBefore =
      metric("derpd_packets_sent_total") + metric("derpd_packets_dropped_total");

  std::unique_ptr<StoppedThread> stopped;
  stopAndSend(shard1, *sender, *receiver, kPackets, 3, stopped);
  if (IsSkipped() || HasFatalFailure()) return;
  ASSERT_GT(waitForMailboxFull(droppedBefore + 1), droppedBefore);
  receiver->close();
  ASSERT_OK(derpd_->sendSignal(SIGTERM));
  ::usleep(200 * 1000);  // the drain has begun on shard 0
  stopped->resume();
  RealClock clock;
  for (Nanos deadline = clock.now() + kWait;
       threadNamed(derpd_->pid(), "derpd-shard1") > 0 && clock.now() < deadline;) {
    ::usleep(20000);
  }
  ASSERT_EQ(threadNamed(derpd_->pid(), "derpd-shard1"), -1) << "shard 1 did not exit";
  ::usleep(1500 * 1000);  // shard 0 serves its client on; a stats line passes
  sender->close();
  ASSERT_OK_AND_ASSIGN(int code, derpd_->waitExit(kWait));
  EXPECT_EQ(code, 0);

  uint64_t sent = 0, dropped = 0, gone = 0;
  const std::string log = derpd_->logText();
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    size_t at = line.find("stats interval=");
    if (at == absl::string_view::npos) continue;
    for (absl::string_view field : absl::StrSplit(line.substr(at), ' ')) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, '=');
      uint64_t v = 0;
      if (!absl::SimpleAtoi(kv.second, &v)) continue;
      if (kv.first == "packets_sent") sent += v;
      if (kv.first == "packets_dropped") dropped += v;
      if (kv.first == "dropped_gone_disconnected") gone += v;
    }
  }
  std::printf("stats: %llu packets sent, %llu dropped (%llu gone with their shard or client)\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(dropped),
              static_cast<unsigned long long>(gone));
  EXPECT_EQ(static_cast<double>(sent + dropped), accountedBefore + kPackets)
      << "packets lost without a count";
}

// A receiver that never reads, sent to without pause: its queue drops its
// oldest packets (queue_head), derpd holds no more than the queue for it, and
// once its writes have stalled for -tcp-write-timeout it is closed
// (write_timeout). Everyone else is served throughout.
TEST_F(HostileTest, NonReadingReceiverCostsAQueueAndIsClosed) {
  start({});
  if (HasFatalFailure()) return;
  client::ClientOptions o = clientOptions(derpd_->port());
  o.receiveBufferBytes = 4096;
  ASSERT_OK_AND_ASSIGN(auto victim, DerpClient::connect(o));
  const double timedOutBefore = metric("derpd_connections_closed_total", {{"reason", "write_timeout"}});
  for (int i = 0; i < 3000; i++) {
    ASSERT_OK(a_->sendPacket(victim->publicKey(), taggedPayload(i, 7, 1200)));
    if (i == 1500) expectHonestServiceHolds();
  }
  ASSERT_OK_AND_ASSIGN(double dropped, waitForMetric(metricsPort_, "derpd_packets_dropped_total",
                                                     {{"reason", "queue_head"}}, 1, kWait));
  EXPECT_GE(dropped, 1);
  expectHonestServiceHolds();
  ASSERT_OK_AND_ASSIGN(double timedOut,
                       waitForMetric(metricsPort_, "derpd_connections_closed_total",
                                     {{"reason", "write_timeout"}}, timedOutBefore + 1, kWait));
  EXPECT_EQ(timedOut, timedOutBefore + 1);
  expectHonestServiceHolds();
  expectFreshPairRelays();
  expectRssWithin(kRssBound);
}

// Many connections that each send small frames at once: every receive that
// completes before the shard gets to it holds receive-buffer memory. With a
// whole 16 KiB buffer per receive, 1,500 ready sockets ran the shard's 512
// buffers dry: receives failed with ENOBUFS (28,000 in 20 rounds) and were
// re-armed, round after round. Now the kernel consumes a buffer incrementally
// (a 100-byte frame takes 100 bytes of it) or, where it cannot, the shard has
// four times as many smaller buffers: no receive finds the ring empty, and
// every frame is read. Run on a plain ring, whose task work completes every
// ready receive at once (newer kernels' deferred task work caps each batch,
// which hides the problem).
class ReceiveFloodTest : public HostileTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ReceiveFloodTest, ManyConnectionsDoNotRunTheBuffersDry) {
  constexpr int kClients = 1500;
  constexpr int kRounds = 20;
  ASSERT_OK(ensureFileLimit(kClients + 512));
  DerpdOptions opts;
  opts.shards = 1;  // one ring, one set of buffers
  opts.env = {{"DERPD_IO_URING", GetParam()}};
  start(opts);
  if (HasFatalFailure()) return;
  const bool wantWhole = std::string_view(GetParam()).find("whole") != std::string_view::npos;
  if (!wantWhole && !derpd_->findLog("receive buffers: incremental").has_value()) {
    GTEST_SKIP() << "this kernel cannot consume provided buffers incrementally (Linux 6.12+)";
  }
  ASSERT_TRUE(derpd_->findLog(wantWhole ? "receive buffers: whole" : "receive buffers: incremental")
                  .has_value())
      << derpd_->logText();
  std::vector<std::unique_ptr<DerpClient>> flood;
  for (int i = 0; i < kClients; i++) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd_->port()));
    flood.push_back(std::move(c));
  }
  const derp::NodeKey nowhere = derp::PrivateKey::generate().publicKey();
  const Labels unknown = {{"reason", "unknown_dest"}};
  const double before = metric("derpd_packets_dropped_total", unknown);
  // Each round arrives while derpd is stopped (SIGSTOP: a shard descheduled
  // or busy), so that every socket is ready when it runs again.
  for (int round = 0; round < kRounds; round++) {
    ASSERT_OK(derpd_->sendSignal(SIGSTOP));
    for (auto& c : flood) {
      absl::Status sent = c->sendPacket(nowhere, taggedPayload(round, 0, 100));
      if (!sent.ok()) {
        ASSERT_OK(derpd_->sendSignal(SIGCONT));
        FAIL() << sent;
      }
    }
    ASSERT_OK(derpd_->sendSignal(SIGCONT));
    ::usleep(50 * 1000);
  }
  const double want = before + kClients * kRounds;
  ASSERT_OK_AND_ASSIGN(double read, waitForMetric(metricsPort_, "derpd_packets_dropped_total",
                                                  unknown, want, 2 * kWait));
  EXPECT_EQ(read, want) << "frames lost";
  EXPECT_EQ(metric("derpd_recv_no_buffers_total"), 0);
  expectHonestServiceHolds();
  flood.clear();
  ASSERT_OK(waitForMetricBelow("derpd_current_connections", kHonestReceivers + 3, kWait).status());
  expectRssWithin(kRssBound);
}

INSTANTIATE_TEST_SUITE_P(RingModes, ReceiveFloodTest,
                         ::testing::Values("plain", "plain,whole"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "plain" ? "Incremental" : "Whole";
                         });

}  // namespace
}  // namespace derpd::testing
