// Sessions: what a connection does above its transport, by role, and the
// role's own state. An accepted connection has a ServerSession (HTTP, then a
// DERP client: handshake, frames, registration, duplicates, watcher role;
// server_session.h); an outgoing mesh link has a LinkSession (the upgrade
// request, then the DERP client's side of a peer's frames; link_session.h).
// One per connection, owned by it. The reader, writer, timers and close/reap
// machinery are shared and call the role through this interface, so neither
// role's code branches on the other. Internal to src/relay.
#pragma once

#include <cstddef>
#include <cstdint>

#include "derp/frame.h"
#include "relay/counters.h"
#include "runtime/packet_pool.h"

namespace derpd::relay {

struct Connection;

class Session {
 public:
  enum class Role : uint8_t { kHttp, kServer, kLink };
  explicit Session(Role r) : role(r) {}
  virtual ~Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Role role;

  // Bytes of the HTTP exchange before the upgrade; returns how many were
  // HTTP (the rest are DERP bytes that followed in the same read).
  virtual size_t onHttpBytes(Connection& c, const uint8_t* data, size_t n) = 0;
  // A frame header within kMaxFrameLen is complete (c.reader.curType, curLen):
  // checks it and sets c.reader.body to a buffer for a body to keep (nullptr:
  // skipped). False: the connection was closed.
  virtual bool startFrame(Connection& c) = 0;
  // A kept frame is complete, in b (header included): the session owns b.
  virtual void onFrame(Connection& c, PacketBuf* b) = 0;
  virtual void onTransportReady(Connection& c) = 0;
  // An outgoing connection's connect finished (res: its result).
  virtual void onConnected(Connection& c, int res) = 0;
  // Why the deadline (HTTP head, handshake, or for a link connect and read)
  // closes the connection in its state.
  virtual CloseReason deadlineReason(const Connection& c) const = 0;
  // Peers that may be slower to drain their writes (derper's 30 s).
  virtual bool meshPeer(const Connection& c) const = 0;
  // This node drains: what the connection is told (or whether it is closed).
  virtual void onDrain(Connection& c, const derp::RestartingFrame& restarting) = 0;
  // close()'s first phase; its second (ShardServer::finishCloses); the socket
  // closed and the slot freed.
  virtual void onClosing(Connection& c) = 0;
  virtual void onTornDown(Connection& c) = 0;
  virtual void onReaped(Connection& c) = 0;
};

}  // namespace derpd::relay
