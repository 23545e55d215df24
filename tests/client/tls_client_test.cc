// The client's TLS against a BoringSSL DERP server run in the test
// (TestTlsServer): versions, the three ways of checking the server (CA, pin,
// insecure), and derper's meta-cert leading to fast start over TLS 1.3 only.
// Certificates are made per run by the openssl command-line tool in a
// temporary directory.
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/hex.h"
#include "client/client_tls.h"
#include "client/derp_client.h"
#include "client/test_tls_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vectors.h"

namespace derpd::client {
namespace {

using derpd::testing::TestTlsServer;
using derpd::testing::TestTlsServerConfig;
using derpd::testing::TestTlsServerReport;
using ::testing::HasSubstr;

// Runs `openssl <args>` in dir; fails the test with its output when it fails.
bool runOpenssl(const std::string& dir, const std::string& args) {
  std::string cmd = absl::StrCat("cd '", dir, "' && openssl ", args, " > openssl.log 2>&1");
  if (std::system(cmd.c_str()) == 0) return true;
  std::ifstream log(dir + "/openssl.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  ADD_FAILURE() << "openssl " << args << " failed:\n" << text;
  return false;
}

std::vector<uint8_t> leafDer(const std::string& pemFile) {
  bssl::UniquePtr<BIO> bio(BIO_new_file(pemFile.c_str(), "r"));
  bssl::UniquePtr<X509> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)
                                 : nullptr);
  if (!cert) return {};
  uint8_t* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  std::vector<uint8_t> out(der, der + std::max(len, 0));
  OPENSSL_free(der);
  return out;
}

// The DERP test vectors' fixed server key (bytes 01..20), whose public key
// the vector meta-cert names.
derp::PrivateKey vectorServerKey() {
  derp::PrivateKey k;
  for (size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<uint8_t>(i + 1);
  return k;
}

class TlsClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(sodium_init(), 0);
    char tmpl[] = "/tmp/tls_client_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    {
      std::ofstream ext(*dir_ + "/leaf.ext");
      ext << "subjectAltName=DNS:derp.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
             "extendedKeyUsage=serverAuth\n";
    }
    ASSERT_TRUE(runOpenssl(*dir_, absl::StrCat("req -x509 ", ec,
                                               " -keyout ca.key -out ca.crt -days 2"
                                               " -subj /CN=derpd-test-ca")));
    ASSERT_TRUE(runOpenssl(*dir_, absl::StrCat("req -x509 ", ec,
                                               " -keyout other-ca.key -out other-ca.crt -days 2"
                                               " -subj /CN=derpd-other-ca")));
    ASSERT_TRUE(runOpenssl(*dir_, absl::StrCat("req ", ec,
                                               " -keyout leaf.key -out leaf.csr"
                                               " -subj /CN=derp.test")));
    ASSERT_TRUE(runOpenssl(*dir_,
                           "x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -set_serial 7"
                           " -days 2 -extfile leaf.ext -out leaf.crt"));
    metaCertDer_ = new std::vector<uint8_t>(derpd::testing::unhex(
        derpd::testing::findEntry(derpd::testing::loadVectors("metacert.json"),
                                  "metacert_deterministic")
            .at("hex")
            .get<std::string>()));
  }

  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete metaCertDer_;
  }

  static std::string path(const std::string& name) { return *dir_ + "/" + name; }

  std::unique_ptr<TestTlsServer> startServer(uint16_t maxVersion, bool withMetaCert) {
    TestTlsServerConfig config;
    config.certChainFile = path("leaf.crt");
    config.keyFile = path("leaf.key");
    if (withMetaCert) config.extraChainCertDer = *metaCertDer_;
    config.maxVersion = maxVersion;
    config.serverKey = vectorServerKey();
    return std::make_unique<TestTlsServer>(config);
  }

  static ClientOptions tlsOptions(const TestTlsServer& server) {
    ClientOptions opts;
    opts.host = "127.0.0.1";
    opts.port = server.port();
    opts.tls = true;
    opts.caFile = path("ca.crt");
    return opts;
  }

  // Sends a random packet to itself through the echoing server.
  static void expectRoundTrip(DerpClient& c) {
    std::vector<uint8_t> payload(1200);
    randombytes_buf(payload.data(), payload.size());
    ASSERT_TRUE(c.sendPacket(c.publicKey(), payload).ok());
    absl::StatusOr<DerpClient::Packet> p = c.recvPacket(5 * kSecond);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->src, c.publicKey());
    EXPECT_EQ(p->payload, payload);
  }

  static std::string* dir_;
  static std::vector<uint8_t>* metaCertDer_;
};

