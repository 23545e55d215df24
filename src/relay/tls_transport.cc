#include "relay/tls_transport.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"
#include "relay/connection.h"
#include "relay/writer.h"
#include "tls/client_context.h"

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

TlsEngine::TlsEngine(uint16_t shard, PacketPool& pool, ShardCounters& counters, TransportUser& user)
    : shard_(shard), pool_(pool), counters_(counters), user_(user) {}

std::unique_ptr<TlsTransport> TlsEngine::wrap(Connection& c, bssl::UniquePtr<SSL> ssl) {
  if (!scratch_) {
    scratch_ = std::make_unique<uint8_t[]>(kTlsScratchSize);
    sealScratch_ = std::make_unique<uint8_t[]>(kTlsScratchSize);
  }
  return std::make_unique<TlsTransport>(*this, c, std::move(ssl));
}

std::unique_ptr<TlsTransport> TlsEngine::accept(Connection& c, const tls::ServerTls& tls) {
  // The handshake runs here, on this shard, as bytes arrive; the BIO reads
  // the receive buffers and writes records into c.writing.
  bssl::UniquePtr<SSL> ssl = tls.newSession();
  SSL_set_accept_state(ssl.get());
  // What only the handshake needs is freed once it is done.
  SSL_set_shed_handshake_config(ssl.get(), 1);
  return wrap(c, std::move(ssl));
}

absl::StatusOr<std::unique_ptr<TlsTransport>> TlsEngine::connect(Connection& c, SSL_CTX* ctx,
                                                                 std::string_view host,
                                                                 bool verify) {
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx));
  if (!ssl) return absl::InternalError("SSL_new failed");
  if (absl::Status st = tls::configureClientSession(ssl.get(), host, verify); !st.ok()) return st;
  SSL_set_connect_state(ssl.get());
  return wrap(c, std::move(ssl));
}

TlsTransport::TlsTransport(TlsEngine& engine, Connection& c, bssl::UniquePtr<SSL> ssl)
    : engine_(engine), c_(c), ssl_(std::move(ssl)) {
  bio_.sink = &TlsTransport::sink;
  bio_.ctx = this;
  BIO* bio = tls::newBufferBio(&bio_);
  SSL_set_bio(ssl_.get(), bio, bio);
}

void TlsTransport::startHandshake() {
  stopped(SSL_do_handshake(ssl_.get()), CloseReason::kTlsHandshake);
}

const char* TlsTransport::verifyError() const {
  long r = SSL_get_verify_result(ssl_.get());
  return r == X509_V_OK ? nullptr : X509_verify_cert_error_string(r);
}

// The receive buffer is BoringSSL's input until it is used up.
void TlsTransport::onReceived(Connection&, const uint8_t* data, size_t n) {
  bio_.in = data;
  bio_.inLen = n;
  if (!ready_) {
    int r = SSL_do_handshake(ssl_.get());
    if (r != 1) {
      stopped(r, CloseReason::kTlsHandshake);
      bio_.inLen = 0;
      return;
    }
    ready_ = true;
    (SSL_version(ssl_.get()) == TLS1_3_VERSION ? engine_.counters_.tls13Handshakes
                                               : engine_.counters_.tls12Handshakes)
        .add();
    // Then the server's last flight (and 1.3 tickets), and anything queued.
    engine_.user_.onTransportReady(c_);
  }
  read();
  bio_.inLen = 0;  // the buffer goes back to the ring; BoringSSL kept what it needs
}

// Reads plaintext where the reader wants it: a frame header, a packet body
// straight into its pool buffer (BoringSSL copies it there from the record it
// opened; nothing copies it again before it is sealed for the destination),
// anything else (HTTP, skipped bodies) through the shard's scratch buffer.
void TlsTransport::read() {
  TransportUser& user = engine_.user_;
  for (;;) {
    if (c_.state == Connection::State::kClosing) return;
    ReadTarget t = user.readTarget(c_);
    uint8_t* dst = t.at != nullptr ? t.at : engine_.scratch_.get();
    size_t max = t.kind == ReadTarget::kAny ? kTlsScratchSize : std::min(t.max, kTlsScratchSize);
    int r = SSL_read(ssl_.get(), dst, static_cast<int>(max));
    if (r <= 0) {
      stopped(r, CloseReason::kTlsError);
      return;
    }
    size_t n = static_cast<size_t>(r);
    if (t.kind == ReadTarget::kAny) {
      user.onPlaintext(c_, dst, n);
    } else if (!user.onReadInto(c_, t.kind, n)) {
      return;
    }
  }
}

