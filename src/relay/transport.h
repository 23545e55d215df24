// Transports: what turns a connection's socket bytes into plaintext for the
// layer above (HTTP, the DERP reader) and its queued frames into socket bytes.
// Two today: plain (the bytes are the plaintext; frames are written as they
// are) and TLS (tls_transport.h: BoringSSL over memory BIOs, records sealed
// into pool buffers). The layer above never sees which one it has, or an SSL*.
// Internal to src/relay.
#pragma once

#include <cstddef>
#include <cstdint>

#include "relay/counters.h"
#include "runtime/packet_pool.h"

namespace derpd::relay {

struct Connection;

// Where the reader wants its next plaintext: into its frame header or a
// packet's pool buffer (written there directly, no copy in between), or
// anywhere (the transport's scratch, then TransportUser::onPlaintext).
// A WebSocket connection's frame headers and control payloads (kWsHeader,
// kWsControl) go into its decoder.
struct ReadTarget {
  enum Kind : uint8_t { kAny, kHeader, kBody, kWsHeader, kWsControl };
  Kind kind = kAny;
  uint8_t* at = nullptr;  // kAny: nullptr
  size_t max = 0;         // kAny: no limit
};

// The layer above a connection's transport (ShardServer for now).
class TransportUser {
 public:
  virtual ReadTarget readTarget(Connection& c) = 0;
  // n bytes landed in the last target; false: stop reading (closing).
  virtual bool onReadInto(Connection& c, ReadTarget::Kind kind, size_t n) = 0;
  virtual void onPlaintext(Connection& c, const uint8_t* data, size_t n) = 0;
  // The transport's own handshake is complete (at once for plain).
  virtual void onTransportReady(Connection& c) = 0;
  virtual void closeConnection(Connection& c, CloseReason reason) = 0;
  // The transport has bytes to write (a handshake flight, an alert).
  virtual void wantWrite(Connection& c) = 0;
  // A frame's buffer is done with (it may belong to another shard's pool).
  virtual void releaseFrame(PacketBuf* b) = 0;

 protected:
  ~TransportUser() = default;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Socket bytes arrived (a receive buffer, valid during the call only).
  virtual void onReceived(Connection& c, const uint8_t* data, size_t n) = 0;
  // Moves queued frames into c's write chain (which holds `pending` unsent
  // bytes): the frames themselves, or records sealed from them.
  virtual void fill(Connection& c, size_t pending) = 0;
  // Everything is written and c closes after it: true if the transport
  // queued last words to write first (TLS close_notify).
  virtual bool finish(Connection& c) = 0;
  virtual bool encrypted() const = 0;
};

// The plain transport: stateless, one per shard for all its plain connections.
class PlainTransport final : public Transport {
 public:
  PlainTransport(TransportUser& user, PacketPool& pool) : user_(user), pool_(pool) {}
  void onReceived(Connection& c, const uint8_t* data, size_t n) override {
    user_.onPlaintext(c, data, n);
  }
  void fill(Connection& c, size_t pending) override;
  bool finish(Connection&) override { return false; }
  bool encrypted() const override { return false; }

 private:
  TransportUser& user_;
  PacketPool& pool_;  // the shard's: WebSocket message headers
};

// A WebSocket connection's output (websocket_io.cc): the frames queued for it
// as binary messages, a run of frames behind one message header (DERP frames
// may span messages and a message may hold several; the frames are not
// copied), kBufWsFrame buffers as they are. Moves them into c's write chain
// while it has room; false if no header buffer could be had (the connection
// is closed).
bool fillWebSocket(Connection& c, size_t pending, PacketPool& pool, TransportUser& user);

}  // namespace derpd::relay
