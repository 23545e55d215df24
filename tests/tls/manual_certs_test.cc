#include "tls/manual_certs.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <poll.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/hex.h"
#include "tests/tls/test_pki.h"

namespace derpd::tls {
namespace {

using ::derpd::testing::KeyKind;
using ::derpd::testing::TempDir;

constexpr char kServerPublicHex[] =
    "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";

std::vector<uint8_t> bytesOf(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

// A pair from the openssl tool written as derper's <certdir>/<host>.crt/.key.
void writePair(const TempDir& dir, const std::string& certDir, const std::string& host,
               const std::string& san) {
  const std::string key = ManualCerts::keyPath(certDir, host);
  const std::string crt = ManualCerts::crtPath(certDir, host);
  ASSERT_TRUE(testing::genKey(key, KeyKind::kEcSec1));
  ASSERT_TRUE(testing::selfSignedCert(dir, key, crt, host, san));
}

// "sha256-raw:" + hex(SHA-256(DER of the first certificate in the file)),
// computed here from the file rather than through certName.
std::string pinOfFile(const std::string& crtPath) {
  const auto ders = testing::pemCertsDer(testing::readText(crtPath));
  if (ders.empty()) return "(no certificate in " + crtPath + ")";
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(ders[0].data(), ders[0].size(), digest);
  return "sha256-raw:" + hexEncode(digest);
}

bool waitReadable(int fd, int timeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeoutMs) == 1 && (p.revents & POLLIN) != 0;
}

TEST(ManualCerts, FileNamesFollowDerper) {
  EXPECT_EQ(ManualCerts::crtPath("/etc/derp", "derp.example.com"),
            "/etc/derp/derp.example.com.crt");
  EXPECT_EQ(ManualCerts::keyPath("/etc/derp/", "derp.example.com"),
            "/etc/derp/derp.example.com.key");
  EXPECT_EQ(ManualCerts::crtPath("d", "../../etc/passwd"), "d/....etcpasswd.crt");
  EXPECT_EQ(ManualCerts::crtPath("d", "host_name:443"), "d/hostname443.crt");
  EXPECT_EQ(ManualCerts::keyPath("d", "2001:db8::1"), "d/2001db81.key");
  EXPECT_EQ(ManualCerts::crtPath("d", "Derp-1.Example.COM"), "d/Derp-1.Example.COM.crt");
}

TEST(ManualCerts, LoadsExistingPairsWithMetaCert) {
  TempDir dir;
  const std::string certDir = dir.file("certs");
  ASSERT_EQ(::mkdir(certDir.c_str(), 0700), 0);
  writePair(dir, certDir, "derp.example.com", "DNS:derp.example.com");
  writePair(dir, certDir, "other.example.net", "DNS:*.example.net,DNS:other.example.net");

  ManualCerts manual({certDir, {"derp.example.com", "other.example.net"}, kServerPublicHex});
  std::vector<std::string> notices;
  auto set = manual.load(&notices);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(notices.empty());
  ASSERT_EQ((*set)->certs.size(), 2u);
  EXPECT_EQ(bytesOf((*set)->certs[0].leafDer()),
            testing::pemCertsDer(testing::readText(certDir + "/derp.example.com.crt")).at(0));
  EXPECT_EQ(&(*set)->select("other.example.net"), &(*set)->certs[1]);
  EXPECT_EQ(&(*set)->select("nobody.example.org"), &(*set)->certs[0]);

  ASSERT_TRUE((*set)->metaCert);
  bssl::UniquePtr<X509> meta = testing::parseDer(
      {CRYPTO_BUFFER_data((*set)->metaCert.get()), CRYPTO_BUFFER_len((*set)->metaCert.get())});
  ASSERT_TRUE(meta);
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(meta.get()), NID_commonName, cn, sizeof(cn));
  EXPECT_EQ(std::string(cn), std::string("derpkey") + kServerPublicHex);
  // now-30d .. now+30d, like derper's.
  time_t now = std::time(nullptr);
  EXPECT_LT(X509_cmp_time(X509_get0_notBefore(meta.get()), &now), 0);
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(meta.get()), &now), 0);
  time_t in29Days = now + 29 * 86400;
  time_t in31Days = now + 31 * 86400;
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(meta.get()), &in29Days), 0);
  EXPECT_LT(X509_cmp_time(X509_get0_notAfter(meta.get()), &in31Days), 0);
}

