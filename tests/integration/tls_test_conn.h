// TlsTestConn: a raw BoringSSL client connection for the TLS integration
// tests that need to reach below DerpClient: HTTPS requests (derpd's /metrics
// is on the TLS port when TLS is on) and records damaged on purpose after a
// real handshake. It accepts any server certificate (the tests check what was
// sent themselves). Non-blocking socket, every wait bounded; one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"

namespace derpd::testing {

class TlsTestConn {
 public:
  struct Options {
    std::string serverName;   // SNI; empty sends none
    uint16_t maxVersion = 0;  // 0: TLS 1.3
  };
  // Connects to 127.0.0.1:port and completes the handshake.
  static absl::StatusOr<std::unique_ptr<TlsTestConn>> connect(uint16_t port, const Options& opts,
                                                              Nanos timeout = kIoTimeout);
  ~TlsTestConn();
  TlsTestConn(const TlsTestConn&) = delete;
  TlsTestConn& operator=(const TlsTestConn&) = delete;

  // "TLSv1.3" or "TLSv1.2".
  std::string version() const;
  // The server's chain, leaf first (DER).
  std::vector<std::vector<uint8_t>> peerChainDer() const;

  absl::Status write(std::string_view plaintext, Nanos timeout = kIoTimeout);
  // Decrypted bytes until the server closes (close_notify, EOF or reset).
  absl::StatusOr<std::string> readUntilClose(Nanos timeout = kIoTimeout);

  // Encrypts plaintext as one application-data record and sends it with one
  // ciphertext byte flipped, so the server's decryption must fail.
  absl::Status writeCorruptedRecord(std::string_view plaintext);
  // Writes bytes on the socket itself, bypassing TLS.
  absl::Status writeRaw(std::string_view bytes) { return tcp_.writeAll(bytes); }
  // Ok once the server has closed the TCP connection (whatever it sent before).
  absl::Status expectClosed(Nanos timeout) { return tcp_.expectClosed(timeout); }

 private:
  struct State;
  explicit TlsTestConn(TcpConn tcp);
  absl::Status waitAfter(int ret, Nanos deadline);

  TcpConn tcp_;
  std::unique_ptr<State> state_;
};

// GET path over TLS (SNI serverName) with Connection: close; the whole
// response, parsed.
absl::StatusOr<HttpResponse> httpsGet(uint16_t port, std::string_view path,
                                      const std::string& serverName = "");
// derpd's /metrics over TLS. Each scrape is one TLS handshake.
absl::StatusOr<std::vector<MetricSample>> scrapeMetricsTls(uint16_t port);

}  // namespace derpd::testing
