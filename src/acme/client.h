// The ACME protocol (RFC 8555) as derpd's certificate manager uses it, over
// the blocking HTTPS client (client/http_fetch.h): the directory, nonces, the
// account (with external account binding when the CA asks for it), orders,
// authorizations and their challenges, finalization with a CSR, and the
// certificate's download. Blocking; one control thread, never a shard.
//
// Every request is a JWS signed with the account key (jose.h). A badNonce
// answer is retried at once with the nonce it carries (at most 10 times in
// a row); other errors come back as a Status whose message is the CA's problem
// document (type and detail) and whose payload, when the CA sent Retry-After,
// carries the time to wait (retryAfterUnix()). Rate limits
// (urn:ietf:params:acme:error:rateLimited, HTTP 429) are ResourceExhausted.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <openssl/base.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "client/http_fetch.h"
#include "tls/certificate.h"

namespace derpd::acme {

inline constexpr const char* kLetsEncryptDirectory =
    "https://acme-v02.api.letsencrypt.org/directory";
inline constexpr const char* kGoogleDirectory = "https://dv.acme-v02.api.pki.goog/directory";

struct Directory {
  std::string newNonce;
  std::string newAccount;
  std::string newOrder;
  std::string termsOfService;
  bool externalAccountRequired = false;
};

struct Order {
  std::string url;
  std::string status;  // pending, ready, processing, valid, invalid
  std::vector<std::string> authorizations;
  std::string finalize;
  std::string certificate;  // once valid
  std::string error;        // the problem, once invalid
};

struct Challenge {
  std::string type;  // http-01, tls-alpn-01, dns-01, ...
  std::string url;
  std::string token;
  std::string status;
  std::string error;
};

struct Authorization {
  std::string identifier;  // the DNS name
  std::string status;      // pending, valid, invalid, ...
  std::vector<Challenge> challenges;
};

// When a failed request's answer said to wait (Retry-After), the time until
// which, in seconds since the epoch.
std::optional<int64_t> retryAfterUnix(const absl::Status& status);

// Parses a Retry-After value: delay seconds, or an HTTP-date.
std::optional<int64_t> parseRetryAfter(absl::string_view value, int64_t nowUnix);

class Client {
 public:
  struct Options {
    std::string directoryUrl = kLetsEncryptDirectory;
    client::TrustStore trust = client::TrustStore::fromEnvironment();
    Nanos requestTimeout = 30 * kSecond;
  };

  Client(Options options, bssl::UniquePtr<EVP_PKEY> accountKey);
  ~Client();

  const Directory* directory() const { return dir_ ? &*dir_ : nullptr; }
  EVP_PKEY* accountKey() const { return accountKey_.get(); }
  const std::string& accountUrl() const { return accountUrl_; }

  // Finds or creates the account of this key (newAccount answers with the
  // existing account's URL when the key is known), agreeing to the terms.
  // eabKid/eabKeyBase64url: the CA's external account binding, required
  // when the directory says so.
  absl::Status registerAccount(const std::string& email, const std::string& eabKid,
                               const std::string& eabKeyBase64url);

  absl::StatusOr<Order> newOrder(const std::vector<std::string>& dnsNames);
  absl::StatusOr<Order> getOrder(const std::string& url);
  absl::StatusOr<Authorization> getAuthorization(const std::string& url);
  // Tells the CA the challenge's response is in place.
  absl::Status acceptChallenge(const std::string& url);
  absl::StatusOr<Order> finalize(const Order& order, std::span<const uint8_t> csrDer);
  // The PEM chain, leaf first.
  absl::StatusOr<std::string> downloadCertificate(const std::string& url);

  // Retry-After of the last answer (polls use it), if it had one.
  std::optional<int64_t> lastRetryAfterUnix() const { return lastRetryAfter_; }
  // Requests sent again after a badNonce answer, since construction.
  uint64_t badNonceRetries() const { return badNonceRetries_; }

 private:
  absl::Status loadDirectory();
  absl::StatusOr<std::string> takeNonce();
  // A signed POST (payload nullopt: POST-as-GET). kid: sign with the account
  // URL (false for newAccount).
  absl::StatusOr<client::HttpResponse> post(const std::string& url,
                                            const std::optional<std::string>& payload,
                                            bool kid = true);
  absl::Status problem(const client::HttpResponse& r, const std::string& url);

  Options options_;
  bssl::UniquePtr<EVP_PKEY> accountKey_;
  std::optional<Directory> dir_;
  std::string nonce_;
  std::string accountUrl_;
  std::optional<int64_t> lastRetryAfter_;
  uint64_t badNonceRetries_ = 0;
};

// A DER CSR for dnsNames (all as subjectAltNames, the first also as the
// subject's CN) signed with key (SHA-256).
absl::StatusOr<std::vector<uint8_t>> makeCsr(EVP_PKEY* key,
                                             const std::vector<std::string>& dnsNames);

// What the listeners must answer while a challenge is open: for http-01,
// /.well-known/acme-challenge/<token> gives the key authorization; for
// tls-alpn-01, a handshake for the identifier offering ALPN acme-tls/1 gets
// tlsAlpnCertificate(identifier, key authorization).
struct OpenChallenge {
  std::string type;
  std::string identifier;  // the DNS name
  std::string token;
  std::string keyAuthorization;
};
struct ChallengeHooks {
  std::function<void(const OpenChallenge&)> publish;
  std::function<void(const OpenChallenge&)> withdraw;
};

// RFC 8737: the self-signed certificate a TLS-ALPN-01 validation must get
// for dnsName: that name as its only subjectAltName and the critical
// acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the SHA-256 of the
// key authorization. A fresh P-256 key; valid from an hour ago for a week.
absl::StatusOr<tls::CertifiedKey> tlsAlpnCertificate(const std::string& dnsName,
                                                     absl::string_view keyAuthorization);

// Sleeps up to `delay`; false when the caller is stopping (the issuance
// gives up with Cancelled).
using Waiter = std::function<bool(Nanos delay)>;

// The whole issuance of one certificate for dnsNames: the order, each
// pending authorization's challenge of the first type in challengeTypes
// the CA offers, answered through hooks (and withdrawn after), a new ECDSA
// P-256 key and its CSR, finalization, the download. Polls as Retry-After
// says (1 s when silent, at most 10 s), until `timeout` has passed.
absl::StatusOr<tls::CertifiedKey> obtainCertificate(Client& client,
                                                    const std::vector<std::string>& dnsNames,
                                                    const std::vector<std::string>& challengeTypes,
                                                    const ChallengeHooks& hooks, const Waiter& wait,
                                                    Nanos timeout);

}  // namespace derpd::acme
