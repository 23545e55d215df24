#include "derp/key.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>

#include "base/hex.h"

namespace derpd::derp {
namespace {

constexpr std::string_view kNodeKeyPrefix = "nodekey:";
constexpr std::string_view kPrivateKeyPrefix = "privkey:";

// sodium_init() picks the fastest implementations and seeds the RNG; it is
// idempotent and thread-safe, and the static makes us pay for it only once.
void ensureSodium() {
  static const bool ready = sodium_init() >= 0;
  // Without a working RNG we would hand out predictable keys: refuse to run.
  if (!ready) std::abort();
}

}  // namespace

NodeKey NodeKey::fromSpan(std::span<const uint8_t> b) {
  // A wrong length here is a caller bug (frame parsing sizes its spans), so
  // crash rather than produce a truncated key.
  if (b.size() != kKeyLen) std::abort();
  NodeKey k;
  std::memcpy(k.bytes.data(), b.data(), kKeyLen);
  return k;
}

std::optional<NodeKey> NodeKey::parse(std::string_view text) {
  if (text.starts_with(kNodeKeyPrefix)) text.remove_prefix(kNodeKeyPrefix.size());
  NodeKey k;
  if (!hexDecodeInto(text, k.bytes)) return std::nullopt;
  return k;
}

std::string NodeKey::hex() const { return hexEncode(bytes); }

std::string NodeKey::toString() const { return std::string(kNodeKeyPrefix) + hex(); }

bool NodeKey::isZero() const {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

PrivateKey PrivateKey::generate() {
  ensureSodium();
  PrivateKey k;
  randombytes_buf(k.bytes.data(), k.bytes.size());
  // Clamp as Go's key.NewNode does, so a key file we write looks like one
  // derper writes. X25519 clamps anyway, so this changes no public key.
  k.bytes[0] &= 248;
  k.bytes[31] &= 127;
  k.bytes[31] |= 64;
  return k;
}

std::optional<PrivateKey> PrivateKey::parse(std::string_view text) {
  if (!text.starts_with(kPrivateKeyPrefix)) return std::nullopt;
  text.remove_prefix(kPrivateKeyPrefix.size());
  PrivateKey k;
  if (!hexDecodeInto(text, k.bytes)) return std::nullopt;
  return k;
}

NodeKey PrivateKey::publicKey() const {
  ensureSodium();
  NodeKey pub;
  // The base point is never a low-order point, so this cannot fail.
  crypto_scalarmult_base(pub.bytes.data(), bytes.data());
  return pub;
}

std::string PrivateKey::toString() const {
  return std::string(kPrivateKeyPrefix) + hexEncode(bytes);
}

}  // namespace derpd::derp