TEST(ManualCerts, NoServerKeyNoMetaCert) {
  TempDir dir;
  writePair(dir, dir.path(), "derp.example.com", "DNS:derp.example.com");
  ManualCerts manual({dir.path(), {"derp.example.com"}, ""});
  auto set = manual.load(nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_FALSE((*set)->metaCert);
}

TEST(ManualCerts, IpHostnameGeneratesAndAnnounces) {
  TempDir dir;
  const std::string certDir = dir.file("fresh/certs");  // does not exist yet
  ManualCerts manual({certDir, {"203.0.113.7"}, kServerPublicHex});
  std::vector<std::string> notices;
  auto set = manual.load(&notices);
  ASSERT_TRUE(set.ok()) << set.status();

  const std::string crt = certDir + "/203.0.113.7.crt";
  const std::string key = certDir + "/203.0.113.7.key";
  EXPECT_EQ(testing::fileMode(certDir), 0700u);
  EXPECT_EQ(testing::fileMode(crt), 0644u);
  EXPECT_EQ(testing::fileMode(key), 0600u);
  EXPECT_EQ(testing::readText(key).rfind("-----BEGIN EC PRIVATE KEY-----", 0), 0u);
  EXPECT_EQ(bytesOf((*set)->certs.at(0).leafDer()),
            testing::pemCertsDer(testing::readText(crt)).at(0));

  const std::string pin = pinOfFile(crt);
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_EQ(notices[0],
            "Using self-signed certificate for IP address \"203.0.113.7\". Configure it in "
            "DERPMap using: (https://tailscale.com/s/custom-derp)");
  EXPECT_EQ(notices[1],
            "  {\"Name\":\"custom\",\"RegionID\":900,\"HostName\":\"203.0.113.7\","
            "\"CertName\":\"" +
                pin + "\"}");

  // The second start uses the files, not a new certificate, and says the same.
  std::vector<std::string> again;
  auto reloaded = ManualCerts({certDir, {"203.0.113.7"}, kServerPublicHex}).load(&again);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(bytesOf((*reloaded)->certs.at(0).leafDer()), bytesOf((*set)->certs.at(0).leafDer()));
  EXPECT_EQ(again, notices);
}

TEST(ManualCerts, Ipv6HostnameGenerates) {
  TempDir dir;
  ManualCerts manual({dir.path(), {"2001:db8::7"}, ""});
  std::vector<std::string> notices;
  auto set = manual.load(&notices);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_NE(notices[1].find(pinOfFile(dir.file("2001db87.crt"))), std::string::npos);
  EXPECT_NE(notices[1].find("\"HostName\":\"2001:db8::7\""), std::string::npos);
}

TEST(ManualCerts, IpHostnameWithOwnCertificateStillAnnounces) {
  TempDir dir;
  writePair(dir, dir.path(), "198.51.100.4", "IP:198.51.100.4");
  std::vector<std::string> notices;
  auto set = ManualCerts({dir.path(), {"198.51.100.4"}, ""}).load(&notices);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_NE(notices[1].find(pinOfFile(dir.file("198.51.100.4.crt"))), std::string::npos);
}

TEST(ManualCerts, IpHostnameWithOnlyOneFileIsAnError) {
  TempDir dir;
  testing::writeText(dir.file("198.51.100.4.crt"), "operator's file\n");
  auto set = ManualCerts({dir.path(), {"198.51.100.4"}, ""}).load(nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(testing::readText(dir.file("198.51.100.4.crt")), "operator's file\n");
}

TEST(ManualCerts, MissingFilesForADnsNameNameThePath) {
  TempDir dir;
  auto set = ManualCerts({dir.path(), {"derp.example.com"}, ""}).load(nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(set.status().message().find(dir.file("derp.example.com.crt")), std::string::npos)
      << set.status();
  EXPECT_FALSE(std::filesystem::exists(dir.file("derp.example.com.key")));
}

TEST(ManualCerts, CertificateForAnotherNameIsAnError) {
  TempDir dir;
  writePair(dir, dir.path(), "derp.example.com", "DNS:elsewhere.example.com,DNS:*.example.org");
  auto set = ManualCerts({dir.path(), {"derp.example.com"}, ""}).load(nullptr);
  ASSERT_FALSE(set.ok());
  const std::string msg(set.status().message());
  EXPECT_NE(msg.find("certificate " + dir.file("derp.example.com.crt") +
                     " is not valid for derp.example.com"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("elsewhere.example.com, *.example.org"), std::string::npos) << msg;
}

TEST(ManualCerts, ReloadKeepsOldOnErrorAndSwapsOnSuccess) {
  TempDir dir;
  writePair(dir, dir.path(), "derp.example.com", "DNS:derp.example.com");
  ManualCerts manual({dir.path(), {"derp.example.com"}, kServerPublicHex});
  auto set = manual.load(nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  auto tls = ServerTls::create(*set);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::shared_ptr<const CertSet> original = (*tls)->certs();
  const std::vector<uint8_t> metaBytes(
      CRYPTO_BUFFER_data(original->metaCert.get()),
      CRYPTO_BUFFER_data(original->metaCert.get()) + CRYPTO_BUFFER_len(original->metaCert.get()));

  // A new key that does not match the certificate on disk.
  ASSERT_TRUE(testing::genKey(dir.file("derp.example.com.key"), KeyKind::kEcSec1));
  absl::Status bad = manual.reload(**tls);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(dir.file("derp.example.com.key")), std::string::npos) << bad;
  EXPECT_EQ((*tls)->certs(), original);

  // Now a certificate for that key: the reload goes through.
  ASSERT_TRUE(testing::selfSignedCert(dir, dir.file("derp.example.com.key"),
                                      dir.file("derp.example.com.crt"), "derp",
                                      "DNS:derp.example.com"));
  absl::Status good = manual.reload(**tls);
  ASSERT_TRUE(good.ok()) << good;
  const std::shared_ptr<const CertSet> now = (*tls)->certs();
  EXPECT_NE(now, original);
  EXPECT_EQ(bytesOf(now->certs.at(0).leafDer()),
            testing::pemCertsDer(testing::readText(dir.file("derp.example.com.crt"))).at(0));
  EXPECT_NE(bytesOf(now->certs.at(0).leafDer()), bytesOf(original->certs.at(0).leafDer()));
  // The meta-cert survives a reload.
  ASSERT_TRUE(now->metaCert);
  EXPECT_EQ(std::vector<uint8_t>(
                CRYPTO_BUFFER_data(now->metaCert.get()),
                CRYPTO_BUFFER_data(now->metaCert.get()) + CRYPTO_BUFFER_len(now->metaCert.get())),
            metaBytes);
}

TEST(ManualCerts, ReloadNeverGeneratesAnIpCertificate) {
  TempDir dir;
  ManualCerts manual({dir.path(), {"192.0.2.44"}, ""});
  auto set = manual.load(nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  auto tls = ServerTls::create(*set);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_EQ(::unlink(dir.file("192.0.2.44.crt").c_str()), 0);
  ASSERT_EQ(::unlink(dir.file("192.0.2.44.key").c_str()), 0);
  absl::Status st = manual.reload(**tls);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir.file("192.0.2.44.crt")), std::string::npos) << st;
  EXPECT_FALSE(std::filesystem::exists(dir.file("192.0.2.44.crt")));
  EXPECT_EQ((*tls)->certs(), *set);
}

TEST(ManualCerts, WatchReportsChangesToOurFilesOnly) {
  TempDir dir;
  writePair(dir, dir.path(), "derp.example.com", "DNS:derp.example.com");
  ManualCerts manual({dir.path(), {"derp.example.com"}, ""});
  EXPECT_EQ(manual.fd(), -1);
  EXPECT_FALSE(manual.onWatchEvent());
  ASSERT_TRUE(manual.watch().ok());
  ASSERT_GE(manual.fd(), 0);
  EXPECT_FALSE(waitReadable(manual.fd(), 0));

  // Someone else's file: the fd wakes up, but it is not ours.
  testing::writeText(dir.file("unrelated.txt"), "x");
  ASSERT_TRUE(waitReadable(manual.fd(), 5000));
  EXPECT_FALSE(manual.onWatchEvent());
  EXPECT_FALSE(waitReadable(manual.fd(), 0));  // drained

  // Rewriting the certificate in place.
  testing::writeText(dir.file("derp.example.com.crt"),
                     testing::readText(dir.file("derp.example.com.crt")));
  ASSERT_TRUE(waitReadable(manual.fd(), 5000));
  EXPECT_TRUE(manual.onWatchEvent());
  EXPECT_FALSE(waitReadable(manual.fd(), 0));

  // Replacing the key by rename, as certbot-like tools and writePemFiles do.
  testing::writeText(dir.file("new.key"), testing::readText(dir.file("derp.example.com.key")));
  ASSERT_TRUE(waitReadable(manual.fd(), 5000));
  EXPECT_FALSE(manual.onWatchEvent());
  ASSERT_EQ(::rename(dir.file("new.key").c_str(), dir.file("derp.example.com.key").c_str()), 0);
  ASSERT_TRUE(waitReadable(manual.fd(), 5000));
  EXPECT_TRUE(manual.onWatchEvent());

  // Deleting one.
  ASSERT_EQ(::unlink(dir.file("derp.example.com.crt").c_str()), 0);
  ASSERT_TRUE(waitReadable(manual.fd(), 5000));
  EXPECT_TRUE(manual.onWatchEvent());
}

TEST(ManualCerts, WatchFailsForAMissingDirectory) {
  TempDir dir;
  ManualCerts manual({dir.file("nope"), {"derp.example.com"}, ""});
  absl::Status st = manual.watch();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir.file("nope")), std::string::npos) << st;
  EXPECT_EQ(manual.fd(), -1);
}

}  // namespace
}  // namespace derpd::tls
