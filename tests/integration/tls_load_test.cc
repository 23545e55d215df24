// derpd with TLS under hostile and heavy load: bad TLS input (garbage and
// oversized records instead of a ClientHello, a stalled handshake, corrupted
// and oversized records after the handshake), each while other clients keep
// relaying, 1,000 TLS clients followed by a handshake storm, a TLS error while
// a send is in flight, and a packet pool at its cap with TLS receivers that do
// not read. The fixtures
// and the PKI are in tls_fixture.h.
// Exits 77 (skipped) when curl or openssl is not on PATH, or when
// RLIMIT_NOFILE cannot be raised to the 2,500 descriptors the load needs.
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"
#include "integration/thread_control.h"
#include "integration/tls_fixture.h"
#include "integration/tls_test_conn.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

// ---- Bad TLS input ----
TEST_F(TlsBadInputTest, GarbageAndOversizedRecordInsteadOfClientHello) {
  ASSERT_OK_AND_ASSIGN(double before, closed("tls_handshake_failed"));
  const std::string inputs[] = {
      "GET / HTTP/1.1\r\nHost: derp.test\r\n\r\n",             // plain HTTP on the TLS port
      std::string("\x16\x03\x01\x48\x00\x01\x00\x47\xfc", 9),  // record length 0x4800 > 16 KiB
      std::string(64, '\x00'),
  };
  for (const std::string& in : inputs) {
    ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port_));
    ASSERT_OK(conn.writeAll(in));
    EXPECT_OK(conn.expectClosed(kWait));
  }
  ASSERT_OK_AND_ASSIGN(double after, waitForMetricTls(
                                         port_, "derpd_connections_closed_total",
                                         {{"reason", "tls_handshake_failed"}},
                                         [&](double v) { return v >= before + 3; }, kWait));
  EXPECT_EQ(after, before + 3);
  expectRelayBothWays(*a_, *b_, 60);
}

