// Per-shard counters and their Prometheus text rendering.
//
// Each shard writes only its own ShardCounters (relaxed load+store: a plain
// increment, no locked instruction on the packet path); /metrics reads every
// shard's counters relaxed and sums them. Values may be a moment stale.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "relay/client_check.h"
#include "runtime/packet_pool.h"
#include "stun/stun.h"

namespace derpd::relay {

enum class CloseReason : uint8_t {
  kEof,
  kReadError,
  kWriteError,
  kWriteTimeout,
  kHandshakeTimeout,
  kHeaderTimeout,
  kBadRequest,
  kHeadTooLarge,
  kFrameTooLarge,
  kBadFrame,
  kBadClientInfo,
  kNotClientInfo,
  kMeshFrameDenied,
  kShutdown,
  kHttpDone,
  kTlsHandshake,     // the TLS handshake failed (garbage, no shared version/cipher, ...)
  kTlsError,         // a TLS record could not be opened, or an alert arrived
  kClosePeer,        // a mesh peer's ClosePeer named this client
  kWatcherOverflow,  // a mesh watcher fell too far behind to keep its view exact
  kMeshConnect,      // a mesh link could not connect
  kMeshBadPeer,      // a mesh peer answered something other than DERP
  kMeshSelf,         // a mesh link reached this node itself
  kMeshRemoved,      // a mesh peer left -mesh-with (or its name's addresses)
  kMeshRestarting,   // a mesh peer said it is restarting
  kReadTimeout,      // a mesh peer sent nothing, not even a keep-alive, for too long
  kPreAuthMemory,  // a large request head or ClientInfo while the shard's budget for them was spent
  kNoMemory,       // a control frame for it found the pool and its reserve spent
  kRejected,       // -verify-clients / -verify-client-url refused the client
  kHeldInput,      // more arrived while its reading was paused than the shard holds for it
  kWebSocketClose,  // a WebSocket client sent a Close (answered)
  kWebSocketError,  // a WebSocket client broke RFC 6455 (answered with a Close and its code)
  kCount,
};
const char* closeReasonName(CloseReason r);

enum class DropReason : uint8_t {
  kUnknownDest,
  kGoneDisconnected,
  kQueueHead,
  kQueueTail,
  kWriteError,
  kStaleGeneration,
  kUnknownDestOnFwd,  // a forwarded packet for a key not on this node
  kMeshLinkDown,      // a packet for a peer whose link broke on its way out
  kNoMemory,          // the shard's packet pool was at its cap when the packet arrived
  kMailboxFull,       // the destination shard had kMaxHeldPackets of mail waiting already
  kDupClient,         // every connection of the destination key is disabled (they fought)
  kCount,
};
const char* dropReasonName(DropReason r);

// Why an accepted connection was closed at once by an admission limit
// (derpd_accepts_limited_total{reason}).
enum class AcceptLimit : uint8_t {
  kRate,         // -accept-connection-limit/-burst
  kPerIp,        // --max-conns-per-ip
  kHandshakes,   // --max-handshakes-per-shard
  kNotObserver,  // the --metrics-addr listener: a peer that may not read /metrics
  kCount,
};
const char* acceptLimitName(AcceptLimit r);

class Counter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  void set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

struct alignas(64) ShardCounters {
  Counter accepts;
  Counter acceptsRefusedFdLimit;  // accepted and closed at once: the fd budget was full
  std::array<Counter, static_cast<size_t>(AcceptLimit::kCount)> acceptsLimited;
  Counter currentConnections;  // handshaken DERP clients
  Counter openSockets;         // every accepted socket still open
  Counter relayedLocal;
  Counter relayedCrossShard;
  Counter packetsReceived;
  Counter bytesReceived;
  Counter packetsSent;
  Counter bytesSent;
  Counter httpRequests;
  Counter handshakes;
  Counter tls13Handshakes;
  Counter tls12Handshakes;
  Counter duplicateKeys;
  Counter duplicateActivations;  // another connection of a duplicated key sent and took over
  Counter duplicateFights;       // a duplicated key's connections took turns: all disabled
  Counter homeClients;  // NotePreferred(true)
  Counter currentHomeConnections;  // clients whose last NotePreferred said true
  Counter homeMovesIn;   // NotePreferred turned true after the first 5 s
  Counter homeMovesOut;  // ... turned false
  Counter derpUpgrades;  // /derp requests upgraded (derper's "accepts")
  Counter websocketUpgrades;  // of them, to DERP over WebSocket (derper's "websocket_accepts")
  Counter discoPacketsReceived;
  Counter pingsReceived;
  Counter pongsSent;
  // SIGTERM's drain: clients sent Restarting, and those still connected when
  // the drain timeout closed them.
  Counter drainTold;
  Counter drainTimedOut;
  Counter pongsDropped;  // pings not answered: the client had too many pongs unread
  Counter unknownFrames;
  Counter peerGoneDisconnected;  // PeerGone frames queued, by reason
  Counter peerGoneNotHere;
  Counter directoryKeys;  // gauge: distinct keys in this shard's directory replica
  Counter boxKeyHits;     // DERP handshakes whose X25519 came from BoxKeyCache
  Counter wakesSent;      // MSG_RING (or eventfd) wake-ups of sleeping shards
  Counter wakesSkipped;   // ... not needed: the shard was awake and takes its mail anyway
  Counter bootstrapDnsRequests;
  // /bootstrap-dns?q= queries by what they found: unpublished (answered),
  // rollout_excluded, published, unknown (http::DnsQuery, kNone left out).
  std::array<Counter, 4> bootstrapDnsQueries;
  Counter idealNodeMismatch;
  Counter meshForwardedInPackets;  // ForwardPacket frames from mesh peers
  Counter meshForwardedInBytes;
  Counter meshForwardedOutPackets;  // packets handed to mesh links
  Counter meshForwardedOutBytes;
  Counter meshWatchers;    // gauge: mesh peers watching this shard's view of the node
  Counter meshRemoteKeys;  // gauge: keys present on mesh peers, in this shard's replica
  Counter poolBytes;         // gauge: slab memory this shard's packet pool holds
  Counter poolBuffersInUse;  // gauge: its buffers handed out
  std::array<Counter, PacketPool::kClassCount> poolFailures;
  Counter recvNoBuffers;     // receives that found the provided-buffer ring empty (-ENOBUFS)
  Counter cqOverflow;        // gauge: completions the kernel could not post (ring's koverflow)
  Counter mailboxBacklog;    // gauge: messages held back for shards whose rings were full
  // gauges: this shard's sockets by Connection::State (connecting, http,
  // handshaking, registered, closing)
  std::array<Counter, 5> connectionsByState;  // allocations refused at the cap, by size class
  Counter preAuthBytes;      // gauge: large HTTP heads and ClientInfo bodies being read
  Counter stunRequests;
  Counter stunResponses;
  Counter stunSendErrors;
  std::array<Counter, static_cast<size_t>(stun::DropReason::kCount)> stunDropped;
  std::array<Counter, static_cast<size_t>(CloseReason::kCount)> closed;
  Counter clientsVerified;  // admitted by the client checker
  Counter rateLimitWaits;   // frames a -rate-config limit made wait before their body was read
  std::array<Counter, static_cast<size_t>(RejectReason::kCount)> rejected;
  // [reason][0: other, 1: disco]
  std::array<std::array<Counter, 2>, static_cast<size_t>(DropReason::kCount)> dropped;

  void drop(DropReason r, bool disco) { dropped[static_cast<size_t>(r)][disco ? 1 : 0].add(); }
  void close(CloseReason r) { closed[static_cast<size_t>(r)].add(); }
  void reject(RejectReason r) { rejected[static_cast<size_t>(r)].add(); }
  void stunDrop(stun::DropReason r) { stunDropped[static_cast<size_t>(r)].add(); }
};

// Prometheus text exposition of every shard's counters.
std::string renderMetrics(std::span<ShardCounters* const> shards);

// A Prometheus label value: backslash, quote and newline escaped.
std::string promLabelValue(std::string_view v);

}  // namespace derpd::relay
