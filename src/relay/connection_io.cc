// ShardServer's per-connection input (the DERP frame reader, which hands each
// frame header and frame to the connection's session) and output (queues
// gathered into one sendmsg per turn). The sessions' own handling is in
// http_session.cc, server_session.cc and link_session.cc; the TLS handshake,
// reads and record sealing in tls_transport.cc.
#include <sys/socket.h>

#include <cstring>

#include "derp/frame.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"
#include "relay/writer.h"

namespace derpd::relay {
namespace {

// Mesh peers may be slower to drain than clients (derper's 30 s).
constexpr Nanos kMeshWriteTimeout = 30 * kSecond;

// What a paused connection may hold: the receives already under way when its
// read was cancelled. More is a peer that keeps sending past the cancel.
constexpr size_t kMaxHeldInput = 1 << 20;

// A RecvPacket frame has left for its destination: written to a plain socket
// (TLS records count theirs with a SealTally).
void countSent(ShardCounters& counters, const PacketBuf* b) {
  if (!(b->flags & kBufIsPacket)) return;
  counters.packetsSent.add();
  counters.bytesSent.add(payloadBytes(b));
}

}  // namespace

void ShardServer::onBytes(Connection& c, const uint8_t* data, size_t n) {
  if (c.inputPaused) {
    holdInput(c, data, n);
    return;
  }
  if (c.state == Connection::State::kHttp) {
    size_t used = c.session->onHttpBytes(c, data, n);
    data += used;
    n -= used;
  }
  if (n > 0 && (c.state == Connection::State::kDerpHandshake ||
                c.state == Connection::State::kDerp)) {
    if (c.ws != nullptr) {
      onWebSocketBytes(c, data, n);
    } else {
      onDerpBytes(c, data, n);
    }
  }
}

// Where the frame reader wants the transport's next plaintext (TLS reads it
// there directly): a header's missing bytes, a body's (into its buffer; a
// skipped body's anywhere, up to its end), or, before the upgrade, anything.
ReadTarget ShardServer::readTarget(Connection& c) {
  if (c.inputPaused) return {};  // into the scratch, then held (onBytes)
  if (c.state != Connection::State::kDerpHandshake && c.state != Connection::State::kDerp) {
    return {};
  }
  return c.ws != nullptr ? wsTarget(c) : derpTarget(c);
}

ReadTarget ShardServer::derpTarget(Connection& c) {
  if (c.reader.hdrHave < derp::kFrameHeaderLen) {
    return {ReadTarget::kHeader, c.reader.hdr + c.reader.hdrHave,
            derp::kFrameHeaderLen - c.reader.hdrHave};
  }
  uint8_t* at = c.reader.body != nullptr
                    ? c.reader.body->bytes() + derp::kFrameHeaderLen + c.reader.bodyHave
                    : nullptr;
  return {ReadTarget::kBody, at, c.reader.curLen - c.reader.bodyHave};
}

bool ShardServer::onReadInto(Connection& c, ReadTarget::Kind kind, size_t n) {
  return c.ws != nullptr ? wsReadInto(c, kind, n) : derpReadInto(c, kind, n);
}

bool ShardServer::derpReadInto(Connection& c, ReadTarget::Kind kind, size_t n) {
  if (kind == ReadTarget::kHeader) {
    c.reader.hdrHave = static_cast<uint8_t>(c.reader.hdrHave + n);
    if (c.reader.hdrHave < derp::kFrameHeaderLen) return true;
    if (!startFrame(c)) return false;
    if (c.reader.curLen == 0) finishFrame(c);
    return true;
  }
  c.reader.bodyHave += static_cast<uint32_t>(n);
  if (c.reader.bodyHave == c.reader.curLen) finishFrame(c);
  return true;
}

void ShardServer::onTransportReady(Connection& c) {
  c.session->onTransportReady(c);
  markDirty(c);
}

void ShardServer::onDerpBytes(Connection& c, const uint8_t* data, size_t n) {
  while (n > 0 && (c.state == Connection::State::kDerpHandshake ||
                   c.state == Connection::State::kDerp)) {
    if (c.inputPaused) {
      holdInput(c, data, n);
      return;
    }
    if (c.reader.hdrHave < derp::kFrameHeaderLen) {
      size_t take = std::min(n, derp::kFrameHeaderLen - c.reader.hdrHave);
      std::memcpy(c.reader.hdr + c.reader.hdrHave, data, take);
      c.reader.hdrHave = static_cast<uint8_t>(c.reader.hdrHave + take);
      data += take;
      n -= take;
      if (c.reader.hdrHave < derp::kFrameHeaderLen) return;
      if (!startFrame(c)) return;
      if (c.reader.curLen == 0) {
        finishFrame(c);
        continue;
      }
    }
    size_t take = std::min<size_t>(n, c.reader.curLen - c.reader.bodyHave);
    if (c.reader.body != nullptr) {
      std::memcpy(c.reader.body->bytes() + derp::kFrameHeaderLen + c.reader.bodyHave, data, take);
    }
    c.reader.bodyHave += static_cast<uint32_t>(take);
    data += take;
    n -= take;
    if (c.reader.bodyHave == c.reader.curLen) finishFrame(c);
  }
}

// Stops reading: the multishot receive is cancelled (its last completion,
// -ECANCELED, is not re-armed while paused), so what the peer sends next
// stays in the socket and TCP's window closes.
void ShardServer::pauseInput(Connection& c) {
  if (c.inputPaused) return;
  c.inputPaused = true;
  cancelRecv(c);
}

// Ends the receive in flight, if any: its last completion (-ECANCELED, or
// data that won the race) re-arms it unless the connection is paused.
void ShardServer::cancelRecv(Connection& c) {
  if (!c.recvArmed) return;
  io_uring_sqe* s = loop_.ring().sqe();
  io_uring_prep_cancel(s, &c.recvOp, 0);
  io_uring_sqe_set_data64(s, 0);
}

void ShardServer::holdInput(Connection& c, const uint8_t* data, size_t n) {
  if (c.heldInput.size() + n > kMaxHeldInput) {
    close(c, CloseReason::kHeldInput);
    return;
  }
  c.heldInput.insert(c.heldInput.end(), data, data + n);
}

// Feeds what was held to the reader (which may pause again part-way: the rest
// is held anew), then reads from the socket again.
void ShardServer::resumeInput(Connection& c) {
  if (!c.inputPaused || c.state == Connection::State::kClosing) return;
  c.inputPaused = false;
  if (!c.heldInput.empty()) {
    std::vector<uint8_t> held;
    held.swap(c.heldInput);
    onBytes(c, held.data(), held.size());
    if (c.heldInput.empty()) {  // keep the capacity for the next pause
      held.clear();
      c.heldInput.swap(held);
    }
  }
  if (c.state != Connection::State::kClosing && !c.inputPaused && !c.recvArmed) armRecv(c);
}

void ShardServer::takeRateLimit(Connection& c, ClientState& client) {
  client.rateGen = shared_.rateLimit->generation();
  client.bucket.reset(shared_.rateLimit->get(), clock_.now());
  const bool limited = client.bucket.config.bytesPerSecond > 0;
  if (limited == c.singleRecv) return;
  c.singleRecv = limited;
  cancelRecv(c);  // re-armed in the new mode
}

void ShardServer::limitRate(Connection& c, ClientState& client, uint32_t length) {
  // A changed -rate-config (SIGHUP) applies to connected clients too, with a
  // full bucket, as derper's UpdateRateLimits.
  if (shared_.rateLimit->generation() != client.rateGen) takeRateLimit(c, client);
  const Nanos now = clock_.now();
  const Nanos wait = client.bucket.take(length, now);
  if (wait == 0) return;
  counters_.rateLimitWaits.add();
  pauseInput(c);
  loop_.timers().arm(c.resume, now + wait);
}

void ShardServer::onResume(Timer*, void* ctx) {
  Connection& c = *static_cast<Connection*>(ctx);
  c.recvOp.server->resumeInput(c);
}

// A frame header is complete: check it against the limits before any of its
// body arrives, and get a buffer for the body if we keep it.
bool ShardServer::startFrame(Connection& c) {
  auto h = derp::decodeFrameHeader({c.reader.hdr, derp::kFrameHeaderLen});
  c.reader.curType = h->type;
  c.reader.curLen = h->length;
  c.reader.bodyHave = 0;
  c.reader.body = nullptr;
  if (c.reader.curLen > derp::kMaxFrameLen) {
    close(c, CloseReason::kFrameTooLarge);
    return false;
  }
  return c.session->startFrame(c);
}

void ShardServer::finishFrame(Connection& c) {
  c.reader.hdrHave = 0;
  PacketBuf* b = c.reader.body;
  c.reader.body = nullptr;
  if (b == nullptr) return;  // skipped
  c.session->onFrame(c, b);
}

// Control frames and HTTP responses come from the pool's reserve when packets
// have filled it: one that cannot be had even so closes the connection
// (no_memory) rather than leave the peer waiting for a frame never sent.
bool ShardServer::queueControl(Connection& c, std::span<const uint8_t> bytes, uint8_t flags) {
  if (c.state == Connection::State::kClosing) return false;
  PacketBuf* b = pool_.allocate(bytes.size(), true);
  if (b == nullptr) {
    close(c, CloseReason::kNoMemory);
    return false;
  }
  std::memcpy(b->data(), bytes.data(), bytes.size());
  b->length = static_cast<uint32_t>(bytes.size());
  b->flags = flags;
  PacketBuf* dropped = c.control.push(b);
  releaseChain(dropped);
  markDirty(c);
  return true;
}

bool ShardServer::queueFrame(Connection& c, const derp::Frame& f, uint8_t flags) {
  if (c.state == Connection::State::kClosing) return false;
  size_t size = derp::encodedFrameSize(f);
  PacketBuf* b = pool_.allocate(size, true);
  if (b == nullptr) {
    close(c, CloseReason::kNoMemory);
    return false;
  }
  b->length = static_cast<uint32_t>(derp::encodeFrame(f, {b->bytes(), size}));
  b->flags = flags;
  releaseChain(c.control.push(b));
  markDirty(c);
  return true;
}

void PlainTransport::fill(Connection& c, size_t pending) {
  if (c.ws != nullptr) {
    fillWebSocket(c, pending, pool_, user_);
    return;
  }
  while (c.writingCount < Connection::kMaxIov && pending < kMaxWriteBytes) {
    PacketBuf* b = popWritable(c);
    if (b == nullptr) break;
    appendToChain(c, b);
    pending += b->length;
  }
}

void ShardServer::markDirty(Connection& c) {
  if (c.inDirtyList) return;
  c.inDirtyList = true;
  dirty_.push_back(c.idx);
}

void ShardServer::flushDirty() {
  for (size_t i = 0; i < dirty_.size(); i++) {
    Connection* c = conns_[dirty_[i]].get();
    if (c == nullptr) continue;
    c->inDirtyList = false;
    if (c->state != Connection::State::kClosing) startWrite(*c);
  }
  dirty_.clear();
}

// Gathers queued frames (control first, then disco, then packets) into the
// chain being written. Returns false when there is nothing to write.
bool ShardServer::gatherWrite(Connection& c) {
  size_t bytes = 0;
  for (PacketBuf* b = c.writing; b != nullptr; b = b->next) bytes += b->length;
  bytes -= c.writeOffset;
  c.transport->fill(c, bytes);
  if (c.writing == nullptr) return false;
  size_t n = 0;
  for (PacketBuf* b = c.writing; b != nullptr && n < Connection::kMaxIov; b = b->next, n++) {
    size_t skip = n == 0 ? c.writeOffset : 0;
    c.iov[n].iov_base = b->bytes() + skip;
    c.iov[n].iov_len = b->length - skip;
  }
  c.msg = msghdr{};
  c.msg.msg_iov = c.iov;
  c.msg.msg_iovlen = n;
  return true;
}

// Writes what is queued. The socket is tried first with a non-blocking
// sendmsg: when it takes the bytes (the common case) we know at once and can
// keep writing in this turn, instead of learning of it from a CQE a turn later.
// Only a socket that is full gets an io_uring sendmsg, which waits for room.
void ShardServer::startWrite(Connection& c) {
  while (!c.sending && c.state != Connection::State::kClosing) {
    if (!gatherWrite(c)) {
      if (c.closeAfterWrite && c.transport->finish(c)) continue;  // TLS close_notify first
      if (c.closeAfterWrite) close(c, c.pendingClose);
      return;
    }
    ssize_t n = ::sendmsg(c.fd, &c.msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      onWritten(c, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      writeFailed(c);
      return;
    }
    io_uring_sqe* s = loop_.ring().sqe();
    io_uring_prep_sendmsg(s, c.fd, &c.msg, MSG_NOSIGNAL);
    IoRing::setCompletion(s, &c.sendOp);
    c.sending = true;
    Nanos timeout = shared_.config.writeTimeout;  // 0: none (derper's meaning)
    if (c.session->meshPeer(c)) timeout = std::max(timeout, kMeshWriteTimeout);
    if (timeout > 0 && !c.writeTimeout.armed()) {
      loop_.timers().arm(c.writeTimeout, clock_.now() + timeout);
    }
  }
}

void ShardServer::writeFailed(Connection& c) {
  // No write owns the chain now (this is a write's failure).
  dropChain(c.writing, DropReason::kWriteError);
  c.writing = c.writingTail = nullptr;
  c.writingCount = 0;
  c.writeOffset = 0;
  close(c, CloseReason::kWriteError);
}

// Releases what the socket took: n bytes from the front of the chain.
void ShardServer::onWritten(Connection& c, size_t n) {
  size_t left = n + c.writeOffset;
  while (c.writing != nullptr && left >= c.writing->length) {
    PacketBuf* b = c.writing;
    left -= b->length;
    c.writing = b->next;
    c.writingCount--;
    countSent(counters_, b);
    releaseBuf(b);
  }
  if (c.writing == nullptr) c.writingTail = nullptr;
  c.writeOffset = left;
  // Progress: the client is reading, so its write deadline starts over.
  loop_.timers().cancel(c.writeTimeout);
}

void ShardServer::onSendDone(Connection& c, int res) {
  c.sending = false;
  if (c.state == Connection::State::kClosing) return;
  if (c.state == Connection::State::kConnecting) {
    c.session->onConnected(c, res);
    return;
  }
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) {
      startWrite(c);
      return;
    }
    writeFailed(c);
    return;
  }
  onWritten(c, static_cast<size_t>(res));
  startWrite(c);
}

}  // namespace derpd::relay
