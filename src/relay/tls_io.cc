// ShardServer's TLS path (BoringSSL over memory BIOs): the handshake and
// reads that put plaintext where it belongs, and the writer that seals queued
// frames into records on the connection's chain of pool buffers.
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"
#include "relay/shard_server.h"
#include "relay/writer.h"

namespace derpd::relay {
namespace {

// The packets sealed into one TLS record, counted once SSL_write has taken
// it (sent) or failed (dropped): their buffers are released before that.
struct SealTally {
  uint32_t packets = 0;
  uint32_t disco = 0;
  uint64_t bytes = 0;
  void add(const PacketBuf* b) {
    if (!(b->flags & kBufIsPacket)) return;
    packets++;
    if (b->flags & kBufIsDisco) disco++;
    bytes += payloadBytes(b);
  }
  void sent(ShardCounters& counters) const {
    counters.packetsSent.add(packets);
    counters.bytesSent.add(bytes);
  }
  void dropped(ShardCounters& counters) const {
    for (uint32_t i = 0; i < packets; i++) counters.drop(DropReason::kWriteError, i < disco);
  }
};

}  // namespace

// TLS input: the receive buffer is BoringSSL's input until it is used up.
void ShardServer::onTlsBytes(Connection& c, const uint8_t* data, size_t n) {
  c.bio.in = data;
  c.bio.inLen = n;
  if (!c.tlsReady) {
    int r = SSL_do_handshake(c.ssl.get());
    if (r != 1) {
      onTlsStopped(c, r, CloseReason::kTlsHandshake);
      c.bio.inLen = 0;
      return;
    }
    c.tlsReady = true;
    (SSL_version(c.ssl.get()) == TLS1_3_VERSION ? counters_.tls13Handshakes
                                                : counters_.tls12Handshakes)
        .add();
    if (c.meshLink >= 0) queueLinkRequest(c);
    markDirty(c);  // the server's last flight (and 1.3 tickets), and anything queued
  }
  readTls(c);
  c.bio.inLen = 0;  // the buffer goes back to the ring; BoringSSL kept what it needs
}

// Reads plaintext where it belongs: a frame header into c.hdr, a packet body
// straight into its pool buffer (BoringSSL copies it there from the record it
// opened; nothing copies it again before it is sealed for the destination),
// anything else (HTTP, skipped bodies) through the shard's scratch buffer.
void ShardServer::readTls(Connection& c) {
  using State = Connection::State;
  for (;;) {
    if (c.state == State::kClosing) return;
    const bool derp = c.state == State::kDerpHandshake || c.state == State::kDerp;
    uint8_t* dst = tlsScratch_.get();
    size_t max = kTlsScratchSize;
    enum { kHeader, kBody, kOther } into = kOther;
    if (derp && c.hdrHave < derp::kFrameHeaderLen) {
      dst = c.hdr + c.hdrHave;
      max = derp::kFrameHeaderLen - c.hdrHave;
      into = kHeader;
    } else if (derp) {
      max = std::min<size_t>(max, c.curLen - c.bodyHave);
      if (c.body != nullptr) dst = c.body->bytes() + derp::kFrameHeaderLen + c.bodyHave;
      into = kBody;
    }
    int r = SSL_read(c.ssl.get(), dst, static_cast<int>(max));
    if (r <= 0) {
      onTlsStopped(c, r, CloseReason::kTlsError);
      return;
    }
    size_t n = static_cast<size_t>(r);
    switch (into) {
      case kHeader:
        c.hdrHave = static_cast<uint8_t>(c.hdrHave + n);
        if (c.hdrHave < derp::kFrameHeaderLen) break;
        if (!startFrame(c)) return;
        if (c.curLen == 0) finishFrame(c);
        break;
      case kBody:
        c.bodyHave += static_cast<uint32_t>(n);
        if (c.bodyHave == c.curLen) finishFrame(c);
        break;
      case kOther:
        onBytes(c, dst, n);
        break;
    }
  }
}

// After SSL_do_handshake/SSL_read returned r <= 0: waiting for more bytes is
// not a failure; a clean close_notify is an EOF; anything else closes with
// `reason`.
void ShardServer::onTlsStopped(Connection& c, int ret, CloseReason reason) {
  int err = SSL_get_error(c.ssl.get(), ret);
  if (err == SSL_ERROR_WANT_READ) {
    if (c.writing != nullptr) markDirty(c);  // a handshake flight or alert was produced
    return;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    close(c, CloseReason::kEof);
    return;
  }
  char text[256];
  ERR_error_string_n(ERR_peek_last_error(), text, sizeof(text));
  logDebug("shard %d: TLS %s: %s", id_, reason == CloseReason::kTlsHandshake ? "handshake" : "read",
           text);
  ERR_clear_error();
  // BoringSSL queued an alert for the peer; send it before closing if it fits
  // and no io_uring sendmsg owns the chain (its bytes would go out twice).
  if (c.writing != nullptr && !c.sending) {
    ::send(c.fd, c.writing->bytes() + c.writeOffset, c.writing->length - c.writeOffset,
           MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  close(c, reason);
}

// TLS output: seals queued frames into c.writing (through the BIO's sink)
// until 256 KiB wait for the socket; they are written together by one
// sendmsg. Frames queued back to back share a record (up to 16 KiB of them,
// copied together first): a record's fixed costs (BoringSSL's buffer, the
// AEAD's setup and tag, the header) are paid once for a burst instead of once
// per packet. Nothing waits for more: only what is already queued is joined.
// A frame is released as soon as it is sealed.
//
// The chain's room for a record is secured before its frames are taken, so a
// pool at its cap never fails an SSL_write halfway (which would end the
// session): a packet that finds no room waits for the write in flight to free
// buffers, or, with nothing in flight, is dropped (no_memory); a control
// frame draws on the pool's reserve.
void ShardServer::sealQueued(Connection& c, size_t pendingBytes) {
  if (!c.tlsReady) return;
  while (pendingBytes < kMaxWriteBytes) {
    PacketBuf* b = nextWritable(c, false);
    if (b == nullptr) return;
    const bool control = !(b->flags & kBufIsPacket);
    if (!ensureCipherRoom(c, b->length, control)) {
      if (control) {
        close(c, CloseReason::kNoMemory);
        return;
      }
      if (pendingBytes > 0) return;  // the write in flight frees buffers, then seals again
      popWritable(c);
      counters_.drop(DropReason::kNoMemory, b->flags & kBufIsDisco);
      releaseBuf(b);
      continue;
    }
    popWritable(c);
    const uint8_t* plain = b->bytes();
    size_t n = b->length;
    SealTally tally;
    tally.add(b);
    auto joinable = [&](const PacketBuf* next) {
      return next != nullptr && n + next->length <= kTlsScratchSize &&
             ensureCipherRoom(c, n + next->length, !(next->flags & kBufIsPacket));
    };
    PacketBuf* next = nextWritable(c, false);
    if (joinable(next)) {
      uint8_t* joined = sealScratch_.get();
      std::memcpy(joined, plain, n);
      releaseBuf(b);
      b = nullptr;
      do {
        popWritable(c);  // `next`
        std::memcpy(joined + n, next->bytes(), next->length);
        n += next->length;
        tally.add(next);
        releaseBuf(next);
        next = nextWritable(c, false);
      } while (joinable(next));
      plain = joined;
    }
    size_t before = c.writingTail ? c.writingTail->length : 0;
    PacketBuf* tailBefore = c.writingTail;
    int r = SSL_write(c.ssl.get(), plain, static_cast<int>(n));
    if (b != nullptr) releaseBuf(b);
    if (r <= 0) {
      // The room was there: this is a dead session. Every packet of the
      // record is lost, joined or not.
      tally.dropped(counters_);
      ERR_clear_error();
      close(c, CloseReason::kWriteError);
      return;
    }
    tally.sent(counters_);
    // Approximate the record's size from what the sink took.
    pendingBytes += c.writingTail == tailBefore ? c.writingTail->length - before : n + 32;
  }
}

// Makes sure the chain can take `plainBytes` sealed (their records' headers
// and tags included) without the sink allocating: what its last buffer has
// left plus the shard's spare cipher buffers, topped up from the pool (from
// its reserve too when `reserved`). False if the pool cannot give enough.
bool ShardServer::ensureCipherRoom(Connection& c, size_t plainBytes, bool reserved) {
  const size_t records = std::max<size_t>(1, (plainBytes + kTlsScratchSize - 1) / kTlsScratchSize);
  const size_t need = plainBytes + records * SSL_max_seal_overhead(c.ssl.get());
  const PacketBuf* t = c.writingTail;
  size_t room =
      (t != nullptr ? t->capacity - t->length : 0) + cipherSpares_.size() * kTlsScratchSize;
  while (room < need) {
    PacketBuf* spare = pool_.allocate(kTlsScratchSize, reserved);
    if (spare == nullptr) return false;
    cipherSpares_.push_back(spare);
    room += kTlsScratchSize;
  }
  return true;
}

bool ShardServer::cipherSink(void* ctx, const uint8_t* data, size_t n) {
  auto* c = static_cast<Connection*>(ctx);
  return c->recvOp.server->appendCipher(*c, data, n);
}

// Appends sealed bytes to the chain being written, filling the last buffer
// before taking another (16 KiB each: a spare that ensureCipherRoom set aside,
// else from the pool, reserve included: what is sealed without a room check
// is the handshake, alerts and close_notify).
bool ShardServer::appendCipher(Connection& c, const uint8_t* data, size_t n) {
  while (n > 0) {
    PacketBuf* t = c.writingTail;
    if (t == nullptr || t->length == t->capacity) {
      if (!cipherSpares_.empty()) {
        t = cipherSpares_.back();
        cipherSpares_.pop_back();
      } else {
        t = pool_.allocate(kTlsScratchSize, true);
        if (t == nullptr) return false;
      }
      appendToChain(c, t);
    }
    size_t take = std::min<size_t>(n, t->capacity - t->length);
    std::memcpy(t->data() + t->length, data, take);
    t->length += static_cast<uint32_t>(take);
    data += take;
    n -= take;
  }
  return true;
}

}  // namespace derpd::relay