std::string* TlsClientTest::dir_ = nullptr;
std::vector<uint8_t>* TlsClientTest::metaCertDer_ = nullptr;

TEST_F(TlsClientTest, Tls13VerifiedByIpHandshakesAndRelays) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(tlsOptions(*server));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tlsVersion(), "TLSv1.3");
  EXPECT_EQ((*c)->serverKey(), vectorServerKey().publicKey());
  EXPECT_FALSE((*c)->usedFastStart());
  EXPECT_FALSE((*c)->metaCertKey().has_value());
  ASSERT_EQ((*c)->peerCertChainDer().size(), 1u);
  EXPECT_EQ((*c)->peerCertChainDer()[0], leafDer(path("leaf.crt")));
  expectRoundTrip(**c);
  expectRoundTrip(**c);
  (*c)->close();
  TestTlsServerReport r = server->finish();
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.version, "TLSv1.3");
  EXPECT_EQ(r.sni, "") << "a client connecting by IP sends no SNI";
  EXPECT_TRUE(r.offeredHttp11);
  EXPECT_FALSE(r.fastStartHeader);
  EXPECT_FALSE(r.clientInfoBehindHead);
  EXPECT_TRUE(r.clientInfoOpened);
  EXPECT_EQ(r.clientKey, (*c)->publicKey());
  EXPECT_EQ(r.packetsEchoed, 2);
}

TEST_F(TlsClientTest, Tls12HandshakesAndRelays) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_2_VERSION, false);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(tlsOptions(*server));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tlsVersion(), "TLSv1.2");
  expectRoundTrip(**c);
  (*c)->close();
  TestTlsServerReport r = server->finish();
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.version, "TLSv1.2");
  EXPECT_TRUE(r.clientInfoOpened);
  EXPECT_EQ(r.packetsEchoed, 1);
}

TEST_F(TlsClientTest, ServerNameIsSentAsSniAndVerified) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  ClientOptions opts = tlsOptions(*server);
  opts.serverName = "derp.test";
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_TRUE(c.ok()) << c.status();
  (*c)->close();
  TestTlsServerReport r = server->finish();
  EXPECT_EQ(r.sni, "derp.test");
  EXPECT_THAT(r.requestHead, HasSubstr("\r\nHost: derp.test:"));
}

TEST_F(TlsClientTest, WrongServerNameFailsVerification) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  ClientOptions opts = tlsOptions(*server);
  opts.serverName = "other.test";
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("certificate verification failed for other.test"));
  EXPECT_EQ(server->finish().requestHead, "");
}

TEST_F(TlsClientTest, UntrustedCaFailsVerification) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  ClientOptions opts = tlsOptions(*server);
  opts.caFile = path("other-ca.crt");
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("certificate verification failed"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("local issuer"));
  TestTlsServerReport r = server->finish();
  EXPECT_EQ(r.requestHead, "") << "nothing may be sent to an unverified server";
}

TEST_F(TlsClientTest, SystemCasDoNotTrustTheTestCa) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  ClientOptions opts = tlsOptions(*server);
  opts.caFile = kDefaultCaFile;
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_FALSE(c.ok());
  // Either the bundle is there and does not vouch for the test CA, or it is
  // missing and the error says so.
  EXPECT_THAT(std::string(c.status().message()),
              ::testing::AnyOf(HasSubstr("certificate verification failed"),
                               HasSubstr("cannot load CA certificates from")));
}

TEST_F(TlsClientTest, InsecureAcceptsAnUntrustedServer) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  ClientOptions opts = tlsOptions(*server);
  opts.caFile = path("other-ca.crt");
  opts.insecure = true;
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_TRUE(c.ok()) << c.status();
  expectRoundTrip(**c);
}

TEST_F(TlsClientTest, RightPinAcceptsWithoutCa) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  std::vector<uint8_t> der = leafDer(path("leaf.crt"));
  ASSERT_FALSE(der.empty());
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der.data(), der.size(), digest);
  ClientOptions opts = tlsOptions(*server);
  opts.caFile = path("other-ca.crt");
  opts.pinCertName = "sha256-raw:" + hexEncode(digest);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_TRUE(c.ok()) << c.status();
  expectRoundTrip(**c);
}

