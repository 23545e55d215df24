#include "tls/certificate.h"

#include <gtest/gtest.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/tls/test_pki.h"
#include "tests/vectors.h"

namespace derpd::tls {
namespace {

using ::derpd::testing::KeyKind;
using ::derpd::testing::TempDir;

constexpr int64_t kNow = 1767225600;  // 2026-01-01T00:00:00Z

std::vector<uint8_t> bytesOf(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> bufferBytes(const CRYPTO_BUFFER* b) {
  return {CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_data(b) + CRYPTO_BUFFER_len(b)};
}

int64_t asnTimeToUnix(const ASN1_TIME* t) {
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0, secs = 0;
  EXPECT_TRUE(ASN1_TIME_diff(&days, &secs, epoch.get(), t));
  return int64_t{days} * 86400 + secs;
}

std::string subjectCn(X509* x) {
  const X509_NAME* name = X509_get_subject_name(x);
  const int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return {};
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     ASN1_STRING_length(s));
}

// --- meta-cert ---

TEST(MetaCert, ReproducesVectorByteForByte) {
  const auto doc = testing::loadVectors("metacert.json");
  ASSERT_FALSE(doc.is_null());
  const auto entry = testing::findEntry(doc, "metacert_deterministic");
  ASSERT_FALSE(entry.is_null());
  std::array<uint8_t, 32> seed;
  const auto seedBytes = testing::entryBytes(entry, "ed25519_seed_hex");
  ASSERT_EQ(seedBytes.size(), 32u);
  std::copy(seedBytes.begin(), seedBytes.end(), seed.begin());
  // NotBefore 2023-01-01T00:00:00Z, NotAfter 60 days later (the entry's description).
  const int64_t notBefore = 1672531200;
  const int64_t notAfter = notBefore + 60 * 86400;

  auto meta =
      makeMetaCert(entry.at("server_public_hex").get<std::string>(), seed, notBefore, notAfter);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(testing::hex(bufferBytes(meta->get())), entry.at("hex").get<std::string>());
}

TEST(MetaCert, ParsesWithDerpFields) {
  const std::string pub = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
  std::array<uint8_t, 32> seed{};
  seed[0] = 7;
  auto meta = makeMetaCert(pub, seed, kNow - 30 * 86400, kNow + 30 * 86400);
  ASSERT_TRUE(meta.ok()) << meta.status();
  bssl::UniquePtr<X509> x = testing::parseDer(bufferBytes(meta->get()));
  ASSERT_TRUE(x);
  EXPECT_EQ(subjectCn(x.get()), "derpkey" + pub);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(x.get()), X509_get_issuer_name(x.get())), 0);
  uint64_t serial = 0;
  ASSERT_TRUE(ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(x.get())));
  EXPECT_EQ(serial, 2u);
  EXPECT_EQ(X509_get_version(x.get()), X509_VERSION_3);
  EXPECT_EQ(asnTimeToUnix(X509_get0_notBefore(x.get())), kNow - 30 * 86400);
  EXPECT_EQ(asnTimeToUnix(X509_get0_notAfter(x.get())), kNow + 30 * 86400);
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notBefore(x.get())), V_ASN1_UTCTIME);
  EXPECT_EQ(X509_get_signature_nid(x.get()), NID_ED25519);
  int critical = -1;
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(x.get(), NID_basic_constraints, &critical, nullptr)));
  ASSERT_TRUE(bc);
  EXPECT_EQ(critical, 1);
  EXPECT_FALSE(bc->ca);
  bssl::UniquePtr<EVP_PKEY> pub509(X509_get_pubkey(x.get()));
  ASSERT_TRUE(pub509);
  EXPECT_EQ(EVP_PKEY_id(pub509.get()), EVP_PKEY_ED25519);
  EXPECT_EQ(X509_verify(x.get(), pub509.get()), 1);
}

TEST(MetaCert, RejectsAServerKeyThatIsNotHex) {
  std::array<uint8_t, 32> seed{};
  EXPECT_FALSE(makeMetaCert("not-hex", seed, kNow, kNow + 1).ok());
  EXPECT_FALSE(makeMetaCert(std::string(62, 'a'), seed, kNow, kNow + 1).ok());
}

// --- loading PEM files ---

