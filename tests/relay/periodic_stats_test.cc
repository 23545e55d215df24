// The periodic stats line: sums over shards, deltas since the last line,
// nonzero reasons only, and its timing on a manual clock.
#include "relay/periodic_stats.h"

#include <gtest/gtest.h>

#include <vector>

namespace derpd::relay {
namespace {

class PeriodicStatsTest : public ::testing::Test {
 protected:
  ShardCounters a_, b_;
  std::vector<ShardCounters*> shards_{&a_, &b_};
};

TEST_F(PeriodicStatsTest, SumsShardsAndReportsDeltas) {
  a_.currentConnections.set(3);
  b_.currentConnections.set(4);
  // Before the stats start: the server accepts as soon as it listens, so the
  // first line counts from the counters' start (a baseline taken here missed
  // connections accepted in between, and the stats-line test saw accepts=1
  // for its 2 clients).
  a_.accepts.add(10);
  ManualClock clock;
  PeriodicStats stats(shards_, 60 * kSecond, clock.now());

  a_.accepts.add(2);
  b_.accepts.add(1);
  a_.tls13Handshakes.add(2);
  b_.tls12Handshakes.add(1);
  a_.handshakes.add(3);
  a_.relayedLocal.add(5);
  b_.relayedCrossShard.add(7);
  a_.packetsReceived.add(13);
  b_.packetsSent.add(12);
  a_.bytesReceived.add(1300);
  b_.bytesSent.add(1200);
  a_.drop(DropReason::kUnknownDest, false);
  b_.drop(DropReason::kUnknownDest, true);
  a_.drop(DropReason::kQueueHead, false);
  a_.close(CloseReason::kEof);
  b_.close(CloseReason::kEof);
  b_.close(CloseReason::kTlsHandshake);

  EXPECT_FALSE(stats.lineIfDue(clock.now() + 59 * kSecond));
  clock.advance(60 * kSecond);
  std::optional<std::string> line = stats.lineIfDue(clock.now());
  ASSERT_TRUE(line);
  EXPECT_EQ(*line,
            "stats interval=60s connections=7 sockets=0 accepts=13 tls_handshakes=3 "
            "derp_handshakes=3 packets_received=13 packets_relayed=12 packets_sent=12 "
            "packets_dropped=3 bytes_received=1300 bytes_sent=1200 dropped_unknown_dest=2 "
            "dropped_queue_head=1 closed_eof=2 closed_tls_handshake_failed=1");

  // The next line counts from this one; reasons that did not recur are left out.
  a_.close(CloseReason::kWriteTimeout);
  clock.advance(60 * kSecond);
  line = stats.lineIfDue(clock.now());
  ASSERT_TRUE(line);
  EXPECT_EQ(*line,
            "stats interval=60s connections=7 sockets=0 accepts=0 tls_handshakes=0 "
            "derp_handshakes=0 packets_received=0 packets_relayed=0 packets_sent=0 "
            "packets_dropped=0 bytes_received=0 bytes_sent=0 closed_write_timeout=1");
}

TEST_F(PeriodicStatsTest, TellsThePollHowLongToSleep) {
  ManualClock clock;
  PeriodicStats stats(shards_, kSecond, clock.now());
  EXPECT_EQ(stats.msUntilDue(clock.now()), 1000);
  clock.advance(999 * kMillisecond + 1);
  EXPECT_EQ(stats.msUntilDue(clock.now()), 1);  // rounded up, never 0 early
  EXPECT_FALSE(stats.lineIfDue(clock.now()));
  clock.advance(kMillisecond);
  EXPECT_EQ(stats.msUntilDue(clock.now()), 0);
  ASSERT_TRUE(stats.lineIfDue(clock.now()));
  EXPECT_EQ(stats.msUntilDue(clock.now()), 1000);
  // A late wake-up reports the time that really passed.
  clock.advance(2500 * kMillisecond);
  std::optional<std::string> line = stats.lineIfDue(clock.now());
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("interval=2.5s "), std::string::npos) << *line;
}

// At exit: the line for the part of an interval since the last one, so what
// the last moments counted is logged, and the next line starts from there.
TEST_F(PeriodicStatsTest, ALineNowCoversThePartOfAnInterval) {
  ManualClock clock;
  PeriodicStats stats(shards_, 60 * kSecond, clock.now());
  clock.advance(60 * kSecond);
  ASSERT_TRUE(stats.lineIfDue(clock.now()));
  a_.drop(DropReason::kGoneDisconnected, false);
  clock.advance(1500 * kMillisecond);
  std::string line = stats.lineNow(clock.now());
  EXPECT_NE(line.find("interval=1.5s "), std::string::npos) << line;
  EXPECT_NE(line.find(" dropped_gone_disconnected=1"), std::string::npos) << line;
  EXPECT_EQ(stats.msUntilDue(clock.now()), 60000);
}

}  // namespace
}  // namespace derpd::relay