TEST_F(TlsClientTest, WrongPinFails) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, false);
  std::vector<uint8_t> der = leafDer(path("leaf.crt"));
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der.data(), der.size(), digest);
  digest[0] ^= 1;
  ClientOptions opts = tlsOptions(*server);
  opts.pinCertName = "sha256-raw:" + hexEncode(digest);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("pin mismatch"));
  EXPECT_EQ(server->finish().requestHead, "") << "nothing may be sent to a mismatched server";
}

TEST_F(TlsClientTest, MalformedPinIsRejected) {
  EXPECT_EQ(parseCertNamePin("sha256-raw:1234").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(parseCertNamePin("sha1:" + std::string(64, 'a')).ok());
  EXPECT_TRUE(parseCertNamePin("sha256-raw:" + std::string(64, 'A')).ok());
}

TEST_F(TlsClientTest, MetaCertOverTls13LeadsToFastStart) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, true);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(tlsOptions(*server));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->usedFastStart());
  ASSERT_TRUE((*c)->metaCertKey().has_value());
  EXPECT_EQ(*(*c)->metaCertKey(), vectorServerKey().publicKey());
  ASSERT_EQ((*c)->peerCertChainDer().size(), 2u);
  EXPECT_EQ((*c)->peerCertChainDer()[1], *metaCertDer_);
  expectRoundTrip(**c);
  (*c)->close();
  TestTlsServerReport r = server->finish();
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.fastStartHeader) << r.requestHead;
  EXPECT_TRUE(r.clientInfoBehindHead) << "ClientInfo must follow the request in the same write";
  EXPECT_TRUE(r.clientInfoOpened);
}

TEST_F(TlsClientTest, MetaCertOverTls12IsIgnored) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_2_VERSION, true);
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(tlsOptions(*server));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tlsVersion(), "TLSv1.2");
  EXPECT_FALSE((*c)->usedFastStart());
  EXPECT_FALSE((*c)->metaCertKey().has_value());
  EXPECT_EQ((*c)->peerCertChainDer().size(), 2u) << "the server did send the meta-cert";
  (*c)->close();
  TestTlsServerReport r = server->finish();
  EXPECT_FALSE(r.fastStartHeader);
  EXPECT_FALSE(r.clientInfoBehindHead);
  EXPECT_TRUE(r.clientInfoOpened);
}

TEST_F(TlsClientTest, MetaCertFastStartCanBeTurnedOff) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, true);
  ClientOptions opts = tlsOptions(*server);
  opts.fastStartFromMetaCert = false;
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->metaCertKey().has_value());
  EXPECT_FALSE((*c)->usedFastStart());
  (*c)->close();
  EXPECT_FALSE(server->finish().fastStartHeader);
}

TEST_F(TlsClientTest, MetaCertKeyDifferentFromExpectedFails) {
  std::unique_ptr<TestTlsServer> server = startServer(TLS1_3_VERSION, true);
  ClientOptions opts = tlsOptions(*server);
  opts.serverKey = derp::PrivateKey::generate().publicKey();
  absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(opts);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("meta-cert"));
}

TEST_F(TlsClientTest, FindMetaCertReadsTheVectorsAndSkipsOthers) {
  nlohmann::json doc = derpd::testing::loadVectors("metacert.json");
  for (const auto& e : derpd::testing::entries(doc)) {
    std::vector<std::vector<uint8_t>> chain = {
        leafDer(path("leaf.crt")), derpd::testing::unhex(e.at("hex").get<std::string>())};
    std::optional<MetaCert> meta = findMetaCert(chain);
    ASSERT_TRUE(meta.has_value()) << e.at("name");
    EXPECT_EQ(meta->serverKey.hex(), e.at("server_public_hex").get<std::string>());
    EXPECT_EQ(meta->protocolVersion, 2);
  }
  std::vector<std::vector<uint8_t>> plain = {
      leafDer(path("leaf.crt")), leafDer(path("ca.crt")), {0x30, 0x03, 0x02, 0x01, 0x01}};
  EXPECT_FALSE(findMetaCert(plain).has_value());
}

}  // namespace
}  // namespace derpd::client