class KeyFormatTest : public ::testing::TestWithParam<KeyKind> {};

TEST_P(KeyFormatTest, LoadsPairAndChecksKey) {
  TempDir dir;
  const std::string key = dir.file("k.pem");
  const std::string crt = dir.file("c.pem");
  ASSERT_TRUE(testing::genKey(key, GetParam()));
  ASSERT_NE(testing::readText(key).find(std::string("-----BEGIN ") +
                                        testing::keyPemType(GetParam()) + "-----"),
            std::string::npos);
  ASSERT_TRUE(testing::selfSignedCert(dir, key, crt, "Example.com",
                                      "DNS:Example.COM,DNS:*.wild.example.com,IP:10.0.0.1,IP:::1"));

  auto cert = loadPemFiles(crt, key);
  ASSERT_TRUE(cert.ok()) << cert.status();
  ASSERT_EQ(cert->chain.size(), 1u);
  const auto fileDer = testing::pemCertsDer(testing::readText(crt));
  ASSERT_EQ(fileDer.size(), 1u);
  EXPECT_EQ(bytesOf(cert->leafDer()), fileDer[0]);
  const bool rsa = GetParam() == KeyKind::kRsaPkcs1 || GetParam() == KeyKind::kRsaPkcs8;
  EXPECT_EQ(EVP_PKEY_id(cert->key.get()), rsa ? EVP_PKEY_RSA : EVP_PKEY_EC);
  EXPECT_EQ(cert->names,
            (std::vector<std::string>{"example.com", "*.wild.example.com", "10.0.0.1", "::1"}));
  bssl::UniquePtr<X509> x = testing::parseDer(fileDer[0]);
  EXPECT_EQ(cert->notAfterUnix, asnTimeToUnix(X509_get0_notAfter(x.get())));
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  EXPECT_NEAR(static_cast<double>(cert->notAfterUnix), static_cast<double>(now + 30 * 86400),
              3600.0);
}

INSTANTIATE_TEST_SUITE_P(Formats, KeyFormatTest,
                         ::testing::Values(KeyKind::kRsaPkcs1, KeyKind::kRsaPkcs8, KeyKind::kEcSec1,
                                           KeyKind::kEcPkcs8),
                         [](const auto& info) { return testing::keyKindName(info.param); });

TEST(LoadPemFiles, ChainKeepsFileOrder) {
  TempDir dir;
  const testing::TestChain c = testing::makeChain(dir, "DNS:chain.example.com");
  const std::string bundle = dir.file("bundle.crt");
  testing::writeText(bundle, testing::readText(c.leafCrt) + testing::readText(c.intermediateCrt));

  auto cert = loadPemFiles(bundle, c.leafKey);
  ASSERT_TRUE(cert.ok()) << cert.status();
  ASSERT_EQ(cert->chain.size(), 2u);
  EXPECT_EQ(bufferBytes(cert->chain[0].get()),
            testing::pemCertsDer(testing::readText(c.leafCrt)).at(0));
  EXPECT_EQ(bufferBytes(cert->chain[1].get()),
            testing::pemCertsDer(testing::readText(c.intermediateCrt)).at(0));
  EXPECT_EQ(cert->names, std::vector<std::string>{"chain.example.com"});
}

TEST(LoadPemFiles, MismatchedKeyIsAnErrorNamingTheKeyFile) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("a.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(testing::genKey(dir.file("b.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(
      testing::selfSignedCert(dir, dir.file("a.key"), dir.file("a.crt"), "a", "DNS:a.example"));
  auto cert = loadPemFiles(dir.file("a.crt"), dir.file("b.key"));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.status().message().find(dir.file("b.key")), std::string::npos) << cert.status();
  EXPECT_NE(cert.status().message().find("does not match"), std::string::npos) << cert.status();
}

