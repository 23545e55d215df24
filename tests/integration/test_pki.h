// Test PKI for the TLS integration tests, made at test time by the `openssl`
// command-line tool (an implementation independent of the BoringSSL code under
// test): a CA and leaf certificates it signs. Also the small file and digest
// helpers those tests need. One thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace derpd::testing {

// The full path of an executable named `name` on $PATH, if there is one.
std::optional<std::string> findOnPath(std::string_view name);

enum class KeyType { kEcdsaP256, kRsa2048 };

struct LeafFiles {
  std::string crt;  // PEM certificate
  std::string key;  // PEM private key
};

class TestPki {
 public:
  // Makes a CA (ECDSA P-256, CN derpd-test-ca) in `dir`, which must exist and
  // outlive the object. `openssl` is the tool's path.
  static absl::StatusOr<TestPki> create(std::string dir, std::string openssl);

  const std::string& caCrt() const { return caCrt_; }

  // A leaf signed by the CA, valid now for `days` days, with subject CN `cn`
  // and the subjectAltName `san` ("DNS:derp.test", "IP:127.0.0.1"), written
  // to <dir>/<stem>.crt and <dir>/<stem>.key.
  absl::StatusOr<LeafFiles> issue(const std::string& stem, const std::string& cn,
                                  const std::string& san, KeyType type, int days = 30);

 private:
  TestPki(std::string dir, std::string openssl)
      : dir_(std::move(dir)), openssl_(std::move(openssl)) {}
  absl::Status run(const std::vector<std::string>& args) const;

  std::string dir_;
  std::string openssl_;
  std::string caCrt_;
  std::string caKey_;
  std::string config_;
};

absl::StatusOr<std::string> readFile(const std::string& path);
// Writes `bytes` to dir/name by way of a temporary name in the same directory
// and a rename, so a watcher never sees a half-written file.
absl::Status replaceFileAtomically(const std::string& dir, const std::string& name,
                                   std::string_view bytes);
// The DER of every CERTIFICATE block in PEM text, in order.
std::vector<std::vector<uint8_t>> pemCertsDer(std::string_view pem);
// Lower-case hex SHA-256 (BoringSSL's libcrypto).
std::string sha256Hex(std::span<const uint8_t> bytes);
// The file's permission bits, or -1 if it cannot be stat'ed.
int fileMode(const std::string& path);

}  // namespace derpd::testing
