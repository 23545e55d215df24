#include "tls/server_tls.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <string>
#include <vector>

#include "tests/tls/test_pki.h"

namespace derpd::tls {
namespace {

using ::derpd::testing::KeyKind;
using ::derpd::testing::TempDir;

constexpr int64_t kNow = 1767225600;  // 2026-01-01T00:00:00Z
constexpr std::string_view kServerPublicHex =
    "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";

std::vector<uint8_t> bytesOf(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }
std::vector<uint8_t> bufferBytes(const CRYPTO_BUFFER* b) {
  return {CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_data(b) + CRYPTO_BUFFER_len(b)};
}

bssl::UniquePtr<CRYPTO_BUFFER> metaCert() {
  std::array<uint8_t, 32> seed{};
  seed[31] = 1;
  auto meta = makeMetaCert(kServerPublicHex, seed, kNow - 86400, kNow + 86400);
  EXPECT_TRUE(meta.ok()) << meta.status();
  return meta.ok() ? std::move(*meta) : nullptr;
}

CertifiedKey selfSignedIp(const std::string& ip) {
  auto cert = generateSelfSignedIp(ip, kNow);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(*cert);
}

// A self-signed certificate from the openssl tool for the given SANs.
CertifiedKey opensslCert(const TempDir& dir, const std::string& stem, const std::string& san,
                         KeyKind kind = KeyKind::kEcSec1) {
  const std::string key = dir.file(stem + ".key");
  const std::string crt = dir.file(stem + ".crt");
  EXPECT_TRUE(testing::genKey(key, kind));
  EXPECT_TRUE(testing::selfSignedCert(dir, key, crt, stem, san));
  auto cert = loadPemFiles(crt, key);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(*cert);
}

std::shared_ptr<const CertSet> setOf(std::vector<CertifiedKey> certs,
                                     bssl::UniquePtr<CRYPTO_BUFFER> meta) {
  auto set = std::make_shared<CertSet>();
  set->certs = std::move(certs);
  set->metaCert = std::move(meta);
  return set;
}

std::unique_ptr<ServerTls> makeServer(std::shared_ptr<const CertSet> set) {
  auto tls = ServerTls::create(std::move(set));
  EXPECT_TRUE(tls.ok()) << tls.status();
  return tls.ok() ? std::move(*tls) : nullptr;
}

// A client and a server session joined by an in-memory BIO pair.
struct Connection {
  bssl::UniquePtr<SSL_CTX> clientCtx;
  bssl::UniquePtr<SSL> client;
  bssl::UniquePtr<SSL> server;

