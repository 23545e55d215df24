#include "relay/varz.h"

#include "absl/strings/str_cat.h"
#include "derpd_config.h"

namespace derpd::relay {
namespace {

uint64_t sum(std::span<ShardCounters* const> shards, Counter ShardCounters::*field) {
  uint64_t total = 0;
  for (const ShardCounters* s : shards) total += (s->*field).get();
  return total;
}

void sample(std::string& out, absl::string_view name, absl::string_view type, uint64_t value) {
  absl::StrAppend(&out, "# TYPE ", name, " ", type, "\n", name, " ", value, "\n");
}

}  // namespace

std::string renderVarz(std::span<ShardCounters* const> shards, int64_t startUnixSeconds,
                       int64_t nowUnixSeconds) {
  std::string out;
  out.reserve(4096);
  // derper's "accepts" counts DERP connections handed to the server: upgrades.
  sample(out, "derp_accepts", "counter", sum(shards, &ShardCounters::derpUpgrades));
  sample(out, "derp_websocket_accepts", "counter", sum(shards, &ShardCounters::websocketUpgrades));
  sample(out, "derp_bytes_received", "counter", sum(shards, &ShardCounters::bytesReceived));
  sample(out, "derp_bytes_sent", "counter", sum(shards, &ShardCounters::bytesSent));
  // Each shard's directory replica holds the whole node (and the keys on mesh
  // peers), so shard 0's sizes are the node's.
  const uint64_t keys = shards.empty() ? 0 : shards[0]->directoryKeys.get();
  const uint64_t remote = shards.empty() ? 0 : shards[0]->meshRemoteKeys.get();
  sample(out, "derp_clients_local", "gauge", keys);
  sample(out, "derp_clients_remote", "gauge", remote);
  sample(out, "derp_clients_total", "gauge", keys + remote);
  sample(out, "derp_current_connections", "gauge",
         sum(shards, &ShardCounters::currentConnections));
  sample(out, "derp_current_home_connections", "gauge",
         sum(shards, &ShardCounters::currentHomeConnections));
  sample(out, "derp_got_ping", "counter", sum(shards, &ShardCounters::pingsReceived));
  sample(out, "derp_home_moves_in", "counter", sum(shards, &ShardCounters::homeMovesIn));
  sample(out, "derp_home_moves_out", "counter", sum(shards, &ShardCounters::homeMovesOut));

  // Drops: derper's reasons; a packet whose destination left between lookup
  // and delivery (our stale generation) is derper's gone_disconnected.
  auto dropped = [&](DropReason r, int kind) {
    uint64_t n = 0;
    for (const ShardCounters* s : shards) n += s->dropped[static_cast<size_t>(r)][kind].get();
    return n;
  };
  uint64_t byKind[2] = {0, 0};
  for (size_t r = 0; r < static_cast<size_t>(DropReason::kCount); r++) {
    for (int k = 0; k < 2; k++) byKind[k] += dropped(static_cast<DropReason>(r), k);
  }
  sample(out, "derp_packets_dropped", "counter", byKind[0] + byKind[1]);
  absl::StrAppend(&out, "# TYPE derp_packets_dropped_reason counter\n");
  const struct {
    const char* name;
    DropReason reason;
  } kReasons[] = {{"gone_disconnected", DropReason::kGoneDisconnected},
                  {"queue_head", DropReason::kQueueHead},
                  {"queue_tail", DropReason::kQueueTail},
                  {"unknown_dest", DropReason::kUnknownDest},
                  {"unknown_dest_on_fwd", DropReason::kUnknownDestOnFwd},
                  {"write_error", DropReason::kWriteError}};
  for (const auto& r : kReasons) {
    uint64_t n = dropped(r.reason, 0) + dropped(r.reason, 1);
    if (r.reason == DropReason::kQueueTail) {  // derper's name for "no room for it"
      n += dropped(DropReason::kNoMemory, 0) + dropped(DropReason::kNoMemory, 1) +
           dropped(DropReason::kMailboxFull, 0) + dropped(DropReason::kMailboxFull, 1);
    }
    if (r.reason == DropReason::kGoneDisconnected) {
      n += dropped(DropReason::kStaleGeneration, 0) + dropped(DropReason::kStaleGeneration, 1);
    }
    absl::StrAppend(&out, "derp_packets_dropped_reason{reason=\"", r.name, "\"} ", n, "\n");
  }
  absl::StrAppend(&out, "# TYPE derp_packets_dropped_type counter\n",
                  "derp_packets_dropped_type{type=\"disco\"} ", byKind[1], "\n",
                  "derp_packets_dropped_type{type=\"other\"} ", byKind[0], "\n");

  const uint64_t received = sum(shards, &ShardCounters::packetsReceived);
  const uint64_t disco = sum(shards, &ShardCounters::discoPacketsReceived);
  sample(out, "derp_packets_received", "counter", received);
  absl::StrAppend(&out, "# TYPE derp_packets_received_kind counter\n",
                  "derp_packets_received_kind{kind=\"disco\"} ", disco, "\n",
                  "derp_packets_received_kind{kind=\"other\"} ", received - disco, "\n");
  sample(out, "derp_packets_sent", "counter", sum(shards, &ShardCounters::packetsSent));
  sample(out, "derp_packets_forwarded_in", "counter",
         sum(shards, &ShardCounters::meshForwardedInPackets));
  sample(out, "derp_packets_forwarded_out", "counter",
         sum(shards, &ShardCounters::meshForwardedOutPackets));
  sample(out, "derp_peer_gone_disconnected_frames", "counter",
         sum(shards, &ShardCounters::peerGoneDisconnected));
  sample(out, "derp_peer_gone_not_here_frames", "counter",
         sum(shards, &ShardCounters::peerGoneNotHere));
  uint64_t writeTimeouts = 0;
  for (const ShardCounters* s : shards) {
    writeTimeouts += s->closed[static_cast<size_t>(CloseReason::kWriteTimeout)].get();
  }
  sample(out, "derp_sclient_write_timeouts", "counter", writeTimeouts);
  sample(out, "derp_sent_pong", "counter", sum(shards, &ShardCounters::pongsSent));
  sample(out, "derp_total_dup_client_conns", "counter", sum(shards, &ShardCounters::duplicateKeys));
  sample(out, "derp_unknown_frames", "counter", sum(shards, &ShardCounters::unknownFrames));

  sample(out, "bootstrap_dns_requests", "counter",
         sum(shards, &ShardCounters::bootstrapDnsRequests));
  // derper's ?q= counters. A name left out by its rollout is also a miss to
  // derper (unless it is published as well, which we count as a miss too).
  std::array<uint64_t, 4> dns{};
  for (const ShardCounters* s : shards) {
    for (size_t r = 0; r < dns.size(); r++) dns[r] += s->bootstrapDnsQueries[r].get();
  }
  sample(out, "bootstrap_dns_unpublished_hits", "counter", dns[0] + dns[1]);
  sample(out, "bootstrap_dns_unpublished_percent_misses", "counter", dns[1]);
  sample(out, "bootstrap_dns_published_hits", "counter", dns[2]);
  sample(out, "bootstrap_dns_unpublished_misses", "counter", dns[1] + dns[3]);

  // derper's STUN dispositions: every datagram we ignore is "not_stun" to it.
  uint64_t notStun = 0;
  for (const ShardCounters* s : shards) {
    for (const Counter& c : s->stunDropped) notStun += c.get();
  }
  absl::StrAppend(&out, "# TYPE stun_requests counter\n",
                  "stun_requests{disposition=\"not_stun\"} ", notStun, "\n",
                  "stun_requests{disposition=\"success\"} ",
                  sum(shards, &ShardCounters::stunResponses), "\n",
                  "stun_requests{disposition=\"write_error\"} ",
                  sum(shards, &ShardCounters::stunSendErrors), "\n");

  absl::StrAppend(&out, "process_start_unix_time ", startUnixSeconds, "\n");
  sample(out, "uptime_sec", "counter",
         static_cast<uint64_t>(nowUnixSeconds > startUnixSeconds ? nowUnixSeconds - startUnixSeconds
                                                                 : 0));
  absl::StrAppend(&out, "version{version=\"", DERPD_VERSION, "\",binary=\"derpd\"} 1\n");
  return out;
}

}  // namespace derpd::relay
