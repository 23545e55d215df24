#include "relay/box_key_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace derpd::relay {
namespace {

using derp::BoxKey;
using derp::NodeKey;
using derp::PrivateKey;

TEST(BoxKeyCacheTest, RemembersWhatItDerived) {
  BoxKeyCache cache(64);
  const PrivateKey server = PrivateKey::generate();
  const NodeKey client = PrivateKey::generate().publicKey();
  EXPECT_FALSE(cache.find(client).has_value());
  bool hit = true;
  std::optional<BoxKey> first = cache.get(server, client, hit);
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(hit);
  EXPECT_EQ(first->bytes, BoxKey::derive(server, client)->bytes);
  std::optional<BoxKey> again = cache.get(server, client, hit);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(hit);
  EXPECT_EQ(again->bytes, first->bytes);
  // Another key is not answered from this one's slot.
  EXPECT_FALSE(cache.find(PrivateKey::generate().publicKey()).has_value());
}

TEST(BoxKeyCacheTest, ASlotHoldsTheNewerKey) {
  BoxKeyCache cache(1);  // every key shares the one slot
  const PrivateKey server = PrivateKey::generate();
  const NodeKey a = PrivateKey::generate().publicKey();
  const NodeKey b = PrivateKey::generate().publicKey();
  bool hit = false;
  ASSERT_TRUE(cache.get(server, a, hit).has_value());
  ASSERT_TRUE(cache.get(server, b, hit).has_value());
  EXPECT_FALSE(cache.find(a).has_value());
  ASSERT_TRUE(cache.find(b).has_value());
  EXPECT_EQ(cache.find(b)->bytes, BoxKey::derive(server, b)->bytes);
}

TEST(BoxKeyCacheTest, LowOrderKeysAreRefusedAndNotRemembered) {
  BoxKeyCache cache(64);
  const NodeKey zero{};  // the identity point: X25519 gives all zeros
  bool hit = true;
  EXPECT_FALSE(cache.get(PrivateKey::generate(), zero, hit).has_value());
  EXPECT_FALSE(hit);
  EXPECT_FALSE(cache.find(zero).has_value());
}

// Shards share the cache: whatever a reader finds while others write the
// same slots is a whole entry, the right box for the key it asked about.
TEST(BoxKeyCacheTest, ConcurrentReadersNeverSeeATornEntry) {
  BoxKeyCache cache(8);  // few slots: constant collisions
  const PrivateKey server = PrivateKey::generate();
  std::vector<NodeKey> keys;
  std::vector<BoxKey> boxes;
  for (int i = 0; i < 32; i++) {
    keys.push_back(PrivateKey::generate().publicKey());
    boxes.push_back(*BoxKey::derive(server, keys.back()));
  }
  std::atomic<int> wrong{0};
  std::atomic<int> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; i++) {
        const size_t k = static_cast<size_t>(i * 7 + t * 13) % keys.size();
        if (i % 3 == 0) {
          cache.insert(keys[k], boxes[k]);
        } else if (std::optional<BoxKey> b = cache.find(keys[k])) {
          hits.fetch_add(1, std::memory_order_relaxed);
          if (b->bytes != boxes[k].bytes) wrong.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0);
}

}  // namespace
}  // namespace derpd::relay