TEST_F(TlsBadInputTest, StalledClientHelloTimesOutWhileOthersRelay) {
  ASSERT_OK_AND_ASSIGN(double before, closed("header_timeout"));
  ASSERT_OK_AND_ASSIGN(TcpConn stalled, TcpConn::connect(port_));
  // A handshake record announcing 512 bytes, of which only the first 40 come.
  std::string partial("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  partial.append(29, '\x5a');
  ASSERT_OK(stalled.writeAll(partial));
  // Relay meanwhile; the stalled connection must be closed within 20 s (the
  // header timeout is 10 s).
  bool closedYet = false;
  for (uint32_t round = 0; round < 40 && !closedYet; ++round) {
    expectRelayBothWays(*a_, *b_, 100 + 2 * round);
    if (HasFailure()) return;
    closedYet = stalled.expectClosed(500 * kMillisecond).ok();
  }
  EXPECT_TRUE(closedYet) << "stalled TLS handshake still open";
  ASSERT_OK_AND_ASSIGN(double after,
                       waitForMetricTls(
                           port_, "derpd_connections_closed_total", {{"reason", "header_timeout"}},
                           [&](double v) { return v > before; }, kWait));
  EXPECT_EQ(after, before + 1);
  expectRelayBothWays(*a_, *b_, 200);
}

TEST_F(TlsBadInputTest, CorruptedAndOversizedRecordsAfterHandshake) {
  ASSERT_OK_AND_ASSIGN(double before, closed("tls_error"));
  // A real record with one ciphertext byte flipped.
  ASSERT_OK_AND_ASSIGN(auto corrupt, TlsTestConn::connect(port_, {.serverName = "derp.test"}));
  ASSERT_OK(corrupt->writeCorruptedRecord("GET /derp/probe HTTP/1.1\r\nHost: derp.test\r\n\r\n"));
  EXPECT_OK(corrupt->expectClosed(kWait));
  // A record header claiming more than a TLS record may hold.
  ASSERT_OK_AND_ASSIGN(auto oversized, TlsTestConn::connect(port_, {.serverName = "derp.test"}));
  std::string record("\x17\x03\x03\x48\x01", 5);
  record.append(200, '\x33');
  ASSERT_OK(oversized->writeRaw(record));
  EXPECT_OK(oversized->expectClosed(kWait));
  // Same over TLS 1.2.
  ASSERT_OK_AND_ASSIGN(auto corrupt12, TlsTestConn::connect(port_, {.serverName = "derp.test",
                                                                    .maxVersion = TLS1_2_VERSION}));
  EXPECT_EQ(corrupt12->version(), "TLSv1.2");
  ASSERT_OK(corrupt12->writeCorruptedRecord("GET / HTTP/1.1\r\n"));
  EXPECT_OK(corrupt12->expectClosed(kWait));

  ASSERT_OK_AND_ASSIGN(double after,
                       waitForMetricTls(
                           port_, "derpd_connections_closed_total", {{"reason", "tls_error"}},
                           [&](double v) { return v >= before + 3; }, kWait));
  EXPECT_EQ(after, before + 3);
  expectRelayBothWays(*a_, *b_, 70);
  ASSERT_OK_AND_ASSIGN(auto fresh, connectTls());
  expectRelayBothWays(*fresh, *a_, 72);
}
// ---- Scale ----

TEST_F(TlsTest, ThousandClientsThenHandshakeStorm) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  constexpr int kClients = kThreads * kPerThread;
  client::ClientOptions opts = tlsOptions();
  opts.timeout = 20 * kSecond;

  std::vector<std::vector<std::unique_ptr<DerpClient>>> perThread(kThreads);
  std::vector<std::string> errors(kThreads);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          absl::StatusOr<std::unique_ptr<DerpClient>> c = connectFresh(opts);
          if (!c.ok()) {
            errors[t] = absl::StrCat("client ", i, ": ", c.status().ToString());
            return;
          }
          perThread[t].push_back(*std::move(c));
        }
      });
    }
    for (std::thread& th : threads) th.join();
  }
  for (const std::string& e : errors) ASSERT_TRUE(e.empty()) << e;
  std::vector<std::unique_ptr<DerpClient>> clients;
  for (auto& v : perThread) {
    for (auto& c : v) clients.push_back(std::move(c));
  }
  ASSERT_EQ(clients.size(), static_cast<size_t>(kClients));

  expectRegisteredOnBothShards(port_, kClients);
  if (HasFatalFailure()) return;

  // A sample relays: pairs spread over the whole set.
  for (int i = 0; i < 20; ++i) {
    expectRelayBothWays(*clients[i * 37 % kClients], *clients[(i * 37 + 500) % kClients],
                        1000 + 2 * i);
    if (HasFailure()) return;
  }

  // Handshake storm: connect and close as fast as possible.
  constexpr int kStormThreads = 8;
  constexpr int kStormEach = 100;
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetricsTls(port_));
  const double h13Before = sumMetric(m, "derpd_tls_handshakes_total", {{"version", "1.3"}});
  std::atomic<int> ok{0};
  std::vector<std::string> stormErrors(kStormThreads);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kStormThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kStormEach; ++i) {
          absl::StatusOr<std::unique_ptr<DerpClient>> c = connectFresh(opts);
          if (!c.ok()) {
            if (stormErrors[t].empty()) stormErrors[t] = c.status().ToString();
            continue;
          }
          (*c)->close();
          ok.fetch_add(1);
        }
      });
    }
    for (std::thread& th : threads) th.join();
  }
  for (const std::string& e : stormErrors) EXPECT_TRUE(e.empty()) << e;
  EXPECT_EQ(ok.load(), kStormThreads * kStormEach);
  // Every storm client, plus this scrape's own handshake.
  ASSERT_OK_AND_ASSIGN(double h13After,
                       metricTls(port_, "derpd_tls_handshakes_total", {{"version", "1.3"}}));
  EXPECT_EQ(h13After - h13Before, kStormThreads * kStormEach + 1);
  ASSERT_OK_AND_ASSIGN(double settled, waitForMetricTls(
                                           port_, "derpd_current_connections", {},
                                           [](double v) { return v == kClients; }, kWait));
  EXPECT_EQ(settled, kClients);
  expectRelayBothWays(*clients.front(), *clients.back(), 2000);
}

