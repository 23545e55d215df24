// DerpClient: a blocking DERP client over plain HTTP, used by derpctl, the
// benchmarks and the tests.
//
// One object is one connection; it is used from one thread at a time. All
// calls take deadlines so a test can never hang on a broken server.
#pragma once

#include <cstdint>
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
  bool fastStart = false;    // send Derp-Fast-Start: 1 and ClientInfo at once
  bool canAckPings = true;
  bool isProber = false;
  std::string meshKey;       // 64 hex, empty for none
  std::string extraHeaders;  // raw "Name: value\r\n" lines added to the upgrade
  Nanos timeout = 5 * kSecond;  // connect + handshake deadline
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
  // Sends a Ping and waits for the matching Pong; returns the round trip time.
  absl::StatusOr<Nanos> ping(Nanos timeout);

  void close();

 private:
  DerpClient() = default;
  absl::Status readExact(uint8_t* out, size_t n, Nanos deadline);
  absl::Status writeAll(std::span<const uint8_t> bytes);

  int fd_ = -1;
  derp::PrivateKey key_;
  derp::NodeKey publicKey_;
  derp::NodeKey serverKey_;
  derp::ServerInfo serverInfo_;
  std::vector<uint8_t> rbuf_;  // bytes read but not yet consumed
  size_t rpos_ = 0;
};

}  // namespace derpd::client
