// DERP over WebSocket from a real browser: Debian's headless chromium opens a
// page (tests/browser, served by the driver, not by derpd) whose script, with
// TweetNaCl from the npm registry (pinned in package-lock.json), connects to
// derpd over ws:// and wss://, does the DERP handshake and exchanges packets
// with a native raw-DERP client. wss:// trusts the test CA's leaf by its
// public key (--ignore-certificate-errors-spki-list) and reaches derp.test
// through chromium's host resolver rules. The driver reads the page's title
// through the DevTools HTTP endpoint. Exits 77 (skipped) with the reason when
// chromium is not installed or cannot start, or npm cannot fetch the page's
// packages.
#include <openssl/base64.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "integration/test_support.h"
#include "integration/tls_fixture.h"
#include "integration/ws_peer.h"

namespace derpd::testing {
namespace {

std::string driver() {
  const char* d = std::getenv("DERPD_BROWSER_DRIVER");
  return d != nullptr ? d : "";
}

// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what
// --ignore-certificate-errors-spki-list takes.
std::string spkiHash(const std::string& pemFile) {
  FILE* f = std::fopen(pemFile.c_str(), "r");
  if (f == nullptr) return "";
  bssl::UniquePtr<X509> cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!cert) return "";
  uint8_t* der = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &der);
  if (len <= 0) return "";
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), digest);
  OPENSSL_free(der);
  uint8_t out[64];
  size_t n = EVP_EncodeBlock(out, digest, sizeof(digest));
  return std::string(reinterpret_cast<char*>(out), n);
}

TEST_F(TlsTest, ChromiumPageRelaysOverWss) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(auto native, connectTls());
  const std::string spki = spkiHash(gFix->derp1.crt);
  ASSERT_FALSE(spki.empty());
  relayWithExternalClient(
      {"/usr/bin/python3", driver(), absl::StrCat("wss://derp.test:", port_, "/derp"), "--spki",
       spki, "--resolve", "derp.test"},
      *native);
  ASSERT_OK_AND_ASSIGN(double upgrades, metricTls(port_, "derpd_websocket_upgrades_total"));
  EXPECT_EQ(upgrades, 1);
}

TEST(ChromiumPlainTest, ChromiumPageRelaysOverWs) {
  ASSERT_OK_AND_ASSIGN(auto derpd, DerpdProcess::start({}));
  ASSERT_OK_AND_ASSIGN(auto native, connectClient(derpd->port()));
  relayWithExternalClient(
      {"/usr/bin/python3", driver(), absl::StrCat("ws://127.0.0.1:", derpd->port(), "/derp")},
      *native);
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  const std::string d = derpd::testing::driver();
  if (d.empty()) {
    std::printf("DERPD_BROWSER_DRIVER is not set (tests/integration/meson.build)\n");
    return 1;
  }
  // npm ci into the build tree (once; again when package-lock.json changes).
  const int rc = std::system(("/usr/bin/python3 " + d + " --prepare").c_str());
  if (rc == -1 || !WIFEXITED(rc)) return 1;
  if (WEXITSTATUS(rc) == 77) return 77;  // the driver said why
  if (WEXITSTATUS(rc) != 0) return 1;
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    std::printf("skipped: chromium is not installed (Debian package chromium)\n");
    return 77;
  }
  return derpd::testing::runTlsTestMain(argc, argv);
}