// ---- A TLS error while a send is in flight ----

// A TLS receiver whose socket is full (an io_uring sendmsg waits for room)
// sends a damaged record, then reads while derpd's shard is held stopped
// (ptrace): when the shard runs again, the kernel has both the record to
// open and room for the waiting sendmsg, which completes before derpd sees
// its completion. The failed record must not make derpd write the chain
// itself (its alert behind what the sendmsg already took): those bytes would
// go out twice, and the client would find a record it cannot decrypt
// instead of the end of the stream. Every packet the client gets is intact
// and in order, and the stream ends cleanly; the close is counted tls_error.
TEST_F(TlsTest, TlsErrorWhileASendIsInFlightSendsNoByteTwice) {
  constexpr size_t kPayload = 1200;
  install(gFix->derp1, "derp.test");
  DerpdOptions opts = options("derp.test", {"-tcp-write-timeout", "0"});
  opts.shards = 1;
  ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
  port_ = derpd_->port();
  ASSERT_OK_AND_ASSIGN(auto sender, connectTls());
  client::ClientOptions o = tlsOptions();
  o.receiveBufferBytes = 4096;
  ASSERT_OK_AND_ASSIGN(auto victim, connectFresh(o));
  const Labels queueHead = {{"reason", "queue_head"}};
  const double dropsBefore =
      metricTls(port_, "derpd_packets_dropped_total", queueHead).value_or(-1);

  // Fill the victim's socket: once its queue drops, the socket is full and a
  // sendmsg waits for room.
  uint32_t seq = 0;
  bool full = false;
  while (seq < 20000 && !full) {
    for (int i = 0; i < 200; i++, seq++) {
      ASSERT_OK(sender->sendPacket(victim->publicKey(), taggedPayload(seq, 5, kPayload)));
    }
    ASSERT_OK_AND_ASSIGN(double drops, metricTls(port_, "derpd_packets_dropped_total", queueHead));
    full = drops > dropsBefore;
  }
  ASSERT_TRUE(full) << "the victim's socket never filled";

  const pid_t shard = threadNamed(derpd_->pid(), "derpd-shard0");
  ASSERT_GT(shard, 0);
  absl::StatusOr<std::unique_ptr<StoppedThread>> stopped = StoppedThread::stop(shard);
  if (absl::IsUnavailable(stopped.status())) {
    GTEST_SKIP() << "cannot ptrace derpd here (" << stopped.status() << ")";
  }
  ASSERT_OK(stopped.status());
  // A record derpd cannot open: application data, 32 bytes of nonsense.
  std::string bad("\x17\x03\x03\x00\x20", 5);
  bad.append(32, '\x5a');
  ASSERT_EQ(::send(victim->fd(), bad.data(), bad.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bad.size()));
  // Read what derpd's socket holds (the kernel sends it without the shard)
  // until it stops coming: its send buffer has room again.
  int64_t last = -1;
  uint64_t received = 0;
  auto readPackets = [&](Nanos quiet) -> absl::Status {
    for (;;) {
      absl::StatusOr<DerpClient::Packet> p = victim->recvPacket(quiet);
      if (!p.ok()) return p.status();
      const uint32_t got = payloadSeq(p->payload);
      if (p->payload != taggedPayload(got, 5, kPayload) || static_cast<int64_t>(got) <= last) {
        return absl::DataLossError(absl::StrCat("packet ", got, " after ", last, " is not intact"));
      }
      last = got;
      received++;
    }
  };
  absl::Status whileStopped = readPackets(300 * kMillisecond);
  ASSERT_TRUE(absl::IsDeadlineExceeded(whileStopped)) << whileStopped;
  const uint64_t receivedWhileStopped = received;
  (*stopped)->resume();
  absl::Status end = readPackets(kWait);
  EXPECT_TRUE(absl::IsUnavailable(end) && (end.message() == "connection closed by server" ||
                                           end.message() == "Connection reset by peer"))
      << end << " (after " << received << " packets, " << receivedWhileStopped
      << " of them while the shard was stopped)";
  EXPECT_GT(receivedWhileStopped, 0u);
  ASSERT_OK_AND_ASSIGN(double closed,
                       waitForMetricTls(
                           port_, "derpd_connections_closed_total", {{"reason", "tls_error"}},
                           [](double v) { return v >= 1; }, kWait));
  EXPECT_EQ(closed, 1);
  expectRelayBothWays(*sender, *connectTls().value(), 1);
}

