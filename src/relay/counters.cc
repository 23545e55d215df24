#include "relay/counters.h"

#include <chrono>
#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "derpd_config.h"

namespace derpd::relay {

const char* closeReasonName(CloseReason r) {
  switch (r) {
    case CloseReason::kEof: return "eof";
    case CloseReason::kReadError: return "read_error";
    case CloseReason::kWriteError: return "write_error";
    case CloseReason::kWriteTimeout: return "write_timeout";
    case CloseReason::kHandshakeTimeout: return "handshake_timeout";
    case CloseReason::kHeaderTimeout: return "header_timeout";
    case CloseReason::kBadRequest: return "bad_request";
    case CloseReason::kHeadTooLarge: return "head_too_large";
    case CloseReason::kFrameTooLarge: return "frame_too_large";
    case CloseReason::kBadFrame: return "bad_frame";
    case CloseReason::kBadClientInfo: return "bad_client_info";
    case CloseReason::kNotClientInfo: return "not_client_info";
    case CloseReason::kMeshFrameDenied: return "mesh_frame_denied";
    case CloseReason::kShutdown: return "shutdown";
    case CloseReason::kHttpDone: return "http_done";
    case CloseReason::kTlsHandshake: return "tls_handshake_failed";
    case CloseReason::kTlsError: return "tls_error";
    case CloseReason::kClosePeer: return "close_peer";
    case CloseReason::kWatcherOverflow: return "watcher_overflow";
    case CloseReason::kMeshConnect: return "mesh_connect_failed";
    case CloseReason::kMeshBadPeer: return "mesh_bad_peer";
    case CloseReason::kMeshSelf: return "mesh_self";
    case CloseReason::kMeshRemoved: return "mesh_removed";
    case CloseReason::kMeshRestarting: return "mesh_restarting";
    case CloseReason::kReadTimeout: return "read_timeout";
    case CloseReason::kNoMemory: return "no_memory";
    case CloseReason::kPreAuthMemory: return "preauth_memory";
    case CloseReason::kRejected:
      return "client_rejected";
    case CloseReason::kHeldInput:
      return "held_input_overflow";
    case CloseReason::kWebSocketClose:
      return "websocket_close";
    case CloseReason::kWebSocketError:
      return "websocket_protocol";
    case CloseReason::kCount: break;
  }
  return "unknown";
}

const char* acceptLimitName(AcceptLimit r) {
  switch (r) {
    case AcceptLimit::kRate:
      return "rate";
    case AcceptLimit::kPerIp:
      return "per_ip";
    case AcceptLimit::kHandshakes:
      return "handshakes";
    case AcceptLimit::kNotObserver:
      return "not_observer";
    case AcceptLimit::kCount:
      break;
  }
  return "unknown";
}

const char* rejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kNotInTailnet:
      return "not_in_tailnet";
    case RejectReason::kTailscaledError:
      return "tailscaled_error";
    case RejectReason::kTailscaledTooOld:
      return "tailscaled_too_old";
    case RejectReason::kUrlDenied:
      return "url_denied";
    case RejectReason::kUrlStatus:
      return "url_status";
    case RejectReason::kUrlBadReply:
      return "url_bad_reply";
    case RejectReason::kUrlUnreachable:
      return "url_unreachable";
    case RejectReason::kBusy:
      return "verifier_busy";
    case RejectReason::kCount:
      break;
  }
  return "unknown";
}

const char* dropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kUnknownDest: return "unknown_dest";
    case DropReason::kGoneDisconnected: return "gone_disconnected";
    case DropReason::kQueueHead: return "queue_head";
    case DropReason::kQueueTail: return "queue_tail";
    case DropReason::kWriteError: return "write_error";
    case DropReason::kStaleGeneration: return "stale_generation";
    case DropReason::kUnknownDestOnFwd: return "unknown_dest_on_fwd";
    case DropReason::kMeshLinkDown: return "mesh_link_down";
    case DropReason::kNoMemory: return "no_memory";
    case DropReason::kMailboxFull: return "mailbox_full";
    case DropReason::kDupClient: return "dup_client";
    case DropReason::kCount: break;
  }
  return "unknown";
}

