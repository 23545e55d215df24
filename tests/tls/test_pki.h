// Test PKI for the tls tests: a scratch directory, and keys and certificates
// made by the `openssl` command-line tool, an implementation independent of
// the BoringSSL code under test.
#pragma once

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace derpd::testing {

// A fresh directory under TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/derpd-tls-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void writeText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << "writing " << path;
}

inline mode_t fileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Runs `openssl <args>` quietly; false (and a test failure) when it fails.
inline bool openssl(const std::string& args) {
  const std::string cmd = "openssl " + args + " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) ADD_FAILURE() << "failed (" << rc << "): " << cmd;
  return rc == 0;
}

enum class KeyKind { kRsaPkcs1, kRsaPkcs8, kEcSec1, kEcPkcs8 };

inline const char* keyKindName(KeyKind k) {
  switch (k) {
    case KeyKind::kRsaPkcs1:
      return "RsaPkcs1";
    case KeyKind::kRsaPkcs8:
      return "RsaPkcs8";
    case KeyKind::kEcSec1:
      return "EcSec1";
    case KeyKind::kEcPkcs8:
      return "EcPkcs8";
  }
  return "?";
}

// The PEM block type each kind is written with.
inline const char* keyPemType(KeyKind k) {
  switch (k) {
    case KeyKind::kRsaPkcs1:
      return "RSA PRIVATE KEY";
    case KeyKind::kEcSec1:
      return "EC PRIVATE KEY";
    default:
      return "PRIVATE KEY";
  }
}

inline bool genKey(const std::string& path, KeyKind kind) {
  switch (kind) {
    case KeyKind::kRsaPkcs1:
      return openssl("genrsa -traditional -out " + path + " 2048");
    case KeyKind::kRsaPkcs8:
      return openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + path);
    case KeyKind::kEcSec1:
      return openssl("ecparam -name prime256v1 -genkey -noout -out " + path);
    case KeyKind::kEcPkcs8:
      return openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + path);
  }
  return false;
}

// An openssl config with the extension sections the helpers below use; `san`
// is a subjectAltName value ("DNS:a.example,IP:10.0.0.1") or empty for none.
inline std::string writeConfig(const TempDir& dir, const std::string& san) {
  static int counter = 0;
  const std::string path = dir.file("openssl-" + std::to_string(++counter) + ".cnf");
  std::string text =
      "[req]\ndistinguished_name = dn\n[dn]\n"
      "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
      "[leaf]\nbasicConstraints = critical,CA:FALSE\n";
  if (!san.empty()) text += "subjectAltName = " + san + "\n";
  writeText(path, text);
  return path;
}

// A self-signed leaf for `keyPath` with subject CN `cn` and the SANs.
inline bool selfSignedCert(const TempDir& dir, const std::string& keyPath,
                           const std::string& crtPath, const std::string& cn,
                           const std::string& san) {
  const std::string cnf = writeConfig(dir, san);
  return openssl("req -x509 -new -sha256 -days 30 -config " + cnf + " -extensions leaf -key " +
                 keyPath + " -subj /CN=" + cn + " -out " + crtPath);
}

// A root CA, an intermediate CA under it, and a leaf (EC keys) under that.
struct TestChain {
  std::string leafCrt, leafKey, intermediateCrt, rootCrt;
};

inline TestChain makeChain(const TempDir& dir, const std::string& san) {
  TestChain c;
  const std::string rootKey = dir.file("root.key");
  const std::string intKey = dir.file("int.key");
  c.rootCrt = dir.file("root.crt");
  c.intermediateCrt = dir.file("int.crt");
  c.leafCrt = dir.file("leaf.crt");
  c.leafKey = dir.file("leaf.key");
  const std::string cnf = writeConfig(dir, san);
  genKey(rootKey, KeyKind::kEcSec1);
  genKey(intKey, KeyKind::kEcSec1);
  genKey(c.leafKey, KeyKind::kEcSec1);
  openssl("req -x509 -new -sha256 -days 30 -config " + cnf + " -extensions ca -key " + rootKey +
          " -subj /CN=Test-Root -out " + c.rootCrt);
  openssl("req -new -config " + cnf + " -key " + intKey + " -subj /CN=Test-Intermediate -out " +
          dir.file("int.csr"));
  openssl("x509 -req -sha256 -days 30 -set_serial 2 -in " + dir.file("int.csr") + " -CA " +
          c.rootCrt + " -CAkey " + rootKey + " -extfile " + cnf + " -extensions ca -out " +
          c.intermediateCrt);
  openssl("req -new -config " + cnf + " -key " + c.leafKey + " -subj /CN=Test-Leaf -out " +
          dir.file("leaf.csr"));
  openssl("x509 -req -sha256 -days 30 -set_serial 3 -in " + dir.file("leaf.csr") + " -CA " +
          c.intermediateCrt + " -CAkey " + intKey + " -extfile " + cnf + " -extensions leaf -out " +
          c.leafCrt);
  return c;
}

// The DER of every CERTIFICATE block in a PEM file, in order.
inline std::vector<std::vector<uint8_t>> pemCertsDer(const std::string& pem) {
  std::vector<std::vector<uint8_t>> out;
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  for (;;) {
    bssl::UniquePtr<X509> x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    uint8_t* der = nullptr;
    const int len = i2d_X509(x.get(), &der);
    out.emplace_back(der, der + len);
    OPENSSL_free(der);
  }
  ERR_clear_error();
  return out;
}

inline bssl::UniquePtr<X509> parseDer(std::span<const uint8_t> der) {
  const uint8_t* p = der.data();
  return bssl::UniquePtr<X509>(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
}

}  // namespace derpd::testing
