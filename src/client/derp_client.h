// DerpClient: a blocking DERP client over plain HTTP or TLS (BoringSSL), used
// by derpctl, the benchmarks and the tests.
//
// One object is one connection; it is used from one thread at a time. All
// calls take deadlines so a test can never hang on a broken server.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"

namespace derpd::client {

class ClientTls;

// Debian's bundle of the system's trusted CAs.
inline constexpr const char* kDefaultCaFile = "/etc/ssl/certs/ca-certificates.crt";

struct ClientOptions {
  std::string host = "127.0.0.1";  // IPv4/IPv6 literal or name
  uint16_t port = 0;
  derp::PrivateKey key = derp::PrivateKey::generate();
  // Send Derp-Fast-Start: 1 and expect no HTTP response, only DERP frames.
  bool fastStart = false;
  // The server's key when known in advance (a real client learns it from the
  // TLS meta-cert). With fastStart, the request and the ClientInfo then go out
  // in one write, and the ServerKey frame must carry this key.
  std::optional<derp::NodeKey> serverKey;
  bool canAckPings = true;
  bool isProber = false;
  std::string meshKey;          // 64 hex, empty for none
  std::string extraHeaders;     // raw "Name: value\r\n" lines added to the upgrade
  Nanos timeout = 5 * kSecond;  // connect + handshake deadline; also bounds each write
  int receiveBufferBytes = 0;   // > 0: SO_RCVBUF set before connecting

  // TLS (TLS 1.2 minimum, 1.3 preferred, ALPN http/1.1) before the upgrade.
  bool tls = false;
  // The name sent as SNI and verified; default `host`. An IP literal is sent
  // no SNI and the certificate must name that IP.
  std::string serverName;
  // Accept any certificate (self-signed development servers).
  bool insecure = false;
  // "sha256-raw:<64 hex>" (a derpMap CertName): accept exactly the server
  // whose leaf certificate's DER has this SHA-256, without CA verification.
  std::string pinCertName;
  // PEM bundle of the CAs to verify against, and/or a hashed directory of
  // them (c_rehash).
  std::string caFile = kDefaultCaFile;
  std::string caDir;
  // Over TLS 1.3, when the chain carries derper's meta-cert, take the server
  // key from it and use fast start (as Tailscale's client does).
  bool fastStartFromMetaCert = true;
  // The newest TLS version to offer, as BoringSSL numbers it (0x0303 is TLS
  // 1.2, 0x0304 TLS 1.3); 0 for TLS 1.3. Tests use it to speak TLS 1.2.
  uint16_t maxTlsVersion = 0;
};

// A received frame, owning its body.
struct OwnedFrame {
  uint8_t type = 0;
  std::vector<uint8_t> body;
  derp::FrameType frameType() const { return static_cast<derp::FrameType>(type); }
  // Parses the body with the codec; spans point into this object.
  absl::StatusOr<derp::Frame> parse() const;
};

class DerpClient {
 public:
  // Connects, upgrades /derp, completes the handshake (ServerKey, ClientInfo,
  // ServerInfo). Fails with a message that says which step failed.
  static absl::StatusOr<std::unique_ptr<DerpClient>> connect(const ClientOptions& opts);
  ~DerpClient();

  const derp::NodeKey& publicKey() const { return publicKey_; }
  const derp::NodeKey& serverKey() const { return serverKey_; }
  const derp::ServerInfo& serverInfo() const { return serverInfo_; }
  // The socket, for plain-HTTP benchmarks that do their own I/O; over TLS,
  // bytes read or written on it directly would corrupt the stream.
  int fd() const { return fd_; }

  // "TLSv1.3" or "TLSv1.2"; empty over plain HTTP.
  const std::string& tlsVersion() const { return tlsVersion_; }
  // True when the upgrade request carried Derp-Fast-Start: 1 (asked for, or
  // chosen because of the meta-cert).
  bool usedFastStart() const { return usedFastStart_; }
  // The server key from the TLS 1.3 meta-cert, when the server sent one.
  const std::optional<derp::NodeKey>& metaCertKey() const { return metaCertKey_; }
  // What the server sent in its TLS handshake, leaf first (DER); empty over
  // plain HTTP.
  const std::vector<std::vector<uint8_t>>& peerCertChainDer() const { return peerCertChainDer_; }

  absl::Status sendPacket(const derp::NodeKey& dst, std::span<const uint8_t> payload);
  absl::Status sendPing(const derp::PingData& data);
  absl::Status notePreferred(bool preferred);
  // Writes raw bytes, through TLS when on (for tests that misbehave on purpose).
  absl::Status sendRaw(std::span<const uint8_t> bytes);
  // Reads at least one byte of the DERP stream (decrypted over TLS) into buf:
  // first what the client has buffered, then from the connection. For load
  // generators that parse frames themselves; frames queued during the
  // handshake stay for recv(). DeadlineExceeded on timeout, Unavailable when
  // the server closed the connection.
  absl::StatusOr<size_t> recvRaw(std::span<uint8_t> buf, Nanos timeout);
  // Frees the read and write buffers (kept bytes stay; they grow back when
  // used), so one process can hold many idle connections.
  void releaseBuffers();

  // Next frame within timeout. DeadlineExceeded on timeout; Unavailable when
  // the server closed the connection.
  absl::StatusOr<OwnedFrame> recv(Nanos timeout);
  // Skips frames (KeepAlive, Health, PeerGone, ...) until a RecvPacket arrives;
  // returns its source and payload.
  struct Packet {
    derp::NodeKey src;
    std::vector<uint8_t> payload;
  };
  absl::StatusOr<Packet> recvPacket(Nanos timeout);
  // Sends a random Ping and waits for the Pong echoing it; returns the round
  // trip time. Frames that arrive meanwhile are discarded, RecvPackets
  // included: do not ping while packets are in flight to this client.
  absl::StatusOr<Nanos> ping(Nanos timeout);

  // Sends TLS close_notify (when it does not block) and closes the socket.
  void close();

 private:
  DerpClient();
  absl::Status handshake(const ClientOptions& opts, Nanos deadline);
  // Reads more bytes into rbuf_ (at least one) before the deadline.
  absl::Status fill(Nanos deadline);
  // Reads at least one byte into buf (through TLS when on) before the deadline.
  absl::StatusOr<size_t> readSome(std::span<uint8_t> buf, Nanos deadline);
  absl::Status readResponseHead(Nanos deadline);
  absl::StatusOr<OwnedFrame> readFrame(Nanos deadline);
  absl::Status writeAll(std::span<const uint8_t> bytes, Nanos deadline);
  absl::Status writeFrame(derp::FrameType type, std::span<const uint8_t> prefix,
                          std::span<const uint8_t> body);

  int fd_ = -1;
  std::unique_ptr<ClientTls> tls_;  // null over plain HTTP
  std::string tlsVersion_;
  bool usedFastStart_ = false;
  std::optional<derp::NodeKey> metaCertKey_;
  std::vector<std::vector<uint8_t>> peerCertChainDer_;
  Nanos writeTimeout_ = 5 * kSecond;
  derp::PrivateKey key_;
  derp::NodeKey publicKey_;
  derp::NodeKey serverKey_;
  derp::ServerInfo serverInfo_;
  std::vector<uint8_t> rbuf_;  // rbuf_[rpos_, rend_) read but not yet consumed
  size_t rpos_ = 0;
  size_t rend_ = 0;
  std::vector<uint8_t> wbuf_;  // reused frame encoding buffer
  // Frames that arrived during the handshake before ServerInfo; recv() returns
  // them first.
  std::deque<OwnedFrame> pending_;
};

}  // namespace derpd::client