  // The peer chain the client received, in order.
  std::vector<std::vector<uint8_t>> serverChain() const {
    std::vector<std::vector<uint8_t>> out;
    const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(client.get());
    for (size_t i = 0; chain != nullptr && i < sk_CRYPTO_BUFFER_num(chain); i++) {
      out.push_back(bufferBytes(sk_CRYPTO_BUFFER_value(chain, i)));
    }
    return out;
  }
  std::string alpn() const {
    const uint8_t* data = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(client.get(), &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
  }
};

bool progressed(SSL* ssl, int rc) {
  if (rc == 1) return true;
  const int err = SSL_get_error(ssl, rc);
  return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

// Runs the handshake to completion; a failure on either side fails the test.
Connection connect(const ServerTls& tls, const char* sni = nullptr,
                   uint16_t maxVersion = TLS1_3_VERSION, std::vector<std::string> alpn = {}) {
  Connection c;
  c.clientCtx.reset(SSL_CTX_new(TLS_method()));
  EXPECT_TRUE(SSL_CTX_set_max_proto_version(c.clientCtx.get(), maxVersion));
  if (!alpn.empty()) {
    std::string wire;
    for (const std::string& p : alpn) wire += static_cast<char>(p.size()) + p;
    // Returns zero on success, unlike nearly everything else.
    EXPECT_EQ(SSL_CTX_set_alpn_protos(c.clientCtx.get(),
                                      reinterpret_cast<const uint8_t*>(wire.data()), wire.size()),
              0);
  }
  c.client.reset(SSL_new(c.clientCtx.get()));
  c.server = tls.newSession();
  EXPECT_TRUE(c.client && c.server);
  SSL_set_connect_state(c.client.get());
  SSL_set_accept_state(c.server.get());
  if (sni != nullptr) {
    EXPECT_TRUE(SSL_set_tlsext_host_name(c.client.get(), sni));
  }
  BIO* clientBio = nullptr;
  BIO* serverBio = nullptr;
  EXPECT_TRUE(BIO_new_bio_pair(&clientBio, 0, &serverBio, 0));
  SSL_set_bio(c.client.get(), clientBio, clientBio);
  SSL_set_bio(c.server.get(), serverBio, serverBio);

  bool clientDone = false;
  bool serverDone = false;
  for (int round = 0; round < 32 && !(clientDone && serverDone); round++) {
    if (!clientDone) {
      const int rc = SSL_do_handshake(c.client.get());
      EXPECT_TRUE(progressed(c.client.get(), rc))
          << "client: " << ERR_reason_error_string(ERR_peek_error());
      clientDone = rc == 1;
    }
    if (!serverDone) {
      const int rc = SSL_do_handshake(c.server.get());
      EXPECT_TRUE(progressed(c.server.get(), rc))
          << "server: " << ERR_reason_error_string(ERR_peek_error());
      serverDone = rc == 1;
    }
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_TRUE(clientDone && serverDone);
  return c;
}

// Sends `msg` from `from` and reads it at `to`.
void exchange(SSL* from, SSL* to, const std::string& msg) {
  ASSERT_EQ(SSL_write(from, msg.data(), static_cast<int>(msg.size())),
            static_cast<int>(msg.size()));
  std::string got(msg.size(), '\0');
  ASSERT_EQ(SSL_read(to, got.data(), static_cast<int>(got.size())), static_cast<int>(msg.size()));
  EXPECT_EQ(got, msg);
}

std::vector<std::vector<uint8_t>> expectedChain(const CertifiedKey& cert,
                                                const CRYPTO_BUFFER* meta) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& der : cert.chain) out.push_back(bufferBytes(der.get()));
  if (meta != nullptr) out.push_back(bufferBytes(meta));
  return out;
}

TEST(ServerTls, CreateRejectsAnEmptySet) {
  EXPECT_FALSE(ServerTls::create(nullptr).ok());
  EXPECT_FALSE(ServerTls::create(std::make_shared<CertSet>()).ok());
}

TEST(ServerTls, Tls13HandshakeSendsLeafThenMetaCert) {
  std::vector<CertifiedKey> certs;
  certs.push_back(selfSignedIp("127.0.0.1"));
  auto set = setOf(std::move(certs), metaCert());
  auto tls = makeServer(set);
  ASSERT_TRUE(tls);
  Connection c = connect(*tls);
  EXPECT_EQ(SSL_version(c.client.get()), TLS1_3_VERSION);
  EXPECT_EQ(c.serverChain(), expectedChain(set->certs[0], set->metaCert.get()));
  EXPECT_EQ(c.serverChain().size(), 2u);
  exchange(c.client.get(), c.server.get(), "GET /derp HTTP/1.1\r\n");
  exchange(c.server.get(), c.client.get(), "HTTP/1.1 101 Switching Protocols\r\n");
}

TEST(ServerTls, Tls12HandshakeWithIntermediate) {
  TempDir dir;
  const testing::TestChain chain = testing::makeChain(dir, "DNS:chain.example.com");
  const std::string bundle = dir.file("bundle.crt");
  testing::writeText(bundle,
                     testing::readText(chain.leafCrt) + testing::readText(chain.intermediateCrt));
  auto cert = loadPemFiles(bundle, chain.leafKey);
  ASSERT_TRUE(cert.ok()) << cert.status();
  std::vector<CertifiedKey> certs;
  certs.push_back(std::move(*cert));
  auto set = setOf(std::move(certs), metaCert());
  auto tls = makeServer(set);
  ASSERT_TRUE(tls);

  Connection c = connect(*tls, "chain.example.com", TLS1_2_VERSION);
  EXPECT_EQ(SSL_version(c.client.get()), TLS1_2_VERSION);
  const auto got = c.serverChain();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got, expectedChain(set->certs[0], set->metaCert.get()));
  EXPECT_EQ(got[1], testing::pemCertsDer(testing::readText(chain.intermediateCrt)).at(0));
  exchange(c.client.get(), c.server.get(), "ping");
  exchange(c.server.get(), c.client.get(), "pong");
}

TEST(ServerTls, RsaCertificateBothVersions) {
  TempDir dir;
  std::vector<CertifiedKey> certs;
  certs.push_back(opensslCert(dir, "rsa", "DNS:rsa.example.com", KeyKind::kRsaPkcs1));
  auto set = setOf(std::move(certs), metaCert());
  auto tls = makeServer(set);
  ASSERT_TRUE(tls);
  for (uint16_t version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    Connection c = connect(*tls, "rsa.example.com", version);
    EXPECT_EQ(SSL_version(c.client.get()), version);
    EXPECT_EQ(c.serverChain(), expectedChain(set->certs[0], set->metaCert.get()));
  }
}

TEST(ServerTls, NoMetaCertMeansJustTheChain) {
  std::vector<CertifiedKey> certs;
  certs.push_back(selfSignedIp("127.0.0.1"));
  auto set = setOf(std::move(certs), nullptr);
  auto tls = makeServer(set);
  ASSERT_TRUE(tls);
  Connection c = connect(*tls);
  EXPECT_EQ(c.serverChain(), expectedChain(set->certs[0], nullptr));
}

TEST(ServerTls, SniSelectsTheCertificate) {
  TempDir dir;
  std::vector<CertifiedKey> certs;
  certs.push_back(opensslCert(dir, "a", "DNS:a.example.com"));
  certs.push_back(opensslCert(dir, "b", "DNS:*.b.example.com"));
  auto set = setOf(std::move(certs), metaCert());
  auto tls = makeServer(set);
  ASSERT_TRUE(tls);
  const auto leafA = bytesOf(set->certs[0].leafDer());
  const auto leafB = bytesOf(set->certs[1].leafDer());

  struct Case {
    const char* sni;
    const std::vector<uint8_t>* want;
  };
  for (const Case& tc : {Case{"a.example.com", &leafA}, Case{"x.b.example.com", &leafB},
                         Case{"X.B.Example.COM", &leafB}, Case{"b.example.com", &leafA},
                         Case{"unknown.example.org", &leafA}, Case{nullptr, &leafA}}) {
    SCOPED_TRACE(tc.sni != nullptr ? tc.sni : "(no SNI)");
    for (uint16_t version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      Connection c = connect(*tls, tc.sni, version);
      const auto chain = c.serverChain();
      ASSERT_EQ(chain.size(), 2u);
      EXPECT_EQ(chain[0], *tc.want);
      EXPECT_EQ(chain[1], bufferBytes(set->metaCert.get()));
    }
  }
}

TEST(CertSet, SelectFirstMatchElseDefault) {
  TempDir dir;
  auto set = std::make_shared<CertSet>();
  set->certs.push_back(opensslCert(dir, "one", "DNS:one.example.com"));
  set->certs.push_back(opensslCert(dir, "two", "DNS:two.example.com,DNS:*.example.com"));
  set->certs.push_back(opensslCert(dir, "three", "DNS:three.example.com"));
  EXPECT_EQ(&set->select("one.example.com"), &set->certs[0]);
  EXPECT_EQ(&set->select("TWO.example.com"), &set->certs[1]);
  // The wildcard in the second comes before the exact name in the third.
  EXPECT_EQ(&set->select("three.example.com"), &set->certs[1]);
  EXPECT_EQ(&set->select("a.b.example.com"), &set->certs[0]);
  EXPECT_EQ(&set->select(""), &set->certs[0]);
}

TEST(ServerTls, AlpnOnlyEverHttp11) {
  std::vector<CertifiedKey> certs;
  certs.push_back(selfSignedIp("127.0.0.1"));
  auto tls = makeServer(setOf(std::move(certs), metaCert()));
  ASSERT_TRUE(tls);
  for (uint16_t version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    EXPECT_EQ(connect(*tls, nullptr, version, {"h2", "http/1.1"}).alpn(), "http/1.1");
    EXPECT_EQ(connect(*tls, nullptr, version, {"http/1.1"}).alpn(), "http/1.1");
    EXPECT_EQ(connect(*tls, nullptr, version, {"h2"}).alpn(), "");
    EXPECT_EQ(connect(*tls, nullptr, version).alpn(), "");
  }
}

TEST(ServerTls, RefusesTls11) {
  std::vector<CertifiedKey> certs;
  certs.push_back(selfSignedIp("127.0.0.1"));
  auto tls = makeServer(setOf(std::move(certs), metaCert()));
  ASSERT_TRUE(tls);
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  ASSERT_TRUE(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_VERSION));
  ASSERT_TRUE(SSL_CTX_set_max_proto_version(ctx.get(), TLS1_1_VERSION));
  bssl::UniquePtr<SSL> client(SSL_new(ctx.get()));
  bssl::UniquePtr<SSL> server = tls->newSession();
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());
  BIO* cb = nullptr;
  BIO* sb = nullptr;
  ASSERT_TRUE(BIO_new_bio_pair(&cb, 0, &sb, 0));
  SSL_set_bio(client.get(), cb, cb);
  SSL_set_bio(server.get(), sb, sb);
  bool serverFailed = false;
  for (int i = 0; i < 8 && !serverFailed; i++) {
    SSL_do_handshake(client.get());
    const int rc = SSL_do_handshake(server.get());
    serverFailed = !progressed(server.get(), rc);
  }
  ERR_clear_error();
  EXPECT_TRUE(serverFailed);
}