namespace {

void family(std::string& out, absl::string_view name, absl::string_view type, absl::string_view help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

template <typename Get>
void perShard(std::string& out, std::span<ShardCounters* const> shards, absl::string_view name,
              absl::string_view type, absl::string_view help, Get get) {
  family(out, name, type, help);
  for (size_t i = 0; i < shards.size(); i++) {
    absl::StrAppend(&out, name, "{shard=\"", i, "\"} ", get(*shards[i]), "\n");
  }
}

template <typename Get>
void total(std::string& out, std::span<ShardCounters* const> shards, absl::string_view name,
           absl::string_view type, absl::string_view help, Get get) {
  family(out, name, type, help);
  uint64_t sum = 0;
  for (ShardCounters* s : shards) sum += get(*s);
  absl::StrAppend(&out, name, " ", sum, "\n");
}

// A counter family with one label whose values are counters of their own,
// each summed over shards.
void labelled(
    std::string& out, std::span<ShardCounters* const> shards, absl::string_view name,
    absl::string_view help, absl::string_view label,
    std::initializer_list<std::pair<absl::string_view, Counter ShardCounters::*>> values) {
  family(out, name, "counter", help);
  for (const auto& [value, counter] : values) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += (s->*counter).get();
    absl::StrAppend(&out, name, "{", label, "=\"", value, "\"} ", sum, "\n");
  }
}

// One counter family labelled by the reasons of enum R, summed over shards.
template <typename R, size_t N>
void byReason(std::string& out, std::span<ShardCounters* const> shards, absl::string_view name,
              absl::string_view help, std::array<Counter, N> ShardCounters::*counters,
              const char* (*reasonName)(R)) {
  family(out, name, "counter", help);
  for (size_t r = 0; r < N; r++) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += (s->*counters)[r].get();
    absl::StrAppend(&out, name, "{reason=\"", reasonName(static_cast<R>(r)), "\"} ", sum,
                    "\n");
  }
}

// When this process started (static initialisation runs before main), for
// Prometheus' conventional process_start_time_seconds: a change is a restart.
const double kProcessStartSeconds =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

}  // namespace

