#include "relay/box_key_cache.h"

#include <cstring>

namespace derpd::relay {
namespace {

std::array<uint64_t, 4> words(const std::array<uint8_t, 32>& bytes) {
  std::array<uint64_t, 4> w;
  std::memcpy(w.data(), bytes.data(), sizeof(w));
  return w;
}

}  // namespace

BoxKeyCache::BoxKeyCache(size_t slots) : mask_(slots - 1), slots_(new Slot[slots]) {}

size_t BoxKeyCache::index(const derp::NodeKey& key) const {
  // Client keys are curve points chosen by the clients: uniform enough. A
  // client that picks keys to share a slot only evicts its own entries.
  uint64_t h;
  std::memcpy(&h, key.bytes.data(), sizeof(h));
  return static_cast<size_t>(h) & mask_;
}

std::optional<derp::BoxKey> BoxKeyCache::find(const derp::NodeKey& key) const {
  const Slot& s = slots_[index(key)];
  const uint64_t before = s.seq.load(std::memory_order_acquire);
  if (before == 0 || (before & 1) != 0) return std::nullopt;  // empty, or being written
  std::array<uint64_t, 4> k;
  std::array<uint64_t, 4> b;
  for (size_t i = 0; i < 4; i++) {
    k[i] = s.key[i].load(std::memory_order_relaxed);
    b[i] = s.box[i].load(std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s.seq.load(std::memory_order_relaxed) != before || k != words(key.bytes)) {
    return std::nullopt;
  }
  derp::BoxKey out;
  std::memcpy(out.bytes.data(), b.data(), sizeof(b));
  return out;
}

void BoxKeyCache::insert(const derp::NodeKey& key, const derp::BoxKey& box) {
  Slot& s = slots_[index(key)];
  uint64_t seq = s.seq.load(std::memory_order_relaxed);
  if ((seq & 1) != 0 || !s.seq.compare_exchange_strong(seq, seq + 1, std::memory_order_acquire)) {
    return;  // another shard is writing this slot: leave it to it
  }
  std::atomic_thread_fence(std::memory_order_release);
  const std::array<uint64_t, 4> k = words(key.bytes);
  const std::array<uint64_t, 4> b = words(box.bytes);
  for (size_t i = 0; i < 4; i++) {
    s.key[i].store(k[i], std::memory_order_relaxed);
    s.box[i].store(b[i], std::memory_order_relaxed);
  }
  s.seq.store(seq + 2, std::memory_order_release);
}

std::optional<derp::BoxKey> BoxKeyCache::get(const derp::PrivateKey& server,
                                             const derp::NodeKey& key, bool& hit) {
  std::optional<derp::BoxKey> cached = find(key);
  hit = cached.has_value();
  if (hit) return cached;
  std::optional<derp::BoxKey> box = derp::BoxKey::derive(server, key);
  if (box) insert(key, *box);
  return box;
}

}  // namespace derpd::relay
