#include "derp/handshake.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "derp/frame.h"
#include "tests/vectors.h"

namespace derpd::derp {
namespace {

using ::derpd::testing::entries;
using ::derpd::testing::entryBytes;
using ::derpd::testing::findEntry;
using ::derpd::testing::hex;
using ::derpd::testing::loadVectors;
using ::derpd::testing::unhex;
using ::testing::HasSubstr;

PrivateKey privateFromHex(const nlohmann::json& v) {
  PrivateKey k;
  const std::vector<uint8_t> b = unhex(v.get<std::string>());
  EXPECT_EQ(b.size(), kKeyLen);
  std::copy_n(b.begin(), std::min(b.size(), kKeyLen), k.bytes.begin());
  return k;
}

NodeKey publicFromHex(const nlohmann::json& v) {
  return NodeKey::fromSpan(unhex(v.get<std::string>()));
}

Nonce nonceFromHex(const nlohmann::json& v) {
  Nonce n{};
  const std::vector<uint8_t> b = unhex(v.get<std::string>());
  EXPECT_EQ(b.size(), kNonceLen);
  std::copy_n(b.begin(), std::min(b.size(), kNonceLen), n.begin());
  return n;
}

std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string textOf(std::span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

bool isClientInfo(const nlohmann::json& e) {
  return e.at("name").get<std::string>().starts_with("clientinfo_");
}

TEST(HandshakeTest, EveryClientInfoOpensParsesAndReseals) {
  const nlohmann::json doc = loadVectors("handshake.json");
  int checked = 0;
  for (const auto& e : entries(doc)) {
    if (!isClientInfo(e)) continue;
    SCOPED_TRACE(e.at("name").get<std::string>());
    const PrivateKey server = privateFromHex(e.at("server_private_hex"));
    const PrivateKey client = privateFromHex(e.at("client_private_hex"));
    const NodeKey clientPub = publicFromHex(e.at("client_public_hex"));
    const NodeKey serverPub = publicFromHex(e.at("server_public_hex"));
    ASSERT_EQ(client.publicKey(), clientPub);
    ASSERT_EQ(server.publicKey(), serverPub);
    const std::string plaintext = e.at("plaintext_json");
    const std::vector<uint8_t> sealed = entryBytes(e, "box_hex");

    absl::StatusOr<std::vector<uint8_t>> opened = openBox(server, clientPub, sealed);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(textOf(*opened), plaintext);

    // The server's path: frame -> openClientInfo.
    // The decoded frame points into these bytes: they must outlive it.
    const std::vector<uint8_t> frameBytes = entryBytes(e);
    absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(frameBytes);
    ASSERT_TRUE(d.ok() && d->has_value());
    const auto& frame = std::get<ClientInfoFrame>((*d)->frame);
    absl::StatusOr<ClientInfo> info = openClientInfo(server, frame.key, frame.sealed);
    ASSERT_TRUE(info.ok()) << info.status();
    // The same with the shared key derived once, which must be the vector's.
    std::optional<BoxKey> boxKey = BoxKey::derive(server, frame.key);
    ASSERT_TRUE(boxKey.has_value());
    EXPECT_EQ(hex(boxKey->bytes), e.at("shared_key_hex").get<std::string>());
    absl::StatusOr<ClientInfo> viaKey = openClientInfo(*boxKey, frame.sealed);
    ASSERT_TRUE(viaKey.ok()) << viaKey.status();
    EXPECT_EQ(clientInfoJson(*viaKey), plaintext);
    // And the server seals its answer with it exactly as with the key pair.
    const Nonce replyNonce = nonceFromHex(e.at("nonce_hex"));
    EXPECT_EQ(hex(sealBox(*boxKey, bytesOf(plaintext), replyNonce)),
              hex(sealBox(server, clientPub, bytesOf(plaintext), replyNonce)));

    // Fields, from the JSON itself as the Go client wrote it.
    const nlohmann::json j = nlohmann::json::parse(plaintext);
    EXPECT_EQ(info->version, j.value("version", 0));
    EXPECT_EQ(info->meshKey, j.value("meshKey", ""));
    EXPECT_EQ(info->canAckPings, j.value("CanAckPings", false));
    EXPECT_EQ(info->isProber, j.value("IsProber", false));
    EXPECT_EQ(info->appName, j.value("AppName", ""));
    if (e.contains("mesh_key")) {
      EXPECT_EQ(info->meshKey, e.at("mesh_key").get<std::string>());
    }

    // Our client writes the same JSON, and the same box with the same nonce.
    EXPECT_EQ(clientInfoJson(*info), plaintext);
    const Nonce nonce = nonceFromHex(e.at("nonce_hex"));
    EXPECT_EQ(hex(sealBox(client, serverPub, bytesOf(plaintext), nonce)), hex(sealed));
    checked++;
  }
  EXPECT_EQ(checked, 7);
}

TEST(HandshakeTest, EveryServerInfoOpensParsesAndReseals) {
  const nlohmann::json doc = loadVectors("handshake.json");
  int checked = 0;
  for (const auto& e : entries(doc)) {
    if (!e.at("name").get<std::string>().starts_with("serverinfo_")) continue;
    SCOPED_TRACE(e.at("name").get<std::string>());
    const PrivateKey server = privateFromHex(e.at("server_private_hex"));
    const PrivateKey client = privateFromHex(e.at("client_private_hex"));
    const std::string plaintext = e.at("plaintext_json");
    const std::vector<uint8_t> sealed = entryBytes(e, "box_hex");

    absl::StatusOr<std::vector<uint8_t>> opened = openBox(client, server.publicKey(), sealed);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(textOf(*opened), plaintext);

    absl::StatusOr<ServerInfo> info = parseServerInfoJson(textOf(*opened));
    ASSERT_TRUE(info.ok()) << info.status();
    const nlohmann::json j = nlohmann::json::parse(plaintext);
    EXPECT_EQ(info->version, 2);
    EXPECT_EQ(info->tokenBucketBytesPerSecond.has_value(), j.contains("TokenBucketBytesPerSecond"));
    if (info->tokenBucketBytesPerSecond) {
      EXPECT_EQ(*info->tokenBucketBytesPerSecond, j.at("TokenBucketBytesPerSecond").get<int64_t>());
      EXPECT_EQ(*info->tokenBucketBytesBurst, j.at("TokenBucketBytesBurst").get<int64_t>());
    }

    EXPECT_EQ(serverInfoJson(*info), plaintext);
    const Nonce nonce = nonceFromHex(e.at("nonce_hex"));
    EXPECT_EQ(hex(sealBox(server, client.publicKey(), bytesOf(plaintext), nonce)), hex(sealed));
    checked++;
  }
  EXPECT_EQ(checked, 2);
}

TEST(HandshakeTest, DefaultServerInfoIsWhatDerperSends) {
  EXPECT_EQ(serverInfoJson(ServerInfo{}), "{\"version\":2}");
  ServerInfo limited;
  limited.tokenBucketBytesPerSecond = 1 << 20;
  limited.tokenBucketBytesBurst = 2 << 20;
  EXPECT_EQ(serverInfoJson(limited),
            "{\"version\":2,\"TokenBucketBytesPerSecond\":1048576,"
            "\"TokenBucketBytesBurst\":2097152}");
}

TEST(HandshakeTest, RandomNonceSealsAndOpens) {
  const PrivateKey a = PrivateKey::generate();
  const PrivateKey b = PrivateKey::generate();
  ClientInfo ci;
  ci.version = 2;
  ci.canAckPings = true;
  const std::string msg = clientInfoJson(ci);
  const std::vector<uint8_t> s1 = sealBox(a, b.publicKey(), bytesOf(msg));
  const std::vector<uint8_t> s2 = sealBox(a, b.publicKey(), bytesOf(msg));
  ASSERT_EQ(s1.size(), kNonceLen + kBoxOverhead + msg.size());
  EXPECT_NE(hex(s1), hex(s2));  // fresh nonces
  absl::StatusOr<std::vector<uint8_t>> opened = openBox(b, a.publicKey(), s1);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(textOf(*opened), msg);
}

TEST(HandshakeTest, BoxThatDoesNotOpenIsAnError) {
  const nlohmann::json e = findEntry(loadVectors("handshake.json"), "clientinfo_canackpings");
  const PrivateKey server = privateFromHex(e.at("server_private_hex"));
  const NodeKey clientPub = publicFromHex(e.at("client_public_hex"));
  const std::vector<uint8_t> sealed = entryBytes(e, "box_hex");

  for (size_t i : {size_t{0}, kNonceLen, kNonceLen + kBoxOverhead, sealed.size() - 1}) {
    SCOPED_TRACE(i);
    std::vector<uint8_t> bad = sealed;
    bad[i] ^= 1;
    absl::StatusOr<std::vector<uint8_t>> opened = openBox(server, clientPub, bad);
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(std::string(opened.status().message()), HasSubstr("does not open"));
    EXPECT_FALSE(openClientInfo(server, clientPub, bad).ok());
  }
  // Wrong sender key.
  const NodeKey other = PrivateKey::generate().publicKey();
  EXPECT_FALSE(openBox(server, other, sealed).ok());
  // Too short to hold a nonce and a tag.
  absl::StatusOr<std::vector<uint8_t>> shortBox =
      openBox(server, clientPub, std::span(sealed).first(kNonceLen + kBoxOverhead - 1));
  ASSERT_FALSE(shortBox.ok());
  EXPECT_THAT(std::string(shortBox.status().message()), HasSubstr("shorter"));
  // Empty plaintext still has a tag and opens.
  const PrivateKey client = privateFromHex(e.at("client_private_hex"));
  const std::vector<uint8_t> empty = sealBox(client, server.publicKey(), {});
  absl::StatusOr<std::vector<uint8_t>> opened = openBox(server, clientPub, empty);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->empty());
}

TEST(HandshakeTest, LowOrderPeerKeyIsNotSealedTo) {
  EXPECT_TRUE(sealBox(PrivateKey::generate(), NodeKey{}, bytesOf("{}")).empty());
  EXPECT_FALSE(BoxKey::derive(PrivateKey::generate(), NodeKey{}).has_value());
}

TEST(HandshakeTest, ClientInfoKeysMatchCaseInsensitivelyAndUnknownKeysAreIgnored) {
  absl::StatusOr<ClientInfo> info = parseClientInfoJson(
      R"({"VERSION":2,"MeshKey":"abc","canackpings":true,"isPROBER":true,"appname":"x",)"
      R"("Future":{"a":[1,2]},"other":null})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version, 2);
  EXPECT_EQ(info->meshKey, "abc");
  EXPECT_TRUE(info->canAckPings);
  EXPECT_TRUE(info->isProber);
  EXPECT_EQ(info->appName, "x");

  // Everything absent (or null) gives the defaults.
  info = parseClientInfoJson(R"({"version":null})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version, 0);
  EXPECT_TRUE(info->meshKey.empty());
  EXPECT_FALSE(info->canAckPings);

  // As in Go, of two keys naming one field the later wins.
  info = parseClientInfoJson(R"({"version":3,"Version":2})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version, 2);

  absl::StatusOr<ServerInfo> server = parseServerInfoJson(
      R"({"Version":2,"tokenbucketbytespersecond":10,"TOKENBUCKETBYTESBURST":20,"x":"y"})");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(server->version, 2);
  EXPECT_EQ(server->tokenBucketBytesPerSecond, 10);
  EXPECT_EQ(server->tokenBucketBytesBurst, 20);
  server = parseServerInfoJson("{}");
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->version, 0);
  EXPECT_FALSE(server->tokenBucketBytesPerSecond.has_value());
}

TEST(HandshakeTest, BadJsonIsRejected) {
  struct Case {
    const char* json;
    const char* error;
  };
  for (const Case& c : {
           Case{"", "invalid JSON"},
           Case{"{", "invalid JSON"},
           Case{R"({"version":2}x)", "invalid JSON"},
           Case{R"({"version":2,})", "invalid JSON"},
           Case{"[]", "not an object"},
           Case{"null", "not an object"},
           Case{"2", "not an object"},
           Case{R"({"version":"2"})", "version is not an integer"},
           Case{R"({"version":2.5})", "version is not an integer"},
           Case{R"({"version":1e3})", "version is not an integer"},
           Case{R"({"version":99999999999})", "out of range"},
           Case{R"({"meshKey":5})", "meshKey is not a string"},
           Case{R"({"CanAckPings":"true"})", "CanAckPings is not a boolean"},
           Case{R"({"canackpings":1})", "canackpings is not a boolean"},
           Case{R"({"IsProber":{}})", "IsProber is not a boolean"},
           Case{R"({"AppName":[]})", "AppName is not a string"},
       }) {
    SCOPED_TRACE(c.json);
    absl::StatusOr<ClientInfo> info = parseClientInfoJson(c.json);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(info.status().message()), HasSubstr(c.error));
  }
  for (const char* json :
       {"x", "[]", R"({"TokenBucketBytesBurst":"1"})",
        R"({"TokenBucketBytesPerSecond":18446744073709551615})", R"({"version":true})"}) {
    SCOPED_TRACE(json);
    EXPECT_FALSE(parseServerInfoJson(json).ok());
  }
}

TEST(HandshakeTest, BoxedInvalidJsonIsRejected) {
  const PrivateKey server = PrivateKey::generate();
  const PrivateKey client = PrivateKey::generate();
  const std::vector<uint8_t> sealed = sealBox(client, server.publicKey(), bytesOf("not json"));
  absl::StatusOr<ClientInfo> info = openClientInfo(server, client.publicKey(), sealed);
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("invalid JSON"));
}

TEST(HandshakeTest, ClientInfoJsonEscapesLikeGo) {
  ClientInfo info;
  info.version = 2;
  info.appName = "a\"b\\c<d>&\n\x01\xe2\x80\xa8\xff\xc3\xa9";
  EXPECT_EQ(
      clientInfoJson(info),
      R"({"version":2,"CanAckPings":false,"AppName":"a\"b\\c\u003cd\u003e\u0026\n\u0001\u2028\ufffdé"})");
  // And what we write parses back to the same fields.
  info.appName = "tailscaled";
  info.meshKey = std::string(64, 'e');
  info.isProber = true;
  absl::StatusOr<ClientInfo> back = parseClientInfoJson(clientInfoJson(info));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->appName, info.appName);
  EXPECT_EQ(back->meshKey, info.meshKey);
  EXPECT_TRUE(back->isProber);
  EXPECT_EQ(back->version, 2);
}

}  // namespace
}  // namespace derpd::derp
