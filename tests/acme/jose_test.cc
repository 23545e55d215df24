// JOSE for ACME, checked against independent implementations: the openssl
// command-line tool makes the key, reads its public point, hashes, verifies
// the ES256 signature and computes the HMAC; coreutils' basenc does the
// base64url. Also the ACME client's pure pieces: its CSR (read and verified
// by openssl req) and Retry-After. Exits through gtest; the tools come with
// Debian's openssl and coreutils, which the build itself needs.
#include "acme/jose.h"

#include "acme/client.h"
#include "acme/renewal.h"
#include "tls/certificate.h"

#include <gtest/gtest.h>

#include <cctype>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace derpd::acme {
namespace {

// A scratch directory, removed at the end.
class Scratch {
 public:
  Scratch() {
    std::string tmpl = "/tmp/derpd-jose-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp";
    dir_ = tmpl;
  }
  ~Scratch() { std::system(("rm -rf " + dir_).c_str()); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

// Runs a shell command; its stdout, or a test failure when it fails.
std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "popen " << cmd;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = ::pclose(p);
  EXPECT_EQ(rc, 0) << cmd;
  return out;
}

void writeFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// basenc's base64url of a file, padding removed.
std::string basencUrl(const std::string& path) {
  std::string out = sh("basenc --base64url -w0 < " + path);
  while (!out.empty() && (out.back() == '=' || out.back() == '\n')) out.pop_back();
  return out;
}

bssl::UniquePtr<EVP_PKEY> loadKey(const std::string& path) {
  const std::string pem = readFile(path);
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return bssl::UniquePtr<EVP_PKEY>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// A P-256 key made by the openssl tool.
bssl::UniquePtr<EVP_PKEY> opensslKey(const Scratch& s) {
  sh("openssl ecparam -name prime256v1 -genkey -noout -out " + s.file("key.pem"));
  sh("openssl ec -in " + s.file("key.pem") + " -pubout -out " + s.file("pub.pem") + " 2>/dev/null");
  return loadKey(s.file("key.pem"));
}

std::string decodedText(const std::string& b64) {
  std::optional<std::vector<uint8_t>> bytes = base64urlDecode(b64);
  EXPECT_TRUE(bytes.has_value()) << b64;
  return bytes ? std::string(bytes->begin(), bytes->end()) : "";
}

TEST(Jose, Base64urlMatchesRfc4648WithoutPadding) {
  // RFC 4648 section 10, padding dropped.
  const std::pair<const char*, const char*> cases[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(base64url(absl::string_view(plain)), encoded);
    EXPECT_EQ(decodedText(encoded), plain);
  }
  // The two characters that differ from standard base64 ("+/" there).
  const uint8_t high[] = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url(high), "-_-_");
  for (const char* bad : {"Zg==", "Zm9v\n", "Zm+v", "Z", "Zh"}) {
    EXPECT_FALSE(base64urlDecode(bad).has_value()) << bad;
  }
}

TEST(Jose, JwkAndThumbprintAgreeWithOpenssl) {
  Scratch s;
  bssl::UniquePtr<EVP_PKEY> key = opensslKey(s);
  ASSERT_TRUE(key);
  // The public point as the openssl tool reads it: the last 64 bytes of the
  // SubjectPublicKeyInfo are X then Y.
  sh("openssl ec -pubin -in " + s.file("pub.pem") + " -outform DER -out " + s.file("pub.der") +
     " 2>/dev/null");
  const std::string der = readFile(s.file("pub.der"));
  ASSERT_GE(der.size(), 65u);
  writeFile(s.file("x"), der.substr(der.size() - 64, 32));
  writeFile(s.file("y"), der.substr(der.size() - 32, 32));
  const std::string expected = R"({"crv":"P-256","kty":"EC","x":")" + basencUrl(s.file("x")) +
                               R"(","y":")" + basencUrl(s.file("y")) + R"("})";
  absl::StatusOr<std::string> got = jwk(key.get());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, expected);

  writeFile(s.file("jwk"), expected);
  sh("openssl dgst -sha256 -binary -out " + s.file("digest") + " " + s.file("jwk"));
  absl::StatusOr<std::string> print = thumbprint(key.get());
  ASSERT_TRUE(print.ok()) << print.status();
  EXPECT_EQ(*print, basencUrl(s.file("digest")));
  absl::StatusOr<std::string> keyAuth = keyAuthorization("tok-EN_1", key.get());
  ASSERT_TRUE(keyAuth.ok());
  EXPECT_EQ(*keyAuth, "tok-EN_1." + *print);
}

TEST(Jose, RefusesKeysThatAreNotP256) {
  Scratch s;
  sh("openssl ecparam -name secp384r1 -genkey -noout -out " + s.file("p384.pem"));
  bssl::UniquePtr<EVP_PKEY> p384 = loadKey(s.file("p384.pem"));
  ASSERT_TRUE(p384);
  EXPECT_FALSE(jwk(p384.get()).ok());
  EXPECT_FALSE(signEs256(p384.get(), {"n", "https://ca/x", ""}, "{}").ok());
}