std::string renderMetrics(std::span<ShardCounters* const> shards) {
  std::string out;
  out.reserve(8192);
  family(out, "derpd_build_info", "gauge", "derpd version");
  absl::StrAppend(&out, "derpd_build_info{version=\"", DERPD_VERSION, "\"} 1\n");
  family(out, "process_start_time_seconds", "gauge",
         "start time of the process since the Unix epoch in seconds");
  absl::StrAppend(&out, "process_start_time_seconds ",
                  absl::StrFormat("%.3f", kProcessStartSeconds), "\n");
  family(out, "derpd_shards", "gauge", "number of shards");
  absl::StrAppend(&out, "derpd_shards ", shards.size(), "\n");
  perShard(out, shards, "derpd_accepts_total", "counter", "TCP connections accepted",
           [](const ShardCounters& c) { return c.accepts.get(); });
  perShard(out, shards, "derpd_pool_bytes", "gauge",
           "memory the shard's packet pool holds (it grows to the working set and keeps it)",
           [](const ShardCounters& c) { return c.poolBytes.get(); });
  perShard(out, shards, "derpd_pool_buffers_in_use", "gauge", "packet buffers handed out",
           [](const ShardCounters& c) { return c.poolBuffersInUse.get(); });
  family(out, "derpd_pool_allocation_failures_total", "counter",
         "packet buffers refused because the pool was at its cap, by buffer size");
  for (size_t k = 0; k < PacketPool::kClassCount; k++) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += s->poolFailures[k].get();
    absl::StrAppend(&out, "derpd_pool_allocation_failures_total{size=\"",
                    PacketPool::kClassCapacities[k], "\"} ", sum, "\n");
  }
  perShard(out, shards, "derpd_recv_no_buffers_total", "counter",
           "receives that found the shard's provided-buffer ring empty (ENOBUFS); each "
           "re-arms its receive",
           [](const ShardCounters& c) { return c.recvNoBuffers.get(); });
  perShard(out, shards, "derpd_cq_overflow", "gauge",
           "io_uring completions the kernel could not post to the shard's ring (its overflow count)",
           [](const ShardCounters& c) { return c.cqOverflow.get(); });
  perShard(out, shards, "derpd_mailbox_backlog", "gauge",
           "messages to other shards held back because their rings were full",
           [](const ShardCounters& c) { return c.mailboxBacklog.get(); });
  family(out, "derpd_connections", "gauge",
         "open sockets by state: connecting (mesh links), http (TLS handshake or request), "
         "handshaking (DERP handshake), registered, closing");
  static constexpr const char* kStates[] = {"connecting", "http", "handshaking", "registered",
                                            "closing"};
  for (size_t k = 0; k < std::size(kStates); k++) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += s->connectionsByState[k].get();
    absl::StrAppend(&out, "derpd_connections{state=\"", kStates[k], "\"} ", sum, "\n");
  }
  perShard(out, shards, "derpd_preauth_bytes", "gauge",
           "bytes of large request heads and ClientInfo bodies from clients not yet "
           "authenticated (bounded per shard)",
           [](const ShardCounters& c) { return c.preAuthBytes.get(); });
  total(out, shards, "derpd_accepts_refused_total", "counter",
        "TCP connections closed as soon as accepted: the open-file limit's budget was full",
        [](const ShardCounters& c) { return c.acceptsRefusedFdLimit.get(); });
  byReason<AcceptLimit>(out, shards, "derpd_accepts_limited_total",
                        "TCP connections closed as soon as accepted by an admission limit, by "
                        "limit (rate: -accept-connection-limit, per_ip: --max-conns-per-ip, "
                        "handshakes: --max-handshakes-per-shard, not_observer: a peer on the "
                        "--metrics-addr listener outside loopback, tailnet and --metrics-allow)",
                        &ShardCounters::acceptsLimited, acceptLimitName);
  perShard(out, shards, "derpd_current_connections", "gauge", "handshaken DERP clients",
           [](const ShardCounters& c) { return c.currentConnections.get(); });
  perShard(out, shards, "derpd_open_sockets", "gauge", "accepted sockets still open",
           [](const ShardCounters& c) { return c.openSockets.get(); });
  family(out, "derpd_packets_relayed_total", "counter",
         "packets handed to a destination, by the sender's shard and path");
  for (size_t i = 0; i < shards.size(); i++) {
    absl::StrAppend(&out, "derpd_packets_relayed_total{shard=\"", i, "\",path=\"local\"} ",
                    shards[i]->relayedLocal.get(), "\n");
    absl::StrAppend(&out, "derpd_packets_relayed_total{shard=\"", i,
                    "\",path=\"cross_shard\"} ", shards[i]->relayedCrossShard.get(), "\n");
  }
  total(out, shards, "derpd_packets_received_total", "counter", "SendPacket frames received",
        [](const ShardCounters& c) { return c.packetsReceived.get(); });
  total(out, shards, "derpd_bytes_received_total", "counter", "packet payload bytes received",
        [](const ShardCounters& c) { return c.bytesReceived.get(); });
  total(out, shards, "derpd_packets_sent_total", "counter", "RecvPacket frames written",
        [](const ShardCounters& c) { return c.packetsSent.get(); });
  total(out, shards, "derpd_bytes_sent_total", "counter", "packet payload bytes written",
        [](const ShardCounters& c) { return c.bytesSent.get(); });
  total(out, shards, "derpd_http_requests_total", "counter", "HTTP requests served",
        [](const ShardCounters& c) { return c.httpRequests.get(); });
  total(out, shards, "derpd_handshakes_total", "counter", "completed DERP handshakes",
        [](const ShardCounters& c) { return c.handshakes.get(); });
  family(out, "derpd_tls_handshakes_total", "counter", "completed TLS handshakes, by version");
  for (int v13 = 1; v13 >= 0; v13--) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += (v13 ? s->tls13Handshakes : s->tls12Handshakes).get();
    absl::StrAppend(&out, "derpd_tls_handshakes_total{version=\"", v13 ? "1.3" : "1.2", "\"} ",
                    sum, "\n");
  }
  total(out, shards, "derpd_duplicate_keys_total", "counter",
        "registrations of a key that was already connected",
        [](const ShardCounters& c) { return c.duplicateKeys.get(); });
  total(out, shards, "derpd_duplicate_key_activations_total", "counter",
        "times a connection of a duplicated key sent and became the one that receives",
        [](const ShardCounters& c) { return c.duplicateActivations.get(); });
  total(out, shards, "derpd_duplicate_key_fights_total", "counter",
        "duplicated keys whose connections took turns sending, all of them then disabled",
        [](const ShardCounters& c) { return c.duplicateFights.get(); });
  total(out, shards, "derpd_home_clients_total", "counter", "NotePreferred(true) received",
        [](const ShardCounters& c) { return c.homeClients.get(); });
  total(out, shards, "derpd_pings_received_total", "counter", "Ping frames received",
        [](const ShardCounters& c) { return c.pingsReceived.get(); });
  total(out, shards, "derpd_unknown_frames_total", "counter", "frames of unknown type skipped",
        [](const ShardCounters& c) { return c.unknownFrames.get(); });
  family(out, "derpd_peer_gone_sent_total", "counter", "PeerGone frames queued, by reason");
  uint64_t goneDisconnected = 0;
  uint64_t goneNotHere = 0;
  for (ShardCounters* s : shards) {
    goneDisconnected += s->peerGoneDisconnected.get();
    goneNotHere += s->peerGoneNotHere.get();
  }
  absl::StrAppend(&out, "derpd_peer_gone_sent_total{reason=\"disconnected\"} ", goneDisconnected,
                  "\nderpd_peer_gone_sent_total{reason=\"not_here\"} ", goneNotHere, "\n");
  total(out, shards, "derpd_pongs_sent_total", "counter", "Pong frames queued",
        [](const ShardCounters& c) { return c.pongsSent.get(); });
  total(out, shards, "derpd_pongs_dropped_total", "counter",
        "Pings not answered: the client left too many pongs unread",
        [](const ShardCounters& c) { return c.pongsDropped.get(); });
  total(out, shards, "derpd_derp_upgrades_total", "counter", "/derp requests upgraded to DERP",
        [](const ShardCounters& c) { return c.derpUpgrades.get(); });
  total(out, shards, "derpd_websocket_upgrades_total", "counter",
        "/derp requests upgraded to DERP over WebSocket (a part of the upgrades)",
        [](const ShardCounters& c) { return c.websocketUpgrades.get(); });
  total(out, shards, "derpd_disco_packets_received_total", "counter",
        "SendPacket frames carrying disco packets",
        [](const ShardCounters& c) { return c.discoPacketsReceived.get(); });
  perShard(out, shards, "derpd_current_home_connections", "gauge",
           "clients whose last NotePreferred said this is their home node",
           [](const ShardCounters& c) { return c.currentHomeConnections.get(); });
  labelled(out, shards, "derpd_home_moves_total",
           "clients that made this node their home (in) or left it (out) after connecting",
           "direction",
           {{"in", &ShardCounters::homeMovesIn}, {"out", &ShardCounters::homeMovesOut}});
  family(out, "derpd_clients", "gauge", "distinct client keys connected");
  absl::StrAppend(&out, "derpd_clients ", shards.empty() ? 0 : shards[0]->directoryKeys.get(),
                  "\n");
  labelled(out, shards, "derpd_shard_wakes_total",
           "wake-ups of one shard by another that has mail for it: sent (it slept) or skipped "
           "(it was awake)",
           "result",
           {{"sent", &ShardCounters::wakesSent}, {"skipped", &ShardCounters::wakesSkipped}});
  total(out, shards, "derpd_handshake_box_key_hits_total", "counter",
        "DERP handshakes of clients seen before, whose box key (X25519) came from the cache",
        [](const ShardCounters& c) { return c.boxKeyHits.get(); });
  total(out, shards, "derpd_bootstrap_dns_requests_total", "counter", "/bootstrap-dns requests",
        [](const ShardCounters& c) { return c.bootstrapDnsRequests.get(); });
  family(out, "derpd_bootstrap_dns_queries_total", "counter",
         "/bootstrap-dns?q=<name> queries by what they found (rollout_excluded: an unpublished "
         "name whose TXT rollout share leaves the client out)");
  static constexpr std::array<const char*, 4> kDnsResults = {"unpublished", "rollout_excluded",
                                                             "published", "unknown"};
  for (size_t r = 0; r < kDnsResults.size(); r++) {
    uint64_t sum = 0;
    for (ShardCounters* s : shards) sum += s->bootstrapDnsQueries[r].get();
    absl::StrAppend(&out, "derpd_bootstrap_dns_queries_total{result=\"", kDnsResults[r], "\"} ",
                    sum, "\n");
  }
  total(out, shards, "derpd_ideal_node_header_total", "counter",
        "upgrades that carried an Ideal-Node header",
        [](const ShardCounters& c) { return c.idealNodeMismatch.get(); });
  total(out, shards, "derpd_mesh_forwarded_in_packets_total", "counter",
        "ForwardPacket frames received from mesh peers",
        [](const ShardCounters& c) { return c.meshForwardedInPackets.get(); });
  total(out, shards, "derpd_mesh_forwarded_in_bytes_total", "counter",
        "payload bytes of ForwardPacket frames received from mesh peers",
        [](const ShardCounters& c) { return c.meshForwardedInBytes.get(); });
  total(out, shards, "derpd_mesh_watchers", "gauge",
        "mesh peers watching this node's clients (WatchConns)",
        [](const ShardCounters& c) { return c.meshWatchers.get(); });
  family(out, "derpd_mesh_remote_keys", "gauge", "distinct client keys present on mesh peers");
  absl::StrAppend(&out, "derpd_mesh_remote_keys ",
                  shards.empty() ? 0 : shards[0]->meshRemoteKeys.get(), "\n");
  perShard(out, shards, "derpd_stun_requests_total", "counter", "STUN datagrams received",
           [](const ShardCounters& c) { return c.stunRequests.get(); });
  perShard(out, shards, "derpd_stun_responses_total", "counter", "STUN binding responses sent",
           [](const ShardCounters& c) { return c.stunResponses.get(); });
  total(out, shards, "derpd_stun_send_errors_total", "counter",
        "STUN responses the socket refused",
        [](const ShardCounters& c) { return c.stunSendErrors.get(); });
  byReason<stun::DropReason>(out, shards, "derpd_stun_dropped_total",
                             "STUN datagrams ignored, by reason", &ShardCounters::stunDropped,
                             stun::dropReasonName);
  byReason<CloseReason>(out, shards, "derpd_connections_closed_total",
                        "connections closed, by reason", &ShardCounters::closed,
                        closeReasonName);
  total(out, shards, "derpd_clients_verified_total", "counter",
        "clients admitted by -verify-clients / -verify-client-url",
        [](const ShardCounters& c) { return c.clientsVerified.get(); });
  total(out, shards, "derpd_rate_limit_waits_total", "counter",
        "frames whose body was read only after a wait for -rate-config's tokens (derper's "
        "rate_limit_per_client_waited)",
        [](const ShardCounters& c) { return c.rateLimitWaits.get(); });
  byReason<RejectReason>(out, shards, "derpd_clients_rejected_total",
                         "clients refused by -verify-clients / -verify-client-url, by reason",
                         &ShardCounters::rejected, rejectReasonName);
  family(out, "derpd_packets_dropped_total", "counter", "packets dropped, by reason and kind");
  for (size_t r = 0; r < static_cast<size_t>(DropReason::kCount); r++) {
    for (int k = 0; k < 2; k++) {
      uint64_t sum = 0;
      for (ShardCounters* s : shards) sum += s->dropped[r][k].get();
      absl::StrAppend(&out, "derpd_packets_dropped_total{reason=\"",
                      dropReasonName(static_cast<DropReason>(r)), "\",kind=\"",
                      k ? "disco" : "other", "\"} ", sum, "\n");
    }
  }
  return out;
}

std::string promLabelValue(std::string_view v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') out.push_back('\\');
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(ch);
  }
  return out;
}

}  // namespace derpd::relay
