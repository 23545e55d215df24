// DERP over WebSocket (RFC 6455) on a ShardServer connection, as derper
// serves browsers and clients behind proxies that strip "Upgrade: DERP": the
// client's frames are decoded ahead of the DERP frame reader and the output
// goes out in binary messages. Packet bodies take the same path as raw DERP:
// a payload byte is read (TLS: opened) straight into the frame header or pool
// buffer the frame reader wants and unmasked there, in place; on the way out
// a run of queued frames gets one message header in front, not copied (TLS
// joins them for sealing, as it does for raw DERP).
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"
#include "relay/shard_server.h"
#include "relay/writer.h"

namespace derpd::relay {

namespace ws = http::ws;

ReadTarget ShardServer::wsTarget(Connection& c) {
  ws::Decoder& d = *c.ws;
  switch (d.phase()) {
    case ws::Decoder::Phase::kHeader: {
      std::span<uint8_t> s = d.headerSpace();
      return {ReadTarget::kWsHeader, s.data(), s.size()};
    }
    case ws::Decoder::Phase::kControl: {
      std::span<uint8_t> s = d.controlSpace();
      return {ReadTarget::kWsControl, s.data(), s.size()};
    }
    case ws::Decoder::Phase::kClosed:
      return {};  // after a Close: anything, discarded
    case ws::Decoder::Phase::kData:
      break;
  }
  ReadTarget t = derpTarget(c);
  t.max = static_cast<size_t>(std::min<uint64_t>(t.max, d.dataLeft()));
  return t;
}

bool ShardServer::wsReadInto(Connection& c, ReadTarget::Kind kind, size_t n) {
  ws::Decoder& d = *c.ws;
  switch (kind) {
    case ReadTarget::kWsHeader:
      return onWebSocketEvent(c, d.headerBytes(n));
    case ReadTarget::kWsControl:
      return onWebSocketEvent(c, d.controlBytes(n));
    case ReadTarget::kHeader:
      d.data(c.reader.hdr + c.reader.hdrHave, n);
      break;
    case ReadTarget::kBody:
      d.data(c.reader.body != nullptr
                 ? c.reader.body->bytes() + derp::kFrameHeaderLen + c.reader.bodyHave
                 : nullptr,
             n);
      break;
    case ReadTarget::kAny:
      return true;
  }
  return derpReadInto(c, kind, n);
}

// Plaintext that was not read into a target (the plain transport's receive
// buffers, bytes behind the upgrade request, input held while paused).
void ShardServer::onWebSocketBytes(Connection& c, const uint8_t* data, size_t n) {
  while (n > 0 &&
         (c.state == Connection::State::kDerpHandshake || c.state == Connection::State::kDerp)) {
    if (c.inputPaused) {
      holdInput(c, data, n);
      return;
    }
    ReadTarget t = wsTarget(c);
    if (t.kind == ReadTarget::kAny) return;  // closed: the rest is ignored
    const size_t take = std::min(n, t.max);
    if (t.at != nullptr) std::memcpy(t.at, data, take);
    data += take;
    n -= take;
    if (!wsReadInto(c, t.kind, take)) return;
  }
}

// Ping is answered with a Pong; a Close is answered with a Close carrying its
// code, a violation with a Close carrying ours, and the connection ends once
// that is written (nothing else is sent after it). False: stop reading.
bool ShardServer::onWebSocketEvent(Connection& c, const ws::Event& e) {
  uint8_t out[ws::kMaxServerHeaderLen + ws::kMaxControlPayload];
  switch (e.kind) {
    case ws::Event::kNone:
      return true;
    case ws::Event::kPing: {
      const size_t h = ws::encodeServerHeader(out, ws::kPong, e.payload.size());
      if (!e.payload.empty()) std::memcpy(out + h, e.payload.data(), e.payload.size());
      return queueControl(c, {out, h + e.payload.size()}, kBufWsFrame);
    }
    case ws::Event::kClose:
    case ws::Event::kError: {
      if (e.kind == ws::Event::kError) {
        logDebug("shard %d: WebSocket client broke the protocol (%s); closing with %u", id_, e.why,
                 unsigned{e.code});
      }
      const size_t h = ws::encodeServerHeader(out, ws::kClose, 2);
      out[h] = static_cast<uint8_t>(e.code >> 8);
      out[h + 1] = static_cast<uint8_t>(e.code);
      c.writeControlOnly = true;
      if (!queueControl(c, {out, h + 2}, kBufWsFrame)) return false;
      c.pendingClose =
          e.kind == ws::Event::kClose ? CloseReason::kWebSocketClose : CloseReason::kWebSocketError;
      c.closeAfterWrite = true;
      return false;
    }
  }
  return true;
}

bool fillWebSocket(Connection& c, size_t pending, PacketPool& pool, TransportUser& user) {
  while (c.writingCount + 2 <= Connection::kMaxIov && pending < kMaxWriteBytes) {
    PacketBuf* b = nextWritable(c, false);
    if (b == nullptr) return true;
    if (b->flags & kBufWsFrame) {
      popWritable(c);
      appendToChain(c, b);
      pending += b->length;
      continue;
    }
    PacketBuf* header = pool.allocate(ws::kMaxServerHeaderLen, true);
    if (header == nullptr) {
      user.closeConnection(c, CloseReason::kNoMemory);
      return false;
    }
    appendToChain(c, header);
    uint64_t length = 0;
    for (;;) {
      PacketBuf* f = nextWritable(c, false);
      if (f == nullptr || (f->flags & kBufWsFrame) || c.writingCount >= Connection::kMaxIov ||
          pending + length >= kMaxWriteBytes) {
        break;
      }
      popWritable(c);
      appendToChain(c, f);
      length += f->length;
    }
    header->length =
        static_cast<uint32_t>(ws::encodeServerHeader(header->bytes(), ws::kBinary, length));
    pending += header->length + length;
  }
  return true;
}

}  // namespace derpd::relay
