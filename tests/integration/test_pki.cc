#include "integration/test_pki.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/hex.h"
#include "integration/derpd_process.h"

namespace derpd::testing {
namespace {

constexpr Nanos kOpensslTimeout = 30 * kSecond;

// Extension sections for `openssl x509 -req -extfile`; the SAN is added per leaf.
constexpr std::string_view kConfig =
    "[req]\ndistinguished_name = dn\n[dn]\n"
    "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n";

absl::Status writeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path));
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> findOnPath(std::string_view name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", absl::string_view(name.data(), name.size()));
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

absl::Status TestPki::run(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {openssl_};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> r = runCommand(argv, {}, kOpensslTimeout);
  if (!r.ok()) return r.status();
  if (r->exitCode != 0) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(argv, " "), " exited ", r->exitCode, ": ", r->err));
  }
  return absl::OkStatus();
}

absl::StatusOr<TestPki> TestPki::create(std::string dir, std::string openssl) {
  TestPki pki(std::move(dir), std::move(openssl));
  pki.config_ = pki.dir_ + "/openssl.cnf";
  pki.caKey_ = pki.dir_ + "/ca.key";
  pki.caCrt_ = pki.dir_ + "/ca.crt";
  if (absl::Status st = writeFile(pki.config_, kConfig); !st.ok()) return st;
  if (absl::Status st =
          pki.run({"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pki.caKey_});
      !st.ok()) {
    return st;
  }
  if (absl::Status st = pki.run({"req", "-x509", "-new", "-sha256", "-days", "30", "-config",
                                 pki.config_, "-extensions", "ca", "-key", pki.caKey_, "-subj",
                                 "/CN=derpd-test-ca", "-out", pki.caCrt_});
      !st.ok()) {
    return st;
  }
  return pki;
}

absl::StatusOr<LeafFiles> TestPki::issue(const std::string& stem, const std::string& cn,
                                         const std::string& san, KeyType type, int days) {
  static int serial = 100;
  LeafFiles f{dir_ + "/" + stem + ".crt", dir_ + "/" + stem + ".key"};
  const std::string csr = dir_ + "/" + stem + ".csr";
  const std::string ext = dir_ + "/" + stem + ".ext";
  absl::Status st = type == KeyType::kEcdsaP256 ? run({"genpkey", "-algorithm", "EC", "-pkeyopt",
                                                       "ec_paramgen_curve:P-256", "-out", f.key})
                                                : run({"genpkey", "-algorithm", "RSA", "-pkeyopt",
                                                       "rsa_keygen_bits:2048", "-out", f.key});
  if (!st.ok()) return st;
  st = writeFile(
      ext, absl::StrCat("basicConstraints = critical,CA:FALSE\n", "extendedKeyUsage = serverAuth\n",
                        "subjectAltName = ", san, "\n"));
  if (!st.ok()) return st;
  st = run({"req", "-new", "-config", config_, "-key", f.key, "-subj", "/CN=" + cn, "-out", csr});
  if (!st.ok()) return st;
  st = run({"x509", "-req", "-sha256", "-days", std::to_string(days), "-set_serial",
            std::to_string(++serial), "-in", csr, "-CA", caCrt_, "-CAkey", caKey_, "-extfile", ext,
            "-out", f.crt});
  if (!st.ok()) return st;
  return f;
}

absl::StatusOr<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status replaceFileAtomically(const std::string& dir, const std::string& name,
                                   std::string_view bytes) {
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp");
  if (absl::Status st = writeFile(tmp, bytes); !st.ok()) return st;
  const std::string dst = absl::StrCat(dir, "/", name);
  if (std::rename(tmp.c_str(), dst.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, " ", dst, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::vector<std::vector<uint8_t>> pemCertsDer(std::string_view pem) {
  std::vector<std::vector<uint8_t>> out;
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<long>(pem.size())));
  for (;;) {
    bssl::UniquePtr<X509> x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    uint8_t* der = nullptr;
    const int len = i2d_X509(x.get(), &der);
    if (len <= 0) break;
    out.emplace_back(der, der + len);
    OPENSSL_free(der);
  }
  ERR_clear_error();
  return out;
}

std::string sha256Hex(std::span<const uint8_t> bytes) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), digest);
  return hexEncode(digest);
}

int fileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

}  // namespace derpd::testing
