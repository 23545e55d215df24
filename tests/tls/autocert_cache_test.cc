// The -certmode letsencrypt cache in the layout of derper's (Go's
// autocert.DirCache). Entries written by the openssl tool in that layout
// (the key as "EC PRIVATE KEY" PEM, then the chain) must load; what derpd
// writes must be that layout.
#include "tls/autocert_cache.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <ctime>
#include <string>

#include "tests/tls/test_pki.h"

namespace derpd::tls::autocert {
namespace {

using ::derpd::testing::KeyKind;
using ::derpd::testing::TempDir;

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// An autocert entry for `host` made by the openssl tool: key (SEC1 "EC
// PRIVATE KEY", or PKCS#1 RSA) then a self-signed certificate valid 30 days.
std::string entryFromOpenssl(const TempDir& dir, const std::string& host, KeyKind kind) {
  const std::string key = dir.file(host + ".key");
  const std::string crt = dir.file(host + ".crt");
  EXPECT_TRUE(testing::genKey(key, kind));
  EXPECT_TRUE(testing::selfSignedCert(dir, key, crt, host, "DNS:" + host));
  return testing::readText(key) + testing::readText(crt);
}

TEST(AutocertCache, FileNamesAreAutocertKeys) {
  EXPECT_EQ(certPath("/c", "derp.example.com"), "/c/derp.example.com");
  EXPECT_EQ(certPath("/c/", "derp.example.com", /*rsa=*/true), "/c/derp.example.com+rsa");
  EXPECT_EQ(accountKeyPath("/c"), "/c/acme_account+key");
  EXPECT_EQ(legacyAccountKeyPath("/c"), "/c/acme_account.key");
}

TEST(AutocertCache, HostNamesAreDnsNamesNeverPaths) {
  EXPECT_TRUE(checkHostName("derp.example.com").ok());
  EXPECT_TRUE(checkHostName("derp-1.Example.COM").ok());
  for (const char* bad : {"", "../etc/passwd", "a/b", "a..b", ".a", "a.", "a b", "a:443"}) {
    EXPECT_FALSE(checkHostName(bad).ok()) << bad;
  }
}

TEST(AutocertCache, LoadsAnEcdsaEntryWrittenInAutocertsLayout) {
  TempDir dir;
  testing::writeText(certPath(dir.path(), "derp.test"),
                     entryFromOpenssl(dir, "derp.test", KeyKind::kEcSec1));
  absl::StatusOr<CertifiedKey> cert = loadCert(dir.path(), "derp.test", now());
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(EVP_PKEY_id(cert->key.get()), EVP_PKEY_EC);
  ASSERT_EQ(cert->chain.size(), 1u);
  EXPECT_TRUE(matchesHost(*cert, "derp.test"));
}

TEST(AutocertCache, FallsBackToTheRsaEntry) {
  TempDir dir;
  testing::writeText(certPath(dir.path(), "derp.test", /*rsa=*/true),
                     entryFromOpenssl(dir, "derp.test", KeyKind::kRsaPkcs1));
  absl::StatusOr<CertifiedKey> cert = loadCert(dir.path(), "derp.test", now());
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(EVP_PKEY_id(cert->key.get()), EVP_PKEY_RSA);
}

TEST(AutocertCache, RefusesMissingWrongHostExpiredAndNotYetValidEntries) {
  TempDir dir;
  absl::StatusOr<CertifiedKey> none = loadCert(dir.path(), "derp.test", now());
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();

  testing::writeText(certPath(dir.path(), "derp.test"),
                     entryFromOpenssl(dir, "other.test", KeyKind::kEcSec1));
  absl::StatusOr<CertifiedKey> wrong = loadCert(dir.path(), "derp.test", now());
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("not valid for derp.test"), std::string::npos)
      << wrong.status();

  testing::writeText(certPath(dir.path(), "derp.test"),
                     entryFromOpenssl(dir, "derp.test", KeyKind::kEcSec1));
  absl::StatusOr<CertifiedKey> expired = loadCert(dir.path(), "derp.test", now() + 31 * 86400);
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.status().message().find("expired at"), std::string::npos) << expired.status();
  absl::StatusOr<CertifiedKey> early = loadCert(dir.path(), "derp.test", now() - 86400);
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.status().message().find("not valid before"), std::string::npos) << early.status();

  testing::writeText(certPath(dir.path(), "derp.test"), "not PEM at all\n");
  absl::StatusOr<CertifiedKey> garbage = loadCert(dir.path(), "derp.test", now());
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find(certPath(dir.path(), "derp.test")), std::string::npos)
      << garbage.status();
}

TEST(AutocertCache, StoresInAutocertsLayout) {
  TempDir dir;
  testing::writeText(dir.file("in"), entryFromOpenssl(dir, "derp.test", KeyKind::kEcPkcs8));
  absl::StatusOr<CertifiedKey> cert = parseEntry(testing::readText(dir.file("in")), "in");
  ASSERT_TRUE(cert.ok()) << cert.status();
  const std::string cache = dir.file("cache");  // made by storeCert
  ASSERT_TRUE(storeCert(cache, "derp.test", *cert).ok());
  EXPECT_EQ(testing::fileMode(cache), 0700);
  EXPECT_EQ(testing::fileMode(certPath(cache, "derp.test")), 0600);
  const std::string text = testing::readText(certPath(cache, "derp.test"));
  // The key first, as SEC1 whatever form it was read in, then the chain.
  EXPECT_EQ(text.rfind("-----BEGIN EC PRIVATE KEY-----\n", 0), 0u) << text;
  const size_t cert1 = text.find("-----BEGIN CERTIFICATE-----");
  ASSERT_NE(cert1, std::string::npos);
  EXPECT_GT(cert1, text.find("-----END EC PRIVATE KEY-----"));
  EXPECT_EQ(testing::pemCertsDer(text).size(), 1u);
  absl::StatusOr<CertifiedKey> back = loadCert(cache, "derp.test", now());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EVP_PKEY_cmp(back->key.get(), cert->key.get()), 1);
  EXPECT_FALSE(storeCert(cache, "../escape", *cert).ok());
}

TEST(AutocertCache, AccountKeyIsMadeOnceAndReadFromEitherName) {
  TempDir dir;
  const std::string cache = dir.file("cache");
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> first = loadOrCreateAccountKey(cache);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(EVP_PKEY_id(first->get()), EVP_PKEY_EC);
  EXPECT_EQ(testing::fileMode(accountKeyPath(cache)), 0600);
  EXPECT_EQ(testing::readText(accountKeyPath(cache)).rfind("-----BEGIN EC PRIVATE KEY-----", 0),
            0u);
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> again = loadOrCreateAccountKey(cache);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(EVP_PKEY_cmp(first->get(), again->get()), 1);

  // Older autocert versions' name, with a key the openssl tool made.
  TempDir legacy;
  ASSERT_TRUE(testing::genKey(legacyAccountKeyPath(legacy.path()), KeyKind::kEcSec1));
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> old = loadOrCreateAccountKey(legacy.path());
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(::access(accountKeyPath(legacy.path()).c_str(), F_OK), -1)
      << "no new key when the legacy one exists";

  testing::writeText(accountKeyPath(legacy.path()), "garbage");
  EXPECT_FALSE(loadOrCreateAccountKey(legacy.path()).ok());
}

}  // namespace
}  // namespace derpd::tls::autocert