// ---- The packet pool at its cap ----

// One shard with a 4 MiB packet pool (--packet-memory-mb 4) and TLS receivers
// that do not read. Large packets queued for the first of them fill the pool
// with 64 KiB buffers; then small packets go to the others until their
// sockets are full too (about 3 MB each over loopback) and what is queued and
// sealed for them needs the 2 KiB and 16 KiB buffers the pool no longer has.
// A record is sealed only once the chain has room for it: at the cap the
// packet waits for the write in flight, or is dropped and counted
// (no_memory). (Before, SSL_write failed halfway and the receiver was closed
// as write_error.) At the cap a new client still completes the TLS and DERP
// handshakes and gets its Pong (its handshake flight, ClientInfo, ServerInfo
// and Pong draw on the pool's reserve). Once the receivers read, they get
// every packet derpd did not drop, intact and in order, and every packet
// sent is accounted for: written, or dropped by reason.
TEST_F(TlsTest, PacketPoolAtItsCapDropsPacketsButKeepsConnectionsAndHandshakes) {
  constexpr int kFillers = 4;  // sent 32,000-byte packets (64 KiB buffers) first
  constexpr int kLate = 8;     // then 1,900-byte packets (2 KiB buffers)
  constexpr int kMaxRounds = 3000;
  install(gFix->derp1, "derp.test");
  DerpdOptions opts = options("derp.test", {"--packet-memory-mb", "4", "-tcp-write-timeout", "0"});
  opts.shards = 1;
  ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
  port_ = derpd_->port();
  ASSERT_OK_AND_ASSIGN(auto sender, connectTls());
  std::vector<std::unique_ptr<DerpClient>> stalled;
  std::vector<size_t> payloadSize;
  for (int i = 0; i < kFillers + kLate; i++) {
    client::ClientOptions o = tlsOptions();
    o.receiveBufferBytes = 4096;
    ASSERT_OK_AND_ASSIGN(auto r, connectFresh(o));
    stalled.push_back(std::move(r));
    payloadSize.push_back(i < kFillers ? 32000 : 1900);
  }
  auto total = [&](std::string_view name, const Labels& filter = {}) -> double {
    absl::StatusOr<double> v = metricTls(port_, name, filter);
    EXPECT_OK(v.status());
    return v.value_or(-1);
  };
  auto accounted = [&] {
    return total("derpd_packets_sent_total") + total("derpd_packets_dropped_total");
  };
  const Labels writeError = {{"reason", "write_error"}};
  const double accountedBefore = accounted();
  const double sentBefore = total("derpd_packets_sent_total");

  // Rounds of a packet to each receiver in [from, to) until full() says so
  // (checked every 16 rounds), then 64 rounds more; returns when it said so.
  uint64_t sentByClients = 0;
  uint32_t seq = 0;
  auto sendUntil = [&](int from, int to, auto full) -> int {
    int fullAt = -1;
    for (int round = 0; round < kMaxRounds && (fullAt < 0 || round < fullAt + 64); round++, seq++) {
      for (int i = from; i < to; i++) {
        absl::Status st =
            sender->sendPacket(stalled[i]->publicKey(), taggedPayload(seq, i, payloadSize[i]));
        if (!st.ok()) {
          ADD_FAILURE() << st;
          return -1;
        }
        sentByClients++;
      }
      if (fullAt < 0 && round % 16 == 15 && full()) fullAt = round;
    }
    return fullAt;
  };
  auto failures = [&](const char* size) {
    return total("derpd_pool_allocation_failures_total", {{"size", size}});
  };
  const int fillRounds = sendUntil(0, kFillers, [&] { return failures("65664") > 0; });
  ASSERT_GE(fillRounds, 0) << "the pool never reached its cap";
  const int lateRounds = sendUntil(kFillers, kFillers + kLate, [&] {
    return failures("2048") + failures("16384") > 0 ||
           total("derpd_connections_closed_total", writeError) > 0;
  });
  ASSERT_GE(lateRounds, 0) << "the small packets never met the cap";
  EXPECT_GT(total("derpd_packets_dropped_total", {{"reason", "no_memory"}}), 0);

  // At the cap: a new client handshakes and is answered; nothing was closed.
  ASSERT_OK_AND_ASSIGN(auto fresh, connectTls());
  ASSERT_OK(fresh->ping(kWait).status());
  for (const char* reason : {"write_error", "no_memory", "tls_handshake_failed", "tls_error"}) {
    EXPECT_EQ(total("derpd_connections_closed_total", {{"reason", reason}}), 0) << reason;
  }
  EXPECT_EQ(total("derpd_current_connections"), kFillers + kLate + 2);

  // The receivers read: every packet not dropped arrives intact and in
  // order, and the counts add up.
  uint64_t received = 0;
  std::vector<int64_t> lastSeq(stalled.size(), -1);
  RealClock clock;
  const Nanos deadline = clock.now() + 3 * kWait;
  while (clock.now() < deadline) {
    for (size_t i = 0; i < stalled.size(); i++) {
      for (;;) {
        absl::StatusOr<DerpClient::Packet> p = stalled[i]->recvPacket(20 * kMillisecond);
        if (!p.ok()) {
          ASSERT_TRUE(absl::IsDeadlineExceeded(p.status()))
              << "receiver " << i << ": " << p.status();
          break;
        }
        ASSERT_EQ(p->src, sender->publicKey());
        const uint32_t got = payloadSeq(p->payload);
        ASSERT_EQ(p->payload, taggedPayload(got, static_cast<uint32_t>(i), payloadSize[i]));
        ASSERT_GT(static_cast<int64_t>(got), lastSeq[i]) << "out of order";
        lastSeq[i] = got;
        received++;
      }
    }
    if (accounted() == accountedBefore + static_cast<double>(sentByClients) &&
        total("derpd_packets_sent_total") == sentBefore + static_cast<double>(received)) {
      break;
    }
  }
  EXPECT_EQ(accounted(), accountedBefore + static_cast<double>(sentByClients));
  EXPECT_EQ(total("derpd_packets_sent_total"), sentBefore + static_cast<double>(received));
  EXPECT_EQ(total("derpd_connections_closed_total", writeError), 0);
  std::printf(
      "pool full after %d rounds, small packets met it after %d; %llu packets sent, "
      "%llu received\n",
      fillRounds, lateRounds, static_cast<unsigned long long>(sentByClients),
      static_cast<unsigned long long>(received));

  // With the pool drained, packets flow again.
  expectRelayBothWays(*sender, *fresh, 1);
  expectRelayed(*sender, *stalled[kFillers], 2);
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) { return derpd::testing::runTlsTestMain(argc, argv); }
