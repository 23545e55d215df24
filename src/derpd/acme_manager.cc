#include "derpd/acme_manager.h"

#include <openssl/rand.h>

#include <algorithm>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "acme/renewal.h"
#include "base/clock.h"
#include "base/log.h"
#include "tls/autocert_cache.h"

namespace derpd {
namespace {

// One issuance, from the order to the download, before it counts as failed.
constexpr Nanos kIssueTimeout = 5 * 60 * kSecond;

}  // namespace

absl::StatusOr<std::unique_ptr<AcmeManager>> AcmeManager::create(
    Options options, std::vector<std::string>* notices) {
  std::unique_ptr<AcmeManager> m(new AcmeManager(std::move(options)));
  const int64_t now = unixNow();
  for (const std::string& host : m->options_.hostnames) {
    Name name;
    name.host = host;
    absl::StatusOr<tls::CertifiedKey> cert =
        tls::autocert::loadCert(m->options_.certDir, host, now);
    if (cert.ok()) {
      name.nextAttemptUnix =
          acme::renewalTime(cert->notBeforeUnix, cert->notAfterUnix, m->jitter());
      notices->push_back(absl::StrCat("TLS for ", host, ": the certificate in ",
                                      m->options_.certDir, ", valid until ",
                                      formatUtc(cert->notAfterUnix), "; renewed over ACME from ",
                                      formatUtc(name.nextAttemptUnix)));
      name.cert = std::move(*cert);
    } else {
      name.nextAttemptUnix = now;
      notices->push_back(absl::StrCat(
          "TLS for ", host, " waits for its certificate from ", m->options_.directoryUrl,
          absl::IsNotFound(cert.status()) ? std::string(" (none cached yet)")
                                          : absl::StrCat(" (", cert.status().message(), ")"),
          ": handshakes for it fail until then"));
    }
    m->names_.push_back(std::move(name));
  }
  auto meta = tls::makeFreshMetaCert(m->options_.serverPublicHex, now);
  if (!meta.ok()) return meta.status();
  m->metaCert_ = std::move(*meta);
  auto set = std::make_shared<tls::CertSet>();
  set->pending = m->options_.hostnames;  // replaced by install() below
  auto server = tls::ServerTls::create(std::move(set), m->options_.requireSni);
  if (!server.ok()) return server.status();
  m->ownedTls_ = std::move(*server);
  m->tls_ = m->ownedTls_.get();
  m->install();
  m->publishStatus();
  return m;
}

AcmeManager::~AcmeManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AcmeManager::start() {
  logInfo("ACME: CA directory %s, account and certificates in %s", options_.directoryUrl,
          options_.certDir);
  thread_ = std::thread([this] { run(); });
}

double AcmeManager::jitter() {
  uint32_t r = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&r), sizeof(r));
  return static_cast<double>(r) / 4294967296.0;
}

bool AcmeManager::sleepFor(int64_t delayNanos) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(delayNanos, 0)),
               [this] { return stop_; });
  return !stop_;
}

void AcmeManager::retryNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    retry_ = true;
  }
  cv_.notify_all();
}

void AcmeManager::openChallenge(const acme::OpenChallenge& c, bool open) {
  if (c.type == "tls-alpn-01") {
    if (open) {
      absl::StatusOr<tls::CertifiedKey> cert =
          acme::tlsAlpnCertificate(c.identifier, c.keyAuthorization);
      if (!cert.ok()) {
        logError("ACME: %s", cert.status().message());
        return;
      }
      alpnChallenges_.insert_or_assign(c.identifier, std::move(*cert));
    } else {
      alpnChallenges_.erase(c.identifier);
    }
    auto copy = std::make_shared<tls::ServerTls::AlpnChallenges>();
    for (const auto& [name, cert] : alpnChallenges_) copy->emplace(name, cert.share());
    tls_->setAlpnChallenges(std::move(copy));
    return;
  }
  std::shared_ptr<const http::AcmeChallengeSnapshot> cur = challenges_.load();
  auto next =
      std::make_shared<http::AcmeChallengeSnapshot>(cur ? *cur : http::AcmeChallengeSnapshot{});
  if (open) {
    next->http01[c.token] = c.keyAuthorization;
  } else {
    next->http01.erase(c.token);
  }
  challenges_.publish(std::move(next));
}

void AcmeManager::publishStatus() {
  std::vector<tls::ServerTls::AcmeNameStatus> status;
  for (const Name& n : names_) {
    status.push_back({n.host, n.failures, n.lastFailureUnix, n.nextAttemptUnix});
  }
  tls_->setAcmeStatus(std::move(status));
}

