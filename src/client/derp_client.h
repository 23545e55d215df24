// DerpClient: a blocking DERP client over plain HTTP, used by derpctl, the
// benchmarks and the tests.
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
  int fd() const { return fd_; }

  absl::Status sendPacket(const derp::NodeKey& dst, std::span<const uint8_t> payload);
  absl::Status sendPing(const derp::PingData& data);
  absl::Status notePreferred(bool preferred);
  // Writes raw bytes (for tests that misbehave on purpose).
  absl::Status sendRaw(std::span<const uint8_t> bytes);

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

  void close();

 private:
  DerpClient() = default;
  absl::Status handshake(const ClientOptions& opts, Nanos deadline);
  // Reads more bytes into rbuf_ (at least one) before the deadline.
  absl::Status fill(Nanos deadline);
  absl::Status readResponseHead(Nanos deadline);
  absl::StatusOr<OwnedFrame> readFrame(Nanos deadline);
  absl::Status writeAll(std::span<const uint8_t> bytes, Nanos deadline);
  absl::Status writeFrame(derp::FrameType type, std::span<const uint8_t> prefix,
                          std::span<const uint8_t> body);

  int fd_ = -1;
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