TEST(LoadPemFiles, MissingFilesAreNotFoundAndNamed) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("a.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(
      testing::selfSignedCert(dir, dir.file("a.key"), dir.file("a.crt"), "a", "DNS:a.example"));

  auto noCrt = loadPemFiles(dir.file("missing.crt"), dir.file("a.key"));
  ASSERT_FALSE(noCrt.ok());
  EXPECT_EQ(noCrt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(noCrt.status().message().find(dir.file("missing.crt")), std::string::npos);
  EXPECT_NE(noCrt.status().message().find("No such file or directory"), std::string::npos);

  auto noKey = loadPemFiles(dir.file("a.crt"), dir.file("missing.key"));
  ASSERT_FALSE(noKey.ok());
  EXPECT_EQ(noKey.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(noKey.status().message().find(dir.file("missing.key")), std::string::npos);
}

TEST(ParsePem, GarbageIsRejectedWithReason) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("a.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(
      testing::selfSignedCert(dir, dir.file("a.key"), dir.file("a.crt"), "a", "DNS:a.example"));
  const std::string goodCrt = testing::readText(dir.file("a.crt"));
  const std::string goodKey = testing::readText(dir.file("a.key"));
  ASSERT_TRUE(parsePem(goodCrt, goodKey, "test").ok());

  auto noBlock = parsePem("hello, world\n", goodKey, "src");
  ASSERT_FALSE(noBlock.ok());
  EXPECT_NE(noBlock.status().message().find("no CERTIFICATE block"), std::string::npos)
      << noBlock.status();
  EXPECT_NE(noBlock.status().message().find("src certificate"), std::string::npos);

  auto badBase64 = parsePem(
      "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n", goodKey, "src");
  ASSERT_FALSE(badBase64.ok());
  EXPECT_NE(badBase64.status().message().find("malformed"), std::string::npos)
      << badBase64.status();

  // Valid base64, not a certificate.
  auto notDer = parsePem(
      "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n", goodKey, "src");
  ASSERT_FALSE(notDer.ok());

  // A good certificate followed by a broken one is still an error.
  auto brokenSecond =
      parsePem(goodCrt + "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
               goodKey, "src");
  ASSERT_FALSE(brokenSecond.ok());
  EXPECT_NE(brokenSecond.status().message().find("#2"), std::string::npos) << brokenSecond.status();

  auto noKey = parsePem(goodCrt, "nothing here", "src");
  ASSERT_FALSE(noKey.ok());
  EXPECT_NE(noKey.status().message().find("src key"), std::string::npos) << noKey.status();

  auto badKey = parsePem(
      goodCrt, "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n", "src");
  ASSERT_FALSE(badKey.ok());
  EXPECT_NE(badKey.status().message().find("src key"), std::string::npos) << badKey.status();
}

TEST(LoadPemFiles, CommonNameIsTheNameWhenThereAreNoSans) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("a.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(
      testing::selfSignedCert(dir, dir.file("a.key"), dir.file("a.crt"), "Legacy.Example.com", ""));
  auto cert = loadPemFiles(dir.file("a.crt"), dir.file("a.key"));
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(cert->names, std::vector<std::string>{"legacy.example.com"});
  // Clients ignore the CN, and so does matchesHost.
  EXPECT_FALSE(matchesHost(*cert, "legacy.example.com"));
}

// --- matchesHost ---

TEST(MatchesHost, DnsAndIpRules) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("a.key"), KeyKind::kEcSec1));
  ASSERT_TRUE(testing::selfSignedCert(
      dir, dir.file("a.key"), dir.file("a.crt"), "x",
      "DNS:derp.Example.com,DNS:*.wild.example.com,IP:10.0.0.1,IP:2001:db8::1,DNS:192.0.2.7"));
  auto cert = loadPemFiles(dir.file("a.crt"), dir.file("a.key"));
  ASSERT_TRUE(cert.ok()) << cert.status();

  EXPECT_TRUE(matchesHost(*cert, "derp.example.com"));
  EXPECT_TRUE(matchesHost(*cert, "DERP.EXAMPLE.COM"));
  EXPECT_TRUE(matchesHost(*cert, "derp.example.com."));
  EXPECT_FALSE(matchesHost(*cert, "example.com"));
  EXPECT_FALSE(matchesHost(*cert, "x.derp.example.com"));

  EXPECT_TRUE(matchesHost(*cert, "a.wild.example.com"));
  EXPECT_TRUE(matchesHost(*cert, "B.Wild.Example.Com"));
  EXPECT_FALSE(matchesHost(*cert, "wild.example.com"));
  EXPECT_FALSE(matchesHost(*cert, "a.b.wild.example.com"));
  EXPECT_FALSE(matchesHost(*cert, ".wild.example.com"));

  EXPECT_TRUE(matchesHost(*cert, "10.0.0.1"));
  EXPECT_FALSE(matchesHost(*cert, "10.0.0.2"));
  EXPECT_TRUE(matchesHost(*cert, "::ffff:10.0.0.1"));
  EXPECT_TRUE(matchesHost(*cert, "2001:db8::1"));
  EXPECT_TRUE(matchesHost(*cert, "2001:0db8:0:0::0001"));
  EXPECT_FALSE(matchesHost(*cert, "2001:db8::2"));
  // An IP is checked against IP SANs only, never a DNS SAN spelled like one.
  EXPECT_FALSE(matchesHost(*cert, "192.0.2.7"));
  EXPECT_FALSE(matchesHost(*cert, ""));
}

