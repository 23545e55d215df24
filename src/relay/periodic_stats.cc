#include "relay/periodic_stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace derpd::relay {

StatsSnapshot StatsSnapshot::sum(std::span<ShardCounters* const> shards) {
  StatsSnapshot s;
  for (const ShardCounters* c : shards) {
    s.connections += c->currentConnections.get();
    s.sockets += c->openSockets.get();
    s.accepts += c->accepts.get();
    s.tlsHandshakes += c->tls13Handshakes.get() + c->tls12Handshakes.get();
    s.derpHandshakes += c->handshakes.get();
    s.packetsReceived += c->packetsReceived.get();
    s.packetsRelayed += c->relayedLocal.get() + c->relayedCrossShard.get();
    s.packetsSent += c->packetsSent.get();
    s.bytesReceived += c->bytesReceived.get();
    s.bytesSent += c->bytesSent.get();
    for (size_t r = 0; r < s.dropped.size(); r++) {
      s.dropped[r] += c->dropped[r][0].get() + c->dropped[r][1].get();
    }
    for (size_t r = 0; r < s.closed.size(); r++) s.closed[r] += c->closed[r].get();
  }
  return s;
}

std::string statsLine(const StatsSnapshot& before, const StatsSnapshot& now, Nanos elapsed) {
  // Counters only grow; a shard's relaxed reads can still make a sum look a
  // step behind the last one, which is shown as 0 rather than wrapping.
  auto delta = [](uint64_t b, uint64_t n) { return n >= b ? n - b : 0; };
  uint64_t droppedTotal = 0;
  for (size_t r = 0; r < now.dropped.size(); r++) {
    droppedTotal += delta(before.dropped[r], now.dropped[r]);
  }
  std::string line = absl::StrFormat(
      "stats interval=%.3gs connections=%d sockets=%d accepts=%d tls_handshakes=%d "
      "derp_handshakes=%d packets_received=%d packets_relayed=%d packets_sent=%d "
      "packets_dropped=%d bytes_received=%d bytes_sent=%d",
      static_cast<double>(elapsed) / kSecond, now.connections, now.sockets,
      delta(before.accepts, now.accepts), delta(before.tlsHandshakes, now.tlsHandshakes),
      delta(before.derpHandshakes, now.derpHandshakes),
      delta(before.packetsReceived, now.packetsReceived),
      delta(before.packetsRelayed, now.packetsRelayed),
      delta(before.packetsSent, now.packetsSent), droppedTotal,
      delta(before.bytesReceived, now.bytesReceived), delta(before.bytesSent, now.bytesSent));
  for (size_t r = 0; r < now.dropped.size(); r++) {
    if (uint64_t d = delta(before.dropped[r], now.dropped[r]); d != 0) {
      absl::StrAppend(&line, " dropped_", dropReasonName(static_cast<DropReason>(r)), "=", d);
    }
  }
  for (size_t r = 0; r < now.closed.size(); r++) {
    if (uint64_t d = delta(before.closed[r], now.closed[r]); d != 0) {
      absl::StrAppend(&line, " closed_", closeReasonName(static_cast<CloseReason>(r)), "=", d);
    }
  }
  return line;
}

PeriodicStats::PeriodicStats(std::span<ShardCounters* const> shards, Nanos interval, Nanos now)
    : shards_(shards), interval_(interval), last_(now) {}

int PeriodicStats::msUntilDue(Nanos now) const {
  Nanos left = std::max<Nanos>(last_ + interval_ - now, 0);
  // Round up: waking a moment early would only turn the loop once more.
  return static_cast<int>(std::min<Nanos>((left + kMillisecond - 1) / kMillisecond, 1 << 30));
}

std::optional<std::string> PeriodicStats::lineIfDue(Nanos now) {
  if (now < last_ + interval_) return std::nullopt;
  return lineNow(now);
}

std::string PeriodicStats::lineNow(Nanos now) {
  StatsSnapshot current = StatsSnapshot::sum(shards_);
  std::string line = statsLine(before_, current, now - last_);
  before_ = current;
  last_ = now;
  return line;
}

}  // namespace derpd::relay
