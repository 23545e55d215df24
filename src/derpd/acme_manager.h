// AcmeManager: -certmode letsencrypt and gcp. Keeps a certificate for each
// -hostname name: serves the one in -certdir's cache (derper's layout,
// tls/autocert_cache.h) while it is valid, obtains one over ACME when there
// is none, and renews it when a third of its lifetime is left, swapping each
// new certificate into the ServerTls for new handshakes (live connections
// keep theirs). The work runs on a thread of its own; shards only read the
// challenge answers it publishes (HTTP-01 on -http-port) and the CertSet.
// Until a name has a certificate its handshakes fail at once, counted.
// Constructed and destroyed by the main thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "acme/client.h"
#include "http/acme_challenges.h"
#include "tls/certificate.h"
#include "tls/server_tls.h"

namespace derpd {

class AcmeManager {
 public:
  struct Options {
    std::vector<std::string> hostnames;
    std::string certDir;
    std::string directoryUrl;
    std::string email;
    std::string eabKid;
    std::string eabKey;
    std::string serverPublicHex;  // for the meta-certificate in every chain
    bool requireSni = false;
    // -http-port is on: HTTP-01 is tried first (then TLS-ALPN-01 after a
    // failure, alternating); off: TLS-ALPN-01 only.
    bool http01 = true;
  };

  // Reads the cache and makes the ServerTls from it: each name with a valid
  // cached certificate is served now, the others are pending. The lines for
  // the operator go to *notices (one per name: served until when, or awaited).
  static absl::StatusOr<std::unique_ptr<AcmeManager>> create(Options options,
                                                             std::vector<std::string>* notices);
  ~AcmeManager();  // stops the thread (an ACME request in flight ends first)

  std::unique_ptr<tls::ServerTls> takeTls() { return std::move(ownedTls_); }
  const http::AcmeChallengeStore& challenges() const { return challenges_; }

  // Starts obtaining and renewing on the manager's thread.
  void start();
  // SIGHUP: names without a certificate, or whose last attempt failed, are
  // tried again now instead of at their backoff's end.
  void retryNow();

 private:
  struct Name {
    std::string host;
    std::optional<tls::CertifiedKey> cert;
    int64_t nextAttemptUnix = 0;
    int failures = 0;
    int64_t lastFailureUnix = 0;
  };

  explicit AcmeManager(Options options) : options_(std::move(options)) {}
  void run();
  void attempt(Name& name);
  // Registers the account (the cached key, or a new one) once.
  absl::Status ensureAccount();
  absl::StatusOr<tls::CertifiedKey> obtain(const Name& name);
  void install();
  void publishStatus();
  void openChallenge(const acme::OpenChallenge& c, bool open);
  // Sleeps up to `delay`; false once stopping.
  bool sleepFor(int64_t delayNanos);
  double jitter();

  Options options_;
  std::unique_ptr<tls::ServerTls> ownedTls_;  // until takeTls()
  tls::ServerTls* tls_ = nullptr;
  http::AcmeChallengeStore challenges_;
  tls::ServerTls::AlpnChallenges alpnChallenges_;  // the manager's thread only
  bssl::UniquePtr<CRYPTO_BUFFER> metaCert_;
  std::vector<Name> names_;             // the manager's thread only (after start)
  std::unique_ptr<acme::Client> acme_;  // the account, once registered

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  bool retry_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace derpd
