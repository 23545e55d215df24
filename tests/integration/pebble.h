// Pebble, Let's Encrypt's ACME test server (Debian's `pebble` package), for
// the tests of derpd's ACME client: pebble serves the ACME API over HTTPS
// with a certificate from the test PKI, and pebble-challtestsrv is its DNS
// server, answering every name with 127.0.0.1, so the names a test orders
// are validated against derpd's listeners on this machine. Validation runs
// without pebble's random sleeps (PEBBLE_VA_NOSLEEP). Both processes are
// stopped by the destructor. One thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "integration/test_pki.h"

namespace derpd::testing {

struct PebbleOptions {
  uint16_t httpPort = 0;  // where pebble sends HTTP-01 validations
  uint16_t tlsPort = 0;   // where pebble sends TLS-ALPN-01 validations
  // Required EAB, and its key ids -> base64url MAC keys.
  std::map<std::string, std::string> eabKeys;
  // The share of good nonces pebble rejects as bad (its default is 5).
  int nonceRejectPercent = 5;
  // The ACME API's port (0: a free one), for a directory URL known before
  // pebble starts.
  uint16_t acmePort = 0;
};

// A free TCP port on 127.0.0.1 (bound, read, closed: free a moment ago).
absl::StatusOr<uint16_t> freeLoopbackPort();

class Pebble {
 public:
  // Whether pebble and pebble-challtestsrv are installed; when not, the
  // reason for a skip.
  static std::string missingReason();

  // Starts both in `dir` (which must outlive the object), waiting until the
  // directory answers.
  static absl::StatusOr<std::unique_ptr<Pebble>> start(const std::string& dir, TestPki& pki,
                                                       PebbleOptions options);
  ~Pebble();

  // https://127.0.0.1:<port>/dir; its certificate is signed by the test CA.
  std::string directoryUrl() const;
  // The root that signs what pebble issues (made anew at each start), PEM.
  absl::StatusOr<std::string> issuingRootPem() const;
  // What both processes printed.
  std::string log() const;

 private:
  Pebble() = default;
  std::string dir_;
  std::string caFile_;
  uint16_t acmePort_ = 0;
  uint16_t managementPort_ = 0;
  pid_t pebble_ = -1;
  pid_t dns_ = -1;
};

}  // namespace derpd::testing
