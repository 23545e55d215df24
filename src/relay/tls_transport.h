// TLS transport (BoringSSL over memory BIOs): the handshake and reads that put
// plaintext where the reader wants it, and the writer that seals queued frames
// into records on the connection's chain of pool buffers. TlsEngine holds what
// a shard's TLS connections share (scratch buffers, spare cipher buffers).
// Internal to src/relay.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "relay/counters.h"
#include "relay/transport.h"
#include "runtime/packet_pool.h"
#include "tls/buffer_bio.h"
#include "tls/server_tls.h"

namespace derpd::relay {

// The most plaintext one TLS record holds: the scratch buffer for TLS input
// that is not a packet body, and the size of each buffer records are sealed into.
constexpr size_t kTlsScratchSize = 16 * 1024;

class TlsTransport;

class TlsEngine {
 public:
  TlsEngine(uint16_t shard, PacketPool& pool, ShardCounters& counters, TransportUser& user);

  // An accepted connection's server side; the handshake runs as bytes arrive.
  std::unique_ptr<TlsTransport> accept(Connection& c, const tls::ServerTls& tls);
  // An outgoing connection's client side, naming `host` (checked when
  // `verify`); startHandshake() sends the ClientHello.
  absl::StatusOr<std::unique_ptr<TlsTransport>> connect(Connection& c, SSL_CTX* ctx,
                                                        std::string_view host, bool verify);

 private:
  friend class TlsTransport;
  std::unique_ptr<TlsTransport> wrap(Connection& c, bssl::UniquePtr<SSL> ssl);

  uint16_t shard_;
  PacketPool& pool_;
  ShardCounters& counters_;
  TransportUser& user_;
  std::unique_ptr<uint8_t[]> scratch_;  // plaintext that is not a packet body
  // Frames joined into one record (not scratch_: sealing may run while a
  // read is still parsing what scratch_ holds).
  std::unique_ptr<uint8_t[]> sealScratch_;
  // Empty 16 KiB pool buffers ensureRoom set aside for the record being
  // sealed; append takes them first. A few at most (a 64 KiB frame's records).
  std::vector<PacketBuf*> spares_;
};

class TlsTransport final : public Transport {
 public:
  TlsTransport(TlsEngine& engine, Connection& c, bssl::UniquePtr<SSL> ssl);

  void onReceived(Connection& c, const uint8_t* data, size_t n) override;
  void fill(Connection& c, size_t pending) override;
  bool finish(Connection& c) override;
  bool encrypted() const override { return true; }

  // A client: writes the ClientHello into the chain.
  void startHandshake();
  // Why the peer's certificate failed verification, or nullptr.
  const char* verifyError() const;

 private:
  void read();
  void stopped(int ret, CloseReason reason);
  bool ensureRoom(size_t plainBytes, bool reserved);
  static bool sink(void* ctx, const uint8_t* data, size_t n);
  bool append(const uint8_t* data, size_t n);

  TlsEngine& engine_;
  Connection& c_;
  bssl::UniquePtr<SSL> ssl_;
  tls::BufferBioState bio_;
  bool ready_ = false;  // handshake complete
  bool closeNotifySent_ = false;
};

}  // namespace derpd::relay
