#include "derp/key.h"

#include <gtest/gtest.h>

#include "tests/vectors.h"

namespace derpd::derp {
namespace {

using ::derpd::testing::findEntry;
using ::derpd::testing::loadVectors;
using ::derpd::testing::unhex;

PrivateKey privateFromHex(const std::string& hex) {
  PrivateKey k;
  const std::vector<uint8_t> b = unhex(hex);
  EXPECT_EQ(b.size(), kKeyLen);
  std::copy_n(b.begin(), std::min(b.size(), kKeyLen), k.bytes.begin());
  return k;
}

TEST(KeyTest, PublicKeysDeriveFromPrivateKeys) {
  const nlohmann::json doc = loadVectors("keys.json");
  int checked = 0;
  for (const char* name : {"server_key", "client_key", "peer_key"}) {
    SCOPED_TRACE(name);
    const nlohmann::json e = findEntry(doc, name);
    const PrivateKey priv = privateFromHex(e.at("private_hex"));
    const NodeKey pub = priv.publicKey();
    EXPECT_EQ(pub.hex(), e.at("public_hex").get<std::string>());
    EXPECT_EQ(pub.toString(), e.at("public_nodekey").get<std::string>());
    EXPECT_EQ(priv.toString(), e.at("private_text").get<std::string>());
    checked++;
  }
  EXPECT_EQ(checked, 3);
}

TEST(KeyTest, TextRoundTrips) {
  const nlohmann::json e = findEntry(loadVectors("keys.json"), "client_key");
  const std::string privText = e.at("private_text");
  std::optional<PrivateKey> priv = PrivateKey::parse(privText);
  ASSERT_TRUE(priv.has_value());
  EXPECT_EQ(priv->toString(), privText);

  const std::string pubText = e.at("public_nodekey");
  std::optional<NodeKey> pub = NodeKey::parse(pubText);
  ASSERT_TRUE(pub.has_value());
  EXPECT_EQ(pub->toString(), pubText);
  EXPECT_EQ(*pub, priv->publicKey());

  // Bare hex is accepted too, in either case.
  std::optional<NodeKey> bare = NodeKey::parse(e.at("public_hex").get<std::string>());
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(*bare, *pub);
  std::string upper = e.at("public_hex");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(NodeKey::parse(upper), pub);
}

TEST(KeyTest, ParseRejectsMalformedText) {
  const std::string hex64(64, 'a');
  EXPECT_FALSE(NodeKey::parse("").has_value());
  EXPECT_FALSE(NodeKey::parse("nodekey:" + hex64.substr(2)).has_value());
  EXPECT_FALSE(NodeKey::parse("nodekey:" + hex64 + "00").has_value());
  EXPECT_FALSE(NodeKey::parse("nodekey:" + hex64.substr(1) + "g").has_value());
  EXPECT_FALSE(NodeKey::parse("privkey:" + hex64).has_value());
  EXPECT_FALSE(PrivateKey::parse(hex64).has_value());  // prefix required
  EXPECT_FALSE(PrivateKey::parse("nodekey:" + hex64).has_value());
  EXPECT_FALSE(PrivateKey::parse("privkey:" + hex64.substr(2)).has_value());
  EXPECT_TRUE(PrivateKey::parse("privkey:" + hex64).has_value());
}

TEST(KeyTest, GenerateGivesDistinctClampedKeys) {
  const PrivateKey a = PrivateKey::generate();
  const PrivateKey b = PrivateKey::generate();
  EXPECT_NE(a.bytes, b.bytes);
  EXPECT_EQ(a.bytes[0] & 7, 0);
  EXPECT_EQ(a.bytes[31] & 0xc0, 0x40);
  EXPECT_FALSE(a.publicKey().isZero());
  EXPECT_NE(a.publicKey(), b.publicKey());
}

TEST(KeyTest, ZeroAndFromSpan) {
  EXPECT_TRUE(NodeKey{}.isZero());
  std::array<uint8_t, kKeyLen> raw{};
  raw[31] = 1;
  const NodeKey k = NodeKey::fromSpan(raw);
  EXPECT_FALSE(k.isZero());
  EXPECT_EQ(k.bytes, raw);
}

}  // namespace
}  // namespace derpd::derp