// The ES256 signature over protected "." payload, verified by the openssl tool.
void expectOpensslVerifies(const Scratch& s, const nlohmann::json& jws) {
  const std::string input =
      jws["protected"].get<std::string>() + "." + jws["payload"].get<std::string>();
  std::optional<std::vector<uint8_t>> rs = base64urlDecode(jws["signature"].get<std::string>());
  ASSERT_TRUE(rs.has_value());
  ASSERT_EQ(rs->size(), 64u) << "ES256 is R || S, 32 bytes each";
  // The tool wants DER; the conversion is this test's.
  bssl::UniquePtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(rs->data(), 32, nullptr);
  BIGNUM* sv = BN_bin2bn(rs->data() + 32, 32, nullptr);
  ASSERT_TRUE(ECDSA_SIG_set0(sig.get(), r, sv));
  uint8_t* der = nullptr;
  size_t derLen = 0;
  ASSERT_TRUE(ECDSA_SIG_to_bytes(&der, &derLen, sig.get()));
  writeFile(s.file("sig.der"), std::string(reinterpret_cast<char*>(der), derLen));
  OPENSSL_free(der);
  writeFile(s.file("input"), input);
  const std::string out = sh("openssl dgst -sha256 -verify " + s.file("pub.pem") + " -signature " +
                             s.file("sig.der") + " " + s.file("input"));
  EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
}

TEST(Jose, Es256JwsWithTheKeyOrTheAccountUrl) {
  Scratch s;
  bssl::UniquePtr<EVP_PKEY> key = opensslKey(s);
  ASSERT_TRUE(key);
  const std::string payload = R"({"termsOfServiceAgreed":true})";
  absl::StatusOr<std::string> text =
      signEs256(key.get(), {"nonce-1", "https://ca.test/new-acct", ""}, payload);
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json jws = nlohmann::json::parse(*text);
  ASSERT_EQ(jws.size(), 3u);
  nlohmann::json prot = nlohmann::json::parse(decodedText(jws["protected"]));
  EXPECT_EQ(prot["alg"], "ES256");
  EXPECT_EQ(prot["nonce"], "nonce-1");
  EXPECT_EQ(prot["url"], "https://ca.test/new-acct");
  EXPECT_FALSE(prot.contains("kid"));
  EXPECT_EQ(prot["jwk"].dump(), *jwk(key.get()));
  EXPECT_EQ(decodedText(jws["payload"]), payload);
  expectOpensslVerifies(s, jws);

  // With the account URL, and POST-as-GET's empty payload.
  text = signEs256(key.get(), {"nonce-2", "https://ca.test/order/1", "https://ca.test/acct/7"}, "");
  ASSERT_TRUE(text.ok()) << text.status();
  jws = nlohmann::json::parse(*text);
  prot = nlohmann::json::parse(decodedText(jws["protected"]));
  EXPECT_EQ(prot["kid"], "https://ca.test/acct/7");
  EXPECT_FALSE(prot.contains("jwk"));
  EXPECT_EQ(jws["payload"], "");
  expectOpensslVerifies(s, jws);
}

TEST(Jose, ExternalAccountBindingIsHs256OverTheJwk) {
  Scratch s;
  bssl::UniquePtr<EVP_PKEY> key = opensslKey(s);
  ASSERT_TRUE(key);
  // A MAC key as a CA hands it out (base64url), and its hex for the tool.
  const std::string macB64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
  std::optional<std::vector<uint8_t>> mac = base64urlDecode(macB64);
  ASSERT_TRUE(mac.has_value());
  std::string hex;
  for (uint8_t b : *mac) {
    hex.push_back("0123456789abcdef"[b >> 4]);
    hex.push_back("0123456789abcdef"[b & 15]);
  }

  absl::StatusOr<std::string> text =
      externalAccountBinding(key.get(), "kid-1", macB64, "https://ca.test/new-acct");
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json jws = nlohmann::json::parse(*text);
  nlohmann::json prot = nlohmann::json::parse(decodedText(jws["protected"]));
  EXPECT_EQ(prot, (nlohmann::json{
                      {"alg", "HS256"}, {"kid", "kid-1"}, {"url", "https://ca.test/new-acct"}}));
  EXPECT_EQ(decodedText(jws["payload"]), *jwk(key.get()));
  writeFile(s.file("input"),
            jws["protected"].get<std::string>() + "." + jws["payload"].get<std::string>());
  sh("openssl dgst -sha256 -mac HMAC -macopt hexkey:" + hex + " -binary -out " + s.file("mac") +
     " " + s.file("input"));
  EXPECT_EQ(jws["signature"], basencUrl(s.file("mac")));

  EXPECT_FALSE(externalAccountBinding(key.get(), "kid-1", "not base64url!", "u").ok());
}

