// ServerSession: an accepted connection's role (session.h): HTTP, then a DERP
// client. Its HTTP phase is http_session.cc; its frames are read and handled
// in connection_io.cc (and mesh.cc for a mesh peer's); these are the calls
// the shared machinery makes into it.
#include "derp/frame.h"
#include "relay/shard_server.h"

namespace derpd::relay {

// A client's complete frame. Packets keep their buffer (relayed as they are);
// every other body is parsed and its buffer released.
void ShardServer::ServerSession::onFrame(Connection& c, PacketBuf* b) {
  auto type = static_cast<derp::FrameType>(c.reader.curType);
  if (type == derp::FrameType::kSendPacket) {
    s_.onSendPacket(c, b);
    return;
  }
  if (type == derp::FrameType::kForwardPacket) {
    s_.onForwardPacket(c, b);
    return;
  }
  std::span<const uint8_t> body{b->bytes() + derp::kFrameHeaderLen, c.reader.curLen};
  if (type == derp::FrameType::kClientInfo) {
    s_.onClientInfo(c, body);
    s_.releaseBuf(b);
    s_.chargePreAuth(c, 0);  // its body was the connection's last pre-auth buffer
    return;
  }
  s_.onOtherFrame(c, c.reader.curType, body);
  s_.releaseBuf(b);
}

CloseReason ShardServer::ServerSession::deadlineReason(const Connection& c) const {
  switch (c.state) {
    case Connection::State::kHttp:
      return CloseReason::kHeaderTimeout;
    case Connection::State::kDerp:
      return CloseReason::kReadTimeout;
    default:
      return CloseReason::kHandshakeTimeout;
  }
}

// A registered client is told to reconnect elsewhere and served until it
// goes; one that has not finished its handshake is closed.
void ShardServer::ServerSession::onDrain(Connection& c, const derp::RestartingFrame& restarting) {
  if (c.client.registered) {
    s_.queueFrame(c, restarting);
  } else {
    s_.close(c, CloseReason::kShutdown);
  }
}

void ShardServer::ServerSession::onTornDown(Connection& c) {
  if (c.client.watcher) s_.dropWatcher(c);
  if (c.client.registered) s_.unregister(c);
}

void ShardServer::ServerSession::onReaped(Connection& c) {
  if (c.listener != ListenerKind::kMetrics) {
    s_.shared_.acceptedSockets.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace derpd::relay