TEST(ServerTls, ReplaceCertsAffectsNewHandshakesOnly) {
  std::vector<CertifiedKey> first;
  first.push_back(selfSignedIp("127.0.0.1"));
  auto firstSet = setOf(std::move(first), metaCert());
  first.clear();
  auto tls = makeServer(firstSet);
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->earliestNotAfterUnix(), kNow + 365 * 86400);

  Connection before = connect(*tls);
  EXPECT_EQ(before.serverChain()[0], bytesOf(firstSet->certs[0].leafDer()));

  std::vector<CertifiedKey> second;
  second.push_back(selfSignedIp("127.0.0.1"));
  auto secondSet = setOf(std::move(second), metaCert());
  tls->replaceCerts(secondSet);
  EXPECT_EQ(tls->certs(), secondSet);
  firstSet.reset();  // only the live session may still hold on to the old key

  Connection after = connect(*tls);
  EXPECT_EQ(after.serverChain()[0], bytesOf(secondSet->certs[0].leafDer()));
  EXPECT_NE(after.serverChain()[0], before.serverChain()[0]);

  // The session from before the swap carries on.
  exchange(before.client.get(), before.server.get(), "still here");
  exchange(before.server.get(), before.client.get(), "and so am I");
  exchange(after.client.get(), after.server.get(), "new");
}

TEST(ServerTls, EarliestNotAfterIsTheMinimum) {
  std::vector<CertifiedKey> certs;
  auto late = generateSelfSignedIp("127.0.0.1", kNow + 1000);
  auto early = generateSelfSignedIp("127.0.0.2", kNow);
  ASSERT_TRUE(late.ok() && early.ok());
  certs.push_back(std::move(*late));
  certs.push_back(std::move(*early));
  auto tls = makeServer(setOf(std::move(certs), metaCert()));
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->earliestNotAfterUnix(), kNow + 365 * 86400);

  std::vector<CertifiedKey> later;
  auto only = generateSelfSignedIp("127.0.0.1", kNow + 5000);
  ASSERT_TRUE(only.ok());
  later.push_back(std::move(*only));
  tls->replaceCerts(setOf(std::move(later), nullptr));
  EXPECT_EQ(tls->earliestNotAfterUnix(), kNow + 5000 + 365 * 86400);
}

}  // namespace
}  // namespace derpd::tls
