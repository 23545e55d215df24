// Connection: one TCP connection, accepted (from HTTP request to DERP client)
// or an outgoing mesh link.
//
// Lives on the shard that accepted or opened it, for its whole life; only that
// shard's thread touches it. It is state that ShardServer drives, in parts:
// its transport and its session (what it is doing, by role), the HTTP head
// buffer, the frame reader, the writer's queues and chain, and, for an
// accepted DERP client, its ClientState. An idle, handshaken connection holds
// no receive buffer (receives come from the shard's provided-buffer ring) and
// no send buffers.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "derp/key.h"
#include "http/head_buffer.h"
#include "http/websocket.h"
#include "relay/counters.h"
#include "relay/key_directory.h"
#include "runtime/io_ring.h"
#include "runtime/packet_pool.h"
#include "runtime/send_queue.h"
#include "runtime/timer_wheel.h"
#include "relay/tls_transport.h"
#include "relay/session.h"
#include "relay/transport.h"

namespace derpd::relay {

class ShardServer;
struct Connection;
struct RelayConfig;

// Completion for one of a connection's in-flight operations.
struct ConnOp final : Completion {
  enum Kind : uint8_t { kRecv, kSend };
  ConnOp(ShardServer* s, Connection* c, Kind k) : server(s), conn(c), kind(k) {}
  void complete(int res, uint32_t flags) override;
  ShardServer* server;
  Connection* conn;
  Kind kind;
};

// PacketBuf::flags bits.
constexpr uint8_t kBufIsPacket = 1;  // a RecvPacket frame: counted when written
constexpr uint8_t kBufIsDisco = 2;
constexpr uint8_t kBufHold = 4;  // the writer stops here until the flag is cleared
constexpr uint8_t kBufIsForward = 8;  // a ForwardPacket frame for a mesh link
// Already WebSocket bytes (the 101, a Pong, a Close): written as they are on a
// WebSocket connection, whose other frames are wrapped in binary messages.
constexpr uint8_t kBufWsFrame = 16;

// The listener a connection came from: the main (-a) one, the plain -http-port
// one beside TLS, or the --metrics-addr one.
enum class ListenerKind : uint8_t { kMain, kPort80, kMetrics };

// The DERP frame reader: the header being read, then the body.
struct FrameReader {
  uint8_t hdr[5] = {};
  uint8_t hdrHave = 0;
  uint8_t curType = 0;
  uint32_t curLen = 0;
  uint32_t bodyHave = 0;
  PacketBuf* body = nullptr;  // nullptr while skipping a frame's body
};

struct Connection {
  using Ip = std::array<uint8_t, 16>;
  // kConnecting: an outgoing mesh link waiting for its TCP connect.
  enum class State : uint8_t { kConnecting, kHttp, kDerpHandshake, kDerp, kClosing };
  static constexpr size_t kMaxIov = 32;

  Connection(ShardServer* s, uint32_t index, uint32_t generation, int socket,
             const RelayConfig& config, Timer::Callback deadlineCb, Timer::Callback keepAliveCb,
             Timer::Callback writeCb, Timer::Callback resumeCb);

  uint32_t idx;
  uint32_t gen;
  int fd;
  State state = State::kHttp;
  bool recvArmed = false;
  bool sending = false;
  bool closeAfterWrite = false;
  bool inDirtyList = false;
  ListenerKind listener = ListenerKind::kMain;  // which listener accepted it
  bool holdsSocketBudget = false;  // counted in SharedState::acceptedSockets until reaped
  bool holdsIpSlot = false;        // counted in SharedState::perIp under peerIp until reaped
  Ip peerIp{};                     // the peer's address (IPv4 mapped), for holdsIpSlot
  bool mayObserve = false;         // the peer may read /metrics and /debug/ (mayObserve())
  uint32_t preAuthCharge = 0;  // bytes of the shard's pre-authentication budget it holds
  // Reading stopped (ShardServer::pauseInput): while its client is verified.
  // The receive is cancelled so the socket's buffer fills and TCP pushes back;
  // plaintext that was already on its way waits in heldInput.
  bool inputPaused = false;
  std::vector<uint8_t> heldInput;
  // Receives one buffer at a time (single-shot) instead of multishot: a
  // rate-limited client's, so that a pause holds at most one receive buffer
  // (a multishot receive would drain its whole socket backlog first).
  bool singleRecv = false;
  CloseReason pendingClose = CloseReason::kHttpDone;  // when closeAfterWrite
  CloseReason closeReason = CloseReason::kEof;  // once kClosing: why
  bool tornDown = false;  // kClosing and its second phase done (ShardServer::finishCloses)

  // Socket bytes <-> plaintext: the shard's plain transport, or `tls`.
  Transport* transport = nullptr;
  std::unique_ptr<TlsTransport> tls;
  // Its role above the transport, with the role's own state: an accepted
  // client's ServerSession (server_session.h) or a mesh link's LinkSession
  // (link_session.h).
  std::unique_ptr<Session> session;

  // HTTP phase: request (or, on a mesh link, response) heads until complete.
  // Freed on upgrade.
  http::HeadBuffer http;

  FrameReader reader;
  // DERP over WebSocket (RFC 6455): the client's frames, which carry the DERP
  // byte stream, decoded here before the frame reader; nullptr for raw DERP.
  std::unique_ptr<http::ws::Decoder> ws;

  // Writer: frames queued by kind, and the chain being written now: the
  // frames themselves for plain HTTP, the records they were sealed into for TLS.
  SendQueue control{256, 1 << 20};
  SendQueue disco;
  SendQueue packets;
  // Until set false the writer takes control frames only: a client's
  // ServerInfo (held) and what precedes it wait for every shard to have
  // applied its registration (ServerSession).
  bool writeControlOnly = false;
  PacketBuf* writing = nullptr;  // chain linked through next
  PacketBuf* writingTail = nullptr;
  size_t writingCount = 0;
  size_t writeOffset = 0;  // bytes of `writing` already sent
  iovec iov[kMaxIov];
  msghdr msg{};

  Nanos acceptedAt = 0;  // home moves in the first seconds are not moves (derper)

  Timer deadline;   // HTTP header / DERP handshake deadline
  Timer keepAlive;
  Timer writeTimeout;
  Timer resume;  // a rate-limited client's reading resumes (-rate-config)
  ConnOp recvOp;
  ConnOp sendOp;
};

}  // namespace derpd::relay
