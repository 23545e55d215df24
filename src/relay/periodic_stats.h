// PeriodicStats: the one "stats" log line derpd's main thread writes every
// --stats-interval, so an operator reading the log sees load and connection
// errors aggregated instead of one line per connection.
//
// The line is logfmt: current connections, then what happened since the last
// line (accepts, handshakes, packets relayed and dropped, bytes, and closes and
// drops by reason, nonzero reasons only), summed over the shards' counters.
// Counters are relaxed atomics written by their shards, so reading them from
// the main thread is safe and at most a moment stale.
//
// Owned and called by one thread (derpd's main thread).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/clock.h"
#include "relay/counters.h"

namespace derpd::relay {

// Every shard's counters summed at one moment.
struct StatsSnapshot {
  uint64_t connections = 0;  // gauge: handshaken DERP clients
  uint64_t sockets = 0;      // gauge: accepted sockets still open
  uint64_t accepts = 0;
  uint64_t tlsHandshakes = 0;
  uint64_t derpHandshakes = 0;
  uint64_t packetsReceived = 0;
  uint64_t packetsRelayed = 0;  // found their destination (same or other shard)
  uint64_t packetsSent = 0;
  uint64_t bytesReceived = 0;
  uint64_t bytesSent = 0;
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> dropped{};  // disco + other
  std::array<uint64_t, static_cast<size_t>(CloseReason::kCount)> closed{};

  static StatsSnapshot sum(std::span<ShardCounters* const> shards);
};

// "stats interval=60s connections=2 ... closed_eof=1": `now` with the counters
// as deltas from `before`, gauges as they are now.
std::string statsLine(const StatsSnapshot& before, const StatsSnapshot& now, Nanos elapsed);

class PeriodicStats {
 public:
  // interval > 0. `shards` must outlive this. The first line counts from the
  // counters' start (zero), since the shards may already be serving.
  PeriodicStats(std::span<ShardCounters* const> shards, Nanos interval, Nanos now);

  // How long a poll may sleep before the next line is due, in ms rounded up
  // (0 when due).
  int msUntilDue(Nanos now) const;
  // The line when one is due, and the next interval starts; else nothing.
  std::optional<std::string> lineIfDue(Nanos now);
  // The line for what happened since the last one, due or not (at exit: what
  // the last moments of a drain dropped is counted somewhere), and the next
  // interval starts.
  std::string lineNow(Nanos now);

 private:
  std::span<ShardCounters* const> shards_;
  Nanos interval_;
  Nanos last_;  // when the last line was written (or the stats started)
  StatsSnapshot before_;  // what the last line counted up to (zero before the first)
};

}  // namespace derpd::relay
