// Raw sockets for integration tests: a blocking TCP connection with deadlines,
// a tiny HTTP/1.1 client, and the pieces of a hand-made DERP handshake for
// tests that misbehave on purpose. Every wait is bounded. One thread per
// object.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "base/unique_fd.h"
#include "derp/frame.h"
#include "derp/key.h"

namespace derpd::testing {

constexpr Nanos kIoTimeout = 5 * kSecond;

class TcpConn {
 public:
  // Connects to 127.0.0.1:port (from sourceIp, e.g. "127.0.0.2", when given).
  // receiveBufferBytes > 0 sets SO_RCVBUF first.
  static absl::StatusOr<TcpConn> connect(uint16_t port, int receiveBufferBytes = 0,
                                         const char* sourceIp = nullptr);

  int fd() const { return fd_.get(); }

  absl::Status writeAll(std::span<const uint8_t> bytes, Nanos timeout = kIoTimeout);
  absl::Status writeAll(std::string_view bytes, Nanos timeout = kIoTimeout);

  // Appends at least one byte to the buffer; Unavailable at EOF or reset.
  absl::Status fill(Nanos deadline);
  // Bytes received and not consumed yet; consume() removes a prefix.
  std::string& buffered() { return buffered_; }
  void consume(size_t n) { buffered_.erase(0, n); }
  absl::StatusOr<std::string> readExact(size_t n, Nanos timeout = kIoTimeout);
  // Reads (and keeps) bytes until the peer closes (EOF or reset); returns all
  // of them. DeadlineExceeded if the connection is still open at the timeout.
  absl::StatusOr<std::string> readUntilClose(Nanos timeout);
  // Ok once the peer has closed within timeout (data before that discarded).
  absl::Status expectClosed(Nanos timeout);

 private:
  explicit TcpConn(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::string buffered_;
};

struct HttpResponse {
  int status = 0;
  std::string statusLine;
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent
  std::string body;
  // First header with this name (case-insensitive), or empty.
  std::string header(std::string_view name) const;
  bool hasHeader(std::string_view name) const;
};

// Reads one response from conn: the head, then a Content-Length body, a
// chunked body, or (with neither) everything until the connection closes.
// noBody: the request was HEAD (no body whatever the headers say).
// Status line and headers of a response head (without its blank line).
absl::StatusOr<HttpResponse> parseResponseHead(const std::string& head);

absl::StatusOr<HttpResponse> readHttpResponse(TcpConn& conn, bool noBody = false,
                                              Nanos timeout = kIoTimeout);

// One request on a fresh connection: GET path with Connection: close.
absl::StatusOr<HttpResponse> httpGet(uint16_t port, std::string_view path,
                                     std::string_view extraHeaders = "",
                                     Nanos timeout = kIoTimeout);
// Writes rawRequest on a fresh connection and reads one response.
absl::StatusOr<HttpResponse> httpExchange(uint16_t port, std::string_view rawRequest,
                                          Nanos timeout = kIoTimeout);

// A plain upgrade request, as DerpClient sends it.
std::string derpUpgradeRequest(uint16_t port, bool fastStart = false);

// Sends the upgrade request on conn (with `pipelined` behind it in the same
// write) and reads the 101 head and the ServerKey frame; returns the server's
// key. Bytes after the ServerKey stay buffered.
absl::StatusOr<derp::NodeKey> rawUpgrade(TcpConn& conn, uint16_t port, Nanos timeout = kIoTimeout,
                                         std::span<const uint8_t> pipelined = {});

struct RawFrame {
  uint8_t type = 0;
  std::string body;
};
// Reads one DERP frame from conn (after rawUpgrade).
absl::StatusOr<RawFrame> readRawFrame(TcpConn& conn, Nanos timeout = kIoTimeout);

// A frame header claiming any length (the body is up to the caller).
std::vector<uint8_t> frameHeaderBytes(uint8_t type, uint32_t length);
// A whole frame: header and body.
std::vector<uint8_t> frameBytes(uint8_t type, std::span<const uint8_t> body);
// A ClientInfo frame: our public key, then nonce || box(plaintext).
std::vector<uint8_t> clientInfoFrameBytes(const derp::PrivateKey& key,
                                          const derp::NodeKey& serverKey,
                                          std::string_view plaintext);

std::span<const uint8_t> asBytes(std::string_view s);

// Moves this process into a network namespace of its own with its loopback
// up (children inherit it): there ports such as 443 are free whatever this
// machine runs. Empty on success, else why not (for a skip).
std::string enterOwnNetworkNamespace();

}  // namespace derpd::testing