void AcmeManager::install() {
  auto set = std::make_shared<tls::CertSet>();
  for (const Name& n : names_) {
    if (n.cert.has_value()) {
      set->certs.push_back(n.cert->share());
    } else {
      set->pending.push_back(n.host);
    }
  }
  if (metaCert_) {
    CRYPTO_BUFFER_up_ref(metaCert_.get());
    set->metaCert.reset(metaCert_.get());
  }
  tls_->replaceCerts(std::move(set));
}

void AcmeManager::run() {
  for (;;) {
    const int64_t now = unixNow();
    bool retry = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::swap(retry, retry_);
    }
    if (retry) {
      for (Name& n : names_) {
        if (!n.cert.has_value() || n.failures > 0) n.nextAttemptUnix = now;
      }
    }
    int64_t next = now + 3600;
    for (Name& n : names_) {
      if (n.nextAttemptUnix <= now) {
        attempt(n);
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_) return;
        }
      }
      next = std::min(next, n.nextAttemptUnix);
    }
    publishStatus();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(std::max<int64_t>(next - unixNow(), 0)),
                 [this] { return stop_ || retry_; });
    if (stop_) return;
  }
}

absl::Status AcmeManager::ensureAccount() {
  if (acme_) return absl::OkStatus();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key =
      tls::autocert::loadOrCreateAccountKey(options_.certDir);
  if (!key.ok()) return key.status();
  acme::Client::Options o;
  o.directoryUrl = options_.directoryUrl;
  auto client = std::make_unique<acme::Client>(std::move(o), std::move(*key));
  absl::Status st = client->registerAccount(options_.email, options_.eabKid, options_.eabKey);
  if (!st.ok()) return st;
  logInfo("ACME: account %s", client->accountUrl());
  acme_ = std::move(client);
  return absl::OkStatus();
}

absl::StatusOr<tls::CertifiedKey> AcmeManager::obtain(const Name& name) {
  logInfo("ACME: %s a certificate for %s", name.cert ? "renewing" : "obtaining", name.host);
  acme::ChallengeHooks hooks{[this](const acme::OpenChallenge& c) { openChallenge(c, true); },
                             [this](const acme::OpenChallenge& c) { openChallenge(c, false); }};
  // HTTP-01 first when port 80 is ours, TLS-ALPN-01 after it fails, and so
  // on alternating, as a validation that cannot reach one port may reach the
  // other.
  std::vector<std::string> types = {"tls-alpn-01"};
  if (options_.http01) {
    types = name.failures % 2 == 0 ? std::vector<std::string>{"http-01", "tls-alpn-01"}
                                   : std::vector<std::string>{"tls-alpn-01", "http-01"};
  }
  return acme::obtainCertificate(
      *acme_, {name.host}, types, hooks, [this](Nanos d) { return sleepFor(d); }, kIssueTimeout);
}

void AcmeManager::attempt(Name& name) {
  const absl::Status account = ensureAccount();
  absl::StatusOr<tls::CertifiedKey> cert = account.ok() ? obtain(name) : account;
  const int64_t now = unixNow();
  if (cert.ok()) {
    tls_->acmeOrdersOk.fetch_add(1, std::memory_order_relaxed);
    if (absl::Status stored = tls::autocert::storeCert(options_.certDir, name.host, *cert);
        !stored.ok()) {
      logError("ACME: the certificate for %s is served but not cached: %s", name.host,
               stored.message());
    }
    name.failures = 0;
    name.nextAttemptUnix = acme::renewalTime(cert->notBeforeUnix, cert->notAfterUnix, jitter());
    const std::string described = tls::describeCertificate(*cert, now);
    name.cert = std::move(*cert);
    install();
    publishStatus();
    logInfo("ACME: certificate for %s obtained: %s; renewal from %s", name.host, described,
            formatUtc(name.nextAttemptUnix));
    return;
  }
  if (absl::IsCancelled(cert.status())) return;
  tls_->acmeOrdersFailed.fetch_add(1, std::memory_order_relaxed);
  ++name.failures;
  name.lastFailureUnix = now;
  name.nextAttemptUnix = now + acme::retryDelaySeconds(name.failures, jitter());
  std::optional<int64_t> ra = acme::retryAfterUnix(cert.status());
  if (ra.has_value() && *ra > name.nextAttemptUnix) name.nextAttemptUnix = *ra;
  if (!acme_) name.nextAttemptUnix = std::max(name.nextAttemptUnix, now + 60);
  publishStatus();  // before the log line, which tests and operators wait for
  const std::string serving = name.cert ? absl::StrCat("; serving the current one, valid until ",
                                                       formatUtc(name.cert->notAfterUnix))
                                        : std::string("; its handshakes keep failing until then");
  logWarn("ACME: no certificate for %s (attempt %d): %s%s; next attempt at %s%s", name.host,
          name.failures, cert.status().message(),
          absl::IsResourceExhausted(cert.status()) ? " [rate limited by the CA]" : "",
          formatUtc(name.nextAttemptUnix), serving);
}

}  // namespace derpd