// After SSL_do_handshake/SSL_read returned r <= 0: waiting for more bytes is
// not a failure; a clean close_notify is an EOF; anything else closes with
// `reason`.
void TlsTransport::stopped(int ret, CloseReason reason) {
  TransportUser& user = engine_.user_;
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_WANT_READ) {
    if (c_.writing != nullptr) user.wantWrite(c_);  // a handshake flight or alert was produced
    return;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    user.closeConnection(c_, CloseReason::kEof);
    return;
  }
  char text[256];
  ERR_error_string_n(ERR_peek_last_error(), text, sizeof(text));
  logDebug("shard %d: TLS %s: %s", engine_.shard_,
           reason == CloseReason::kTlsHandshake ? "handshake" : "read", text);
  ERR_clear_error();
  // BoringSSL queued an alert for the peer; send it before closing if it fits
  // and no io_uring sendmsg owns the chain (its bytes would go out twice).
  if (c_.writing != nullptr && !c_.sending) {
    ::send(c_.fd, c_.writing->bytes() + c_.writeOffset, c_.writing->length - c_.writeOffset,
           MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  user.closeConnection(c_, reason);
}

// Tells the peer the response is complete before the close.
bool TlsTransport::finish(Connection&) {
  if (!ready_ || closeNotifySent_) return false;
  closeNotifySent_ = true;
  SSL_shutdown(ssl_.get());
  return true;
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
void TlsTransport::fill(Connection& c, size_t pendingBytes) {
  TransportUser& user = engine_.user_;
  ShardCounters& counters = engine_.counters_;
  if (!ready_) return;
  while (pendingBytes < kMaxWriteBytes) {
    PacketBuf* b = nextWritable(c, false);
    if (b == nullptr) return;
    const bool control = !(b->flags & kBufIsPacket);
    // On a WebSocket connection frames go out in a binary message whose
    // header is sealed in front of them; a kBufWsFrame buffer (the 101, a
    // Pong, a Close) is sealed alone, as it is.
    const bool ws = c.ws != nullptr;
    const bool wrap = ws && !(b->flags & kBufWsFrame);
    const size_t headroom = wrap ? http::ws::kMaxServerHeaderLen : 0;
    if (!ensureRoom(headroom + b->length, control)) {
      if (control) {
        user.closeConnection(c, CloseReason::kNoMemory);
        return;
      }
      if (pendingBytes > 0) return;  // the write in flight frees buffers, then seals again
      popWritable(c);
      counters.drop(DropReason::kNoMemory, b->flags & kBufIsDisco);
      user.releaseFrame(b);
      continue;
    }
    popWritable(c);
    const uint8_t* plain = b->bytes();
    size_t n = b->length;
    SealTally tally;
    tally.add(b);
    auto joinable = [&](const PacketBuf* next) {
      return next != nullptr && (!ws || (wrap && !(next->flags & kBufWsFrame))) &&
             headroom + n + next->length <= kTlsScratchSize &&
             ensureRoom(headroom + n + next->length, !(next->flags & kBufIsPacket));
    };
    PacketBuf* next = nextWritable(c, false);
    if (joinable(next) || (wrap && headroom + n <= kTlsScratchSize)) {
      uint8_t* joined = engine_.sealScratch_.get() + headroom;
      std::memcpy(joined, plain, n);
      user.releaseFrame(b);
      b = nullptr;
      while (joinable(next)) {
        popWritable(c);  // `next`
        std::memcpy(joined + n, next->bytes(), next->length);
        n += next->length;
        tally.add(next);
        user.releaseFrame(next);
        next = nextWritable(c, false);
      }
      plain = joined;
      if (wrap) {
        uint8_t header[http::ws::kMaxServerHeaderLen];
        const size_t h = http::ws::encodeServerHeader(header, http::ws::kBinary, n);
        plain = joined - h;
        std::memcpy(joined - h, header, h);
        n += h;
      }
    } else if (wrap) {
      // A frame too large to join: its message header is a record of its own.
      uint8_t header[http::ws::kMaxServerHeaderLen];
      const size_t h = http::ws::encodeServerHeader(header, http::ws::kBinary, n);
      if (SSL_write(ssl_.get(), header, static_cast<int>(h)) <= 0) {
        tally.dropped(counters);
        user.releaseFrame(b);
        ERR_clear_error();
        user.closeConnection(c, CloseReason::kWriteError);
        return;
      }
    }
    size_t before = c.writingTail ? c.writingTail->length : 0;
    PacketBuf* tailBefore = c.writingTail;
    int r = SSL_write(ssl_.get(), plain, static_cast<int>(n));
    if (b != nullptr) user.releaseFrame(b);
    if (r <= 0) {
      // The room was there: this is a dead session. Every packet of the
      // record is lost, joined or not.
      tally.dropped(counters);
      ERR_clear_error();
      user.closeConnection(c, CloseReason::kWriteError);
      return;
    }
    tally.sent(counters);
    // Approximate the record's size from what the sink took.
    pendingBytes += c.writingTail == tailBefore ? c.writingTail->length - before : n + 32;
  }
}

// Makes sure the chain can take `plainBytes` sealed (their records' headers
// and tags included) without the sink allocating: what its last buffer has
// left plus the shard's spare cipher buffers, topped up from the pool (from
// its reserve too when `reserved`). False if the pool cannot give enough.
bool TlsTransport::ensureRoom(size_t plainBytes, bool reserved) {
  const size_t records = std::max<size_t>(1, (plainBytes + kTlsScratchSize - 1) / kTlsScratchSize);
  const size_t need = plainBytes + records * SSL_max_seal_overhead(ssl_.get());
  const PacketBuf* t = c_.writingTail;
  size_t room =
      (t != nullptr ? t->capacity - t->length : 0) + engine_.spares_.size() * kTlsScratchSize;
  while (room < need) {
    PacketBuf* spare = engine_.pool_.allocate(kTlsScratchSize, reserved);
    if (spare == nullptr) return false;
    engine_.spares_.push_back(spare);
    room += kTlsScratchSize;
  }
  return true;
}

bool TlsTransport::sink(void* ctx, const uint8_t* data, size_t n) {
  return static_cast<TlsTransport*>(ctx)->append(data, n);
}

// Appends sealed bytes to the chain being written, filling the last buffer
// before taking another (16 KiB each: a spare that ensureRoom set aside,
// else from the pool, reserve included: what is sealed without a room check
// is the handshake, alerts and close_notify).
bool TlsTransport::append(const uint8_t* data, size_t n) {
  while (n > 0) {
    PacketBuf* t = c_.writingTail;
    if (t == nullptr || t->length == t->capacity) {
      if (!engine_.spares_.empty()) {
        t = engine_.spares_.back();
        engine_.spares_.pop_back();
      } else {
        t = engine_.pool_.allocate(kTlsScratchSize, true);
        if (t == nullptr) return false;
      }
      appendToChain(c_, t);
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
