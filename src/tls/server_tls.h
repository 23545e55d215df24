// ServerTls: the process's TLS server configuration, shared by every shard.
//
// One SSL_CTX (TLS 1.2 minimum, 1.3 preferred, BoringSSL's default cipher
// choice, ALPN http/1.1). The certificate is not fixed in the SSL_CTX: it is
// chosen per handshake, when the ClientHello arrives, from the current
// CertSet by SNI (an unknown or absent SNI gets the default, the first). A
// reload swaps the CertSet; handshakes after the swap use the new one, live
// connections keep what they negotiated. Every chain is sent with the DERP
// meta-cert appended.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/base.h>
#include <openssl/ssl.h>

#include "absl/status/statusor.h"
#include "tls/certificate.h"

namespace derpd::tls {

// An immutable set of certificates; the first is the default.
struct CertSet {
  std::vector<CertifiedKey> certs;
  bssl::UniquePtr<CRYPTO_BUFFER> metaCert;  // appended to every chain (may be null)
  // Names served once their certificate arrives (ACME is obtaining it): a
  // handshake for one of them, or any handshake while certs is empty, fails
  // at once (counted) instead of getting another name's certificate.
  std::vector<std::string> pending;

  // The certificate for `serverName` (SNI): the first whose names match it
  // (exact or wildcard), else the default.
  const CertifiedKey& select(std::string_view serverName) const;
  // The first whose names match `serverName`, or nullptr (none, or no SNI).
  const CertifiedKey* match(std::string_view serverName) const;
};

class ServerTls {
 public:
  // Fails if the set has neither certificates nor pending names, or BoringSSL
  // refuses the configuration.
  // requireSni: handshakes whose SNI is absent or matches no certificate fail
  // (otherwise they get the first certificate).
  static absl::StatusOr<std::unique_ptr<ServerTls>> create(std::shared_ptr<const CertSet> certs,
                                                           bool requireSni = false);
  ~ServerTls();

  // A new server-side SSL for one connection (any thread). The caller owns it
  // and sets its BIO.
  bssl::UniquePtr<SSL> newSession() const;

  // Any thread. New handshakes use `certs` from now on.
  void replaceCerts(std::shared_ptr<const CertSet> certs);
  std::shared_ptr<const CertSet> certs() const;

  // For metrics: the earliest expiry among the current certificates.
  int64_t earliestNotAfterUnix() const { return notAfter_.load(std::memory_order_relaxed); }

  SSL_CTX* ctx() const { return ctx_.get(); }

  // Certificate reloads, counted by whoever reloads (for metrics).
  std::atomic<uint64_t> reloadsOk{0};
  std::atomic<uint64_t> reloadsFailed{0};
  // Certificates loaded (at start or on reload) already expired or expiring
  // within 14 days (tls::expiresSoon).
  std::atomic<uint64_t> expiringLoads{0};
  // TLS-ALPN-01 (RFC 8737): while the ACME manager has one open for a name,
  // a handshake for that name offering ALPN "acme-tls/1" gets this
  // certificate (alone, no meta-cert) and that protocol. Any thread.
  using AlpnChallenges = std::map<std::string, CertifiedKey, std::less<>>;
  void setAlpnChallenges(std::shared_ptr<const AlpnChallenges> challenges);

  // What the ACME manager reports about each name it keeps, for /metrics.
  struct AcmeNameStatus {
    std::string name;
    int consecutiveFailures = 0;
    int64_t lastFailureUnix = 0;  // 0: never failed
    int64_t nextAttemptUnix = 0;
  };
  void setAcmeStatus(std::vector<AcmeNameStatus> status);
  std::vector<AcmeNameStatus> acmeStatus() const;

  // ACME issuances (orders to download), counted by the ACME manager.
  std::atomic<uint64_t> acmeOrdersOk{0};
  std::atomic<uint64_t> acmeOrdersFailed{0};
  // Handshakes refused because their name's certificate is still pending.
  mutable std::atomic<uint64_t> refusedAwaitingCertificate{0};

 private:
  ServerTls() = default;
  static int selectCertificate(SSL* ssl, void* arg);
  static ssl_select_cert_result_t selectEarly(const SSL_CLIENT_HELLO* hello);
  static int selectAlpn(SSL* ssl, const uint8_t** out, uint8_t* outLen, const uint8_t* in,
                        unsigned inLen, void* arg);

  bssl::UniquePtr<SSL_CTX> ctx_;
  mutable std::mutex mu_;
  std::shared_ptr<const CertSet> certs_;  // guarded by mu_
  std::vector<AcmeNameStatus> acmeStatus_;                // guarded by mu_
  std::shared_ptr<const AlpnChallenges> alpnChallenges_;  // guarded by mu_
  std::atomic<int64_t> notAfter_{0};
  bool requireSni_ = false;
};

}  // namespace derpd::tls
