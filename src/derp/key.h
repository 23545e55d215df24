// Curve25519 node keys as Tailscale writes them.
//
// NodeKey is a public key ("nodekey:<64 hex>"); PrivateKey is its secret
// ("privkey:<64 hex>"). Private key bytes are used as given (not clamped):
// X25519 clamps internally, as libsodium and Go do. Value types; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace derpd::derp {

constexpr size_t kKeyLen = 32;

struct NodeKey {
  std::array<uint8_t, kKeyLen> bytes{};

  static NodeKey fromSpan(std::span<const uint8_t> b);  // b.size() must be 32
  // Accepts "nodekey:<hex>" or bare 64 hex chars.
  static std::optional<NodeKey> parse(std::string_view text);
  std::string hex() const;       // 64 lowercase hex
  std::string toString() const;  // "nodekey:<hex>"
  bool isZero() const;

  friend bool operator==(const NodeKey&, const NodeKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const NodeKey& k) {
    return H::combine_contiguous(std::move(h), k.bytes.data(), k.bytes.size());
  }
};

struct PrivateKey {
  std::array<uint8_t, kKeyLen> bytes{};

  static PrivateKey generate();  // random, from libsodium
  // Accepts "privkey:<hex>" only.
  static std::optional<PrivateKey> parse(std::string_view text);
  NodeKey publicKey() const;     // X25519 base point multiplication
  std::string toString() const;  // "privkey:<hex>"
};

}  // namespace derpd::derp
