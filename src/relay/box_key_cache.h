// BoxKeyCache: the DERP handshake's X25519 result (crypto_box_beforenm of the
// server's key and the client's) per client key, for clients that reconnect:
// a reconnect storm after a network blip costs one X25519 less per client.
// Shared by every shard (a reconnect lands on any shard: SO_REUSEPORT hashes
// the new source port), bounded (direct-mapped, a newer key overwrites its
// slot), lock-free: each slot is a seqlock, readers retry nothing (a slot
// being written reads as a miss) and a writer that finds its slot taken by
// another writer skips it. Low-order keys never get here (BoxKey::derive
// refuses them). Any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "derp/handshake.h"
#include "derp/key.h"

namespace derpd::relay {

class BoxKeyCache {
 public:
  explicit BoxKeyCache(size_t slots);  // a power of two
  std::optional<derp::BoxKey> find(const derp::NodeKey& key) const;
  void insert(const derp::NodeKey& key, const derp::BoxKey& box);
  // The client's BoxKey: from the cache (hit set), or derived and remembered.
  // nullopt for a key BoxKey::derive refuses.
  std::optional<derp::BoxKey> get(const derp::PrivateKey& server, const derp::NodeKey& key,
                                  bool& hit);
  size_t slots() const { return mask_ + 1; }

 private:
  // Words are atomics so that a read racing a write is a data race in no
  // one's model; the sequence number says whether what was read is whole.
  struct alignas(64) Slot {
    std::atomic<uint64_t> seq{0};  // odd while being written
    std::array<std::atomic<uint64_t>, 4> key{};
    std::array<std::atomic<uint64_t>, 4> box{};
  };
  size_t index(const derp::NodeKey& key) const;

  size_t mask_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace derpd::relay