TEST(AcmeClient, CsrNamesEveryHostAndIsSignedByTheKey) {
  Scratch s;
  bssl::UniquePtr<EVP_PKEY> key = opensslKey(s);
  ASSERT_TRUE(key);
  absl::StatusOr<std::vector<uint8_t>> csr = makeCsr(key.get(), {"derp.example.com", "b.example"});
  ASSERT_TRUE(csr.ok()) << csr.status();
  writeFile(s.file("csr.der"), std::string(csr->begin(), csr->end()));
  const std::string text =
      sh("openssl req -inform DER -in " + s.file("csr.der") + " -noout -text -verify 2>&1");
  EXPECT_NE(text.find("verify OK"), std::string::npos) << text;
  EXPECT_NE(text.find("CN = derp.example.com"), std::string::npos) << text;
  EXPECT_NE(text.find("DNS:derp.example.com, DNS:b.example"), std::string::npos) << text;
  // The CSR carries the key's public half.
  const std::string csrPub =
      sh("openssl req -inform DER -in " + s.file("csr.der") + " -noout -pubkey");
  EXPECT_EQ(csrPub, readFile(s.file("pub.pem")));
  EXPECT_FALSE(makeCsr(key.get(), {}).ok());
}

TEST(AcmeClient, TlsAlpnCertificateCarriesTheCriticalAcmeIdentifier) {
  Scratch s;
  const std::string keyAuth = "token.thumbprint";
  absl::StatusOr<tls::CertifiedKey> cert = tlsAlpnCertificate("derp.example.com", keyAuth);
  ASSERT_TRUE(cert.ok()) << cert.status();
  std::span<const uint8_t> der = cert->leafDer();
  writeFile(s.file("alpn.der"), std::string(der.begin(), der.end()));
  writeFile(s.file("keyauth"), keyAuth);
  const std::string text =
      sh("openssl x509 -inform DER -in " + s.file("alpn.der") + " -noout -text -certopt ext_dump");
  EXPECT_NE(text.find("DNS:derp.example.com"), std::string::npos) << text;
  EXPECT_NE(text.find("1.3.6.1.5.5.7.1.31: critical"), std::string::npos) << text;
  // The extension's value is the DER OCTET STRING (04 20) of SHA-256(keyAuth).
  std::string digest = sh("openssl dgst -sha256 -r " + s.file("keyauth"));
  digest = digest.substr(0, 64);
  // The dump's lines: "0000 - 04 20 eb 5a ...-9c 76 ...   . .Z.g..."; the
  // bytes are between " - " and the three spaces before the characters.
  std::string dumped;
  std::istringstream lines(text.substr(text.find("1.3.6.1.5.5.7.1.31: critical")));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line)) {
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) break;
    for (char c : line.substr(dash + 3, line.find("   ", dash + 3) - dash - 3)) {
      if (std::isxdigit(static_cast<unsigned char>(c))) dumped += c;
    }
  }
  EXPECT_NE(dumped.find("0420" + digest), std::string::npos) << text << "\n" << digest;
}

TEST(AcmeClient, RetryAfterIsSecondsOrAnHttpDate) {
  EXPECT_EQ(parseRetryAfter("120", 1000), 1120);
  EXPECT_EQ(parseRetryAfter(" 0 ", 1000), 1000);
  // RFC 9110's example date.
  EXPECT_EQ(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", 0), 784111777);
  EXPECT_EQ(parseRetryAfter("-5", 1000), std::nullopt);
  EXPECT_EQ(parseRetryAfter("soon", 1000), std::nullopt);
  EXPECT_EQ(parseRetryAfter("99999999999999", 1000), std::nullopt);
  EXPECT_EQ(retryAfterUnix(absl::OkStatus()), std::nullopt);
}

TEST(AcmeRenewal, AThirdOfTheLifetimeBeforeExpiryWithJitter) {
  const int64_t day = 86400;
  // 90 days: renew with 30 left, up to 3 days earlier.
  EXPECT_EQ(renewalTime(0, 90 * day, 0.0), 60 * day);
  EXPECT_EQ(renewalTime(0, 90 * day, 0.999), 60 * day - 258940);  // 0.999 of 3 days
  // Short-lived certificates: 6 days renews with 2 left, 45 days with 15.
  EXPECT_EQ(renewalTime(1000, 1000 + 6 * day, 0.0), 1000 + 4 * day);
  EXPECT_EQ(renewalTime(0, 45 * day, 0.0), 30 * day);
  EXPECT_GT(renewalTime(0, 6 * day, 0.999), 3 * day);
  // A certificate with nonsense dates is renewed at its end, not never.
  EXPECT_EQ(renewalTime(100, 50, 0.5), 50);
}

TEST(AcmeRenewal, BackoffDoublesFromAMinuteToThreeHours) {
  EXPECT_EQ(retryDelaySeconds(1, 0.5), 60);
  EXPECT_EQ(retryDelaySeconds(2, 0.5), 120);
  EXPECT_EQ(retryDelaySeconds(5, 0.5), 960);
  EXPECT_EQ(retryDelaySeconds(8, 0.5), 7680);
  EXPECT_EQ(retryDelaySeconds(9, 0.5), 3 * 3600);
  EXPECT_EQ(retryDelaySeconds(1000, 0.5), 3 * 3600);
  EXPECT_EQ(retryDelaySeconds(1, 0.0), 48);
  EXPECT_EQ(retryDelaySeconds(1000, 0.999), 3 * 3600 + 2155);
}

}  // namespace
}  // namespace derpd::acme
