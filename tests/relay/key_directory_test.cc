#include "relay/key_directory.h"

#include <gtest/gtest.h>

namespace derpd::relay {
namespace {

derp::NodeKey key(uint8_t b) {
  derp::NodeKey k;
  k.bytes.fill(b);
  return k;
}

TEST(KeyDirectoryTest, AddLookupRemove) {
  KeyDirectory d;
  EXPECT_EQ(d.lookup(key(1)), nullptr);
  auto c = d.add(key(1), {0, 5, 1});
  EXPECT_FALSE(c.oldActive);
  EXPECT_EQ(c.instances, 1u);
  ASSERT_NE(d.lookup(key(1)), nullptr);
  EXPECT_EQ(*d.lookup(key(1)), (ConnRef{0, 5, 1}));
  c = d.remove(key(1), {0, 5, 1});
  EXPECT_EQ(c.instances, 0u);
  EXPECT_FALSE(c.newActive);
  EXPECT_EQ(d.lookup(key(1)), nullptr);
  EXPECT_EQ(d.size(), 0u);
}

TEST(KeyDirectoryTest, DuplicatesMostRecentIsActive) {
  KeyDirectory d;
  d.add(key(7), {0, 1, 1});
  auto c = d.add(key(7), {1, 2, 1});
  EXPECT_EQ(c.instances, 2u);
  EXPECT_EQ(*c.oldActive, (ConnRef{0, 1, 1}));
  EXPECT_EQ(*d.lookup(key(7)), (ConnRef{1, 2, 1}));
  c = d.activate(key(7), {0, 1, 1});
  EXPECT_EQ(*c.oldActive, (ConnRef{1, 2, 1}));
  EXPECT_EQ(*d.lookup(key(7)), (ConnRef{0, 1, 1}));
  // Removing the active one falls back to the other.
  c = d.remove(key(7), {0, 1, 1});
  EXPECT_EQ(c.instances, 1u);
  EXPECT_EQ(*d.lookup(key(7)), (ConnRef{1, 2, 1}));
  // Removing an unknown instance changes nothing.
  c = d.remove(key(7), {3, 3, 3});
  EXPECT_EQ(c.instances, 1u);
  EXPECT_EQ(*d.lookup(key(7)), (ConnRef{1, 2, 1}));
  // Activating an unknown key is a no-op.
  c = d.activate(key(9), {0, 0, 0});
  EXPECT_EQ(c.instances, 0u);
  EXPECT_EQ(d.lookup(key(9)), nullptr);
}

TEST(KeyDirectoryTest, StaleGenerationIsADifferentInstance) {
  KeyDirectory d;
  d.add(key(2), {0, 4, 1});
  d.remove(key(2), {0, 4, 2});  // a later connection in the same slot
  ASSERT_NE(d.lookup(key(2)), nullptr);
  EXPECT_EQ(d.lookup(key(2))->gen, 1u);
}

TEST(KeyDirectoryTest, ManyKeys) {
  KeyDirectory d;
  for (int i = 0; i < 1000; i++) {
    derp::NodeKey k;
    k.bytes[0] = static_cast<uint8_t>(i);
    k.bytes[1] = static_cast<uint8_t>(i >> 8);
    d.add(k, {static_cast<uint16_t>(i % 2), static_cast<uint32_t>(i), 1});
  }
  EXPECT_EQ(d.size(), 1000u);
  derp::NodeKey k;
  k.bytes[0] = 0xe7;
  k.bytes[1] = 0x03;
  ASSERT_NE(d.lookup(k), nullptr);
  EXPECT_EQ(d.lookup(k)->idx, 999u);
}

}  // namespace
}  // namespace derpd::relay
