// The DERP handshake's boxed messages (PROTOCOL.md "Handshake").
//
// ClientInfo and ServerInfo bodies are nonce(24) || crypto_box_easy(JSON),
// sealed between the client's and the server's Curve25519 keys. JSON keys are
// matched case-insensitively and unknown keys are ignored, as Go does. Pure
// functions (libsodium); any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "derp/key.h"

namespace derpd::derp {

constexpr size_t kNonceLen = 24;
constexpr size_t kBoxOverhead = 16;
using Nonce = std::array<uint8_t, kNonceLen>;

struct ClientInfo {
  int version = 0;
  std::string meshKey;  // 64 hex, empty when absent
  bool canAckPings = false;
  bool isProber = false;
  std::string appName;
};

struct ServerInfo {
  int version = 2;
  std::optional<int64_t> tokenBucketBytesPerSecond;
  std::optional<int64_t> tokenBucketBytesBurst;
};

// nonce || crypto_box_easy(plaintext) from `self` to `peer`. The nonce is
// random unless given.
std::vector<uint8_t> sealBox(const PrivateKey& self, const NodeKey& peer,
                             std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce = std::nullopt);
// Opens nonce || box sent by `peer` to `self`. Error when too short or the box
// does not open.
absl::StatusOr<std::vector<uint8_t>> openBox(const PrivateKey& self, const NodeKey& peer,
                                             std::span<const uint8_t> sealed);

// The X25519 shared key of a (self, peer) pair (crypto_box_beforenm): the
// expensive half of a box. The server derives it once per handshake and uses
// it to open the ClientInfo and to seal the ServerInfo.
struct BoxKey {
  std::array<uint8_t, 32> bytes{};
  // nullopt for a low-order peer key (libsodium refuses it: the secret would be zero).
  static std::optional<BoxKey> derive(const PrivateKey& self, const NodeKey& peer);
};
std::vector<uint8_t> sealBox(const BoxKey& key, std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce = std::nullopt);
absl::StatusOr<std::vector<uint8_t>> openBox(const BoxKey& key, std::span<const uint8_t> sealed);

// JSON (de)serialisation. Parsing rejects invalid JSON and a non-object; any
// field may be absent; keys match case-insensitively.
absl::StatusOr<ClientInfo> parseClientInfoJson(std::string_view json);
std::string clientInfoJson(const ClientInfo& info);  // Go client field names/order
absl::StatusOr<ServerInfo> parseServerInfoJson(std::string_view json);
std::string serverInfoJson(const ServerInfo& info);  // {"version":2} plus set fields

// Convenience for the server: open a ClientInfo frame's sealed part and parse it.
absl::StatusOr<ClientInfo> openClientInfo(const PrivateKey& server, const NodeKey& client,
                                          std::span<const uint8_t> sealed);
absl::StatusOr<ClientInfo> openClientInfo(const BoxKey& key, std::span<const uint8_t> sealed);

}  // namespace derpd::derp