// --- generateSelfSignedIp ---

void checkSelfSignedIp(const std::string& ip, std::span<const uint8_t> ipBytes) {
  auto cert = generateSelfSignedIp(ip, kNow);
  ASSERT_TRUE(cert.ok()) << cert.status();
  ASSERT_EQ(cert->chain.size(), 1u);
  EXPECT_EQ(cert->names, std::vector<std::string>{ip});
  EXPECT_EQ(cert->notAfterUnix, kNow + 365 * 86400);
  EXPECT_TRUE(matchesHost(*cert, ip));

  bssl::UniquePtr<X509> x = testing::parseDer(cert->leafDer());
  ASSERT_TRUE(x);
  EXPECT_EQ(X509_get_version(x.get()), X509_VERSION_3);
  EXPECT_EQ(subjectCn(x.get()), ip);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(x.get()), X509_get_issuer_name(x.get())), 0);
  EXPECT_EQ(asnTimeToUnix(X509_get0_notBefore(x.get())), kNow);
  EXPECT_EQ(asnTimeToUnix(X509_get0_notAfter(x.get())), kNow + 365 * 86400);
  EXPECT_EQ(X509_get_signature_nid(x.get()), NID_ecdsa_with_SHA256);

  bssl::UniquePtr<EVP_PKEY> pub(X509_get_pubkey(x.get()));
  ASSERT_TRUE(pub);
  ASSERT_EQ(EVP_PKEY_id(pub.get()), EVP_PKEY_EC);
  EXPECT_EQ(EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pub.get()))),
            NID_X9_62_prime256v1);
  EXPECT_EQ(EVP_PKEY_cmp(pub.get(), cert->key.get()), 1);
  EXPECT_EQ(X509_verify(x.get(), pub.get()), 1);

  bssl::UniquePtr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x.get()), nullptr));
  ASSERT_TRUE(serial);
  EXPECT_LE(BN_num_bits(serial.get()), 128u);
  EXPECT_GT(BN_num_bits(serial.get()), 64u);  // fails with probability 2^-64
  EXPECT_FALSE(BN_is_negative(serial.get()));

  int critical = -1;
  GENERAL_NAMES* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x.get(), NID_subject_alt_name, &critical, nullptr));
  ASSERT_NE(sans, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans), 1u);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, 0);
  ASSERT_EQ(gn->type, GEN_IPADD);
  EXPECT_EQ(std::vector<uint8_t>(
                ASN1_STRING_get0_data(gn->d.iPAddress),
                ASN1_STRING_get0_data(gn->d.iPAddress) + ASN1_STRING_length(gn->d.iPAddress)),
            std::vector<uint8_t>(ipBytes.begin(), ipBytes.end()));
  GENERAL_NAMES_free(sans);

  EXPECT_EQ(X509_get_key_usage(x.get()), uint32_t{KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT});
  EXPECT_EQ(X509_get_extended_key_usage(x.get()), uint32_t{XKU_SSL_SERVER});
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(x.get(), NID_basic_constraints, &critical, nullptr)));
  ASSERT_TRUE(bc);
  EXPECT_FALSE(bc->ca);
  EXPECT_EQ(X509_check_ca(x.get()), 0);
}

TEST(GenerateSelfSignedIp, Ipv4Fields) {
  const uint8_t ip[] = {203, 0, 113, 9};
  checkSelfSignedIp("203.0.113.9", ip);
}

TEST(GenerateSelfSignedIp, Ipv6Fields) {
  const uint8_t ip[] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};
  checkSelfSignedIp("2001:db8::42", ip);
}

