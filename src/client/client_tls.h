// ClientTls: the client side of TLS on a DerpClient's socket (BoringSSL).
//
// It runs the handshake on an already connected non-blocking socket, checks
// the server as ClientOptions asks (CA verification of the name or IP, a
// "sha256-raw:" pin of the leaf, or nothing), and then carries the DERP bytes.
// Waits poll the socket against the caller's deadlines. One object per
// connection, used from one thread; it borrows the socket, which must outlive
// it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "derp/key.h"

namespace derpd::client {

struct ClientOptions;

// derper's meta-cert (PROTOCOL.md "Connection setup" 4): a certificate in the
// chain whose subject CN is "derpkey<server public key hex>" and whose serial
// is the protocol version.
struct MetaCert {
  derp::NodeKey serverKey;
  int protocolVersion = 0;
};

// The first meta-cert in a chain of DER certificates, as Tailscale's client
// looks for it: the CN must carry a valid key and the serial must fit in
// 8 bits and not be zero; other certificates (and unparsable ones) are skipped.
std::optional<MetaCert> findMetaCert(std::span<const std::vector<uint8_t>> chainDer);

// Parses a derpMap CertName pin, "sha256-raw:<64 hex>", into the digest.
absl::StatusOr<std::array<uint8_t, 32>> parseCertNamePin(std::string_view certName);

class ClientTls {
 public:
  // Handshakes on `fd` using opts.tls* settings (serverName, insecure,
  // pinCertName, caFile) and opts.host. Errors say what failed, e.g. which
  // verification check and why.
  static absl::StatusOr<std::unique_ptr<ClientTls>> handshake(int fd, const ClientOptions& opts,
                                                              Nanos deadline);
  ~ClientTls();
  ClientTls(const ClientTls&) = delete;
  ClientTls& operator=(const ClientTls&) = delete;

  // Reads at least one decrypted byte into buf. Unavailable when the server
  // closed the connection, DeadlineExceeded on timeout.
  absl::StatusOr<size_t> read(std::span<uint8_t> buf, Nanos deadline);
  // Writes all of bytes (as one TLS record per 16 KiB).
  absl::Status write(std::span<const uint8_t> bytes, Nanos deadline);
  // Sends close_notify if that does not block; the object is then unusable.
  void shutdown();

  // "TLSv1.3" or "TLSv1.2".
  const std::string& version() const { return version_; }
  bool isTls13() const { return isTls13_; }
  // The certificates the server sent, leaf first, as DER.
  const std::vector<std::vector<uint8_t>>& peerChainDer() const { return peerChainDer_; }
  // The meta-cert when the connection is TLS 1.3 and the chain has one (as in
  // Tailscale's client, an older TLS version never uses it).
  const std::optional<MetaCert>& metaCert() const { return metaCert_; }

 private:
  struct State;
  explicit ClientTls(int fd);
  // Waits as SSL_get_error(ret) asks; an error when it is not a want-read/write.
  absl::Status waitAfter(int ret, Nanos deadline, std::string_view what);

  int fd_;
  std::unique_ptr<State> state_;  // the SSL_CTX and SSL (kept out of this header)
  std::string version_;
  bool isTls13_ = false;
  std::vector<std::vector<uint8_t>> peerChainDer_;
  std::optional<MetaCert> metaCert_;
};

}  // namespace derpd::client