TEST(GenerateSelfSignedIp, FreshKeyAndSerialEachTime) {
  auto a = generateSelfSignedIp("127.0.0.1", kNow);
  auto b = generateSelfSignedIp("127.0.0.1", kNow);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(EVP_PKEY_cmp(a->key.get(), b->key.get()), 1);
  bssl::UniquePtr<X509> xa = testing::parseDer(a->leafDer());
  bssl::UniquePtr<X509> xb = testing::parseDer(b->leafDer());
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(xa.get()), X509_get0_serialNumber(xb.get())),
            0);
}

TEST(GenerateSelfSignedIp, RejectsNonIp) {
  EXPECT_FALSE(generateSelfSignedIp("derp.example.com", kNow).ok());
  EXPECT_FALSE(generateSelfSignedIp("", kNow).ok());
}

// --- certName ---

TEST(CertName, IsSha256OfLeafDer) {
  auto cert = generateSelfSignedIp("127.0.0.1", kNow);
  ASSERT_TRUE(cert.ok());
  const std::span<const uint8_t> der = cert->leafDer();
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der.data(), der.size(), digest);
  EXPECT_EQ(certName(*cert), "sha256-raw:" + testing::hex(digest));
  EXPECT_EQ(certName(*cert).size(), 11u + 64u);
}

// --- writePemFiles ---

TEST(WritePemFiles, ModesAndRoundTrip) {
  TempDir dir;
  auto cert = generateSelfSignedIp("192.0.2.1", kNow);
  ASSERT_TRUE(cert.ok());
  const std::string sub = dir.file("certs");
  const std::string crt = sub + "/192.0.2.1.crt";
  const std::string key = sub + "/192.0.2.1.key";
  ASSERT_TRUE(writePemFiles(*cert, crt, key).ok());

  EXPECT_EQ(testing::fileMode(sub), 0700u);
  EXPECT_EQ(testing::fileMode(crt), 0644u);
  EXPECT_EQ(testing::fileMode(key), 0600u);
  EXPECT_EQ(testing::readText(key).rfind("-----BEGIN EC PRIVATE KEY-----\n", 0), 0u);
  EXPECT_EQ(testing::readText(crt).rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);

  auto back = loadPemFiles(crt, key);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(bytesOf(back->leafDer()), bytesOf(cert->leafDer()));
  EXPECT_EQ(EVP_PKEY_cmp(back->key.get(), cert->key.get()), 1);
  EXPECT_EQ(back->names, cert->names);
  EXPECT_EQ(back->notAfterUnix, cert->notAfterUnix);

  // Overwriting replaces both, and leaves no temporary files behind.
  auto second = generateSelfSignedIp("192.0.2.1", kNow);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(writePemFiles(*second, crt, key).ok());
  auto again = loadPemFiles(crt, key);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(bytesOf(again->leafDer()), bytesOf(second->leafDer()));
  EXPECT_EQ(testing::fileMode(key), 0600u);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(sub)) {
    (void)e;
    files++;
  }
  EXPECT_EQ(files, 2u);
}

TEST(WritePemFiles, RsaChainRoundTrip) {
  TempDir dir;
  ASSERT_TRUE(testing::genKey(dir.file("rsa.key"), KeyKind::kRsaPkcs8));
  ASSERT_TRUE(
      testing::selfSignedCert(dir, dir.file("rsa.key"), dir.file("rsa.crt"), "r", "DNS:r.example"));
  auto cert = loadPemFiles(dir.file("rsa.crt"), dir.file("rsa.key"));
  ASSERT_TRUE(cert.ok()) << cert.status();
  ASSERT_TRUE(writePemFiles(*cert, dir.file("out.crt"), dir.file("out.key")).ok());
  EXPECT_EQ(testing::readText(dir.file("out.key")).rfind("-----BEGIN RSA PRIVATE KEY-----", 0), 0u);
  auto back = loadPemFiles(dir.file("out.crt"), dir.file("out.key"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(bytesOf(back->leafDer()), bytesOf(cert->leafDer()));
  EXPECT_EQ(EVP_PKEY_cmp(back->key.get(), cert->key.get()), 1);
}

}  // namespace
}  // namespace derpd::tls
