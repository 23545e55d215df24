#include "tls/server_tls.h"

#include "absl/strings/ascii.h"

#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace derpd::tls {
namespace {

constexpr std::string_view kHttp11 = "http/1.1";

// TLS 1.2 suites, in the server's order: ECDHE (forward secrecy) with an AEAD
// only. Go's crypto/tls client (every Tailscale client) offers all of them;
// no RSA key exchange, no CBC, no 3DES. TLS 1.3's suites are all AEAD already.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

// BoringSSL's clock. It writes the time into the first 4 bytes of a TLS 1.2
// ServerHello.random, which tells anyone who connects this host's clock (a
// fingerprint). The server keeps no sessions and issues no tickets (below),
// so nothing else here reads the time: a random one keeps the random random.
void randomTime(const SSL*, timeval* out) {
  uint32_t r = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&r), sizeof(r));
  out->tv_sec = static_cast<time_t>(r);
  out->tv_usec = 0;
}

// Same rule as matchesHost for DNS names, over the precomputed names: exact or
// a leftmost "*." wildcard standing for one label, case-insensitive.
bool nameMatches(const std::string& pattern, std::string_view host) {
  const absl::string_view p(pattern);
  const absl::string_view h(host.data(), host.size());
  if (absl::EqualsIgnoreCase(p, h)) return true;
  if (p.size() < 3 || p.substr(0, 2) != "*.") return false;
  const size_t dot = h.find('.');
  if (dot == absl::string_view::npos || dot == 0) return false;
  return absl::EqualsIgnoreCase(p.substr(1), h.substr(dot));
}

int64_t earliestNotAfter(const CertSet& set) {
  int64_t earliest = std::numeric_limits<int64_t>::max();
  for (const CertifiedKey& c : set.certs) earliest = std::min(earliest, c.notAfterUnix);
  return set.certs.empty() ? 0 : earliest;
}

constexpr std::string_view kAcmeTls1 = "acme-tls/1";

// Where `proto` is in an ALPN list (length-prefixed names), or nullptr.
const uint8_t* findProtocol(const uint8_t* in, size_t inLen, std::string_view proto) {
  size_t i = 0;
  while (i < inLen) {
    const size_t len = in[i];
    if (len > inLen - i - 1) break;  // BoringSSL validates the list; be safe anyway
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == proto) {
      return in + i + 1;
    }
    i += 1 + len;
  }
  return nullptr;
}

// Marks a connection whose handshake answers a TLS-ALPN-01 challenge.
int acmeExIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

// Only HTTP/1.1 is spoken (DERP upgrades from it), and acme-tls/1 to an ACME
// validation. A client offering just h2 gets no ALPN rather than a protocol
// we would then not speak.
int ServerTls::selectAlpn(SSL* ssl, const uint8_t** out, uint8_t* outLen, const uint8_t* in,
                          unsigned inLen, void*) {
  const bool acme = SSL_get_ex_data(ssl, acmeExIndex()) != nullptr;
  const std::string_view want = acme ? kAcmeTls1 : kHttp11;
  const uint8_t* found = findProtocol(in, inLen, want);
  if (found == nullptr) return SSL_TLSEXT_ERR_NOACK;
  *out = found;
  *outLen = static_cast<uint8_t>(want.size());
  return SSL_TLSEXT_ERR_OK;
}

// Before the rest of the ClientHello is processed: a validation of an open
// TLS-ALPN-01 challenge (SNI a name with one, ALPN offering acme-tls/1) gets
// the challenge certificate; everything else goes on to selectCertificate.
ssl_select_cert_result_t ServerTls::selectEarly(const SSL_CLIENT_HELLO* hello) {
  SSL* ssl = hello->ssl;
  const auto* self = static_cast<const ServerTls*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const uint8_t* alpn = nullptr;
  size_t alpnLen = 0;
  if (self == nullptr ||
      !SSL_early_callback_ctx_extension_get(
          hello, TLSEXT_TYPE_application_layer_protocol_negotiation, &alpn, &alpnLen) ||
      alpnLen < 2 || findProtocol(alpn + 2, alpnLen - 2, kAcmeTls1) == nullptr) {
    return ssl_select_cert_success;
  }
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  std::shared_ptr<const AlpnChallenges> challenges;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    challenges = self->alpnChallenges_;
  }
  if (sni == nullptr || !challenges) return ssl_select_cert_success;
  auto it = challenges->find(absl::AsciiStrToLower(sni));
  if (it == challenges->end()) return ssl_select_cert_success;
  std::vector<CRYPTO_BUFFER*> chain;
  for (const auto& der : it->second.chain) chain.push_back(der.get());
  if (SSL_set_chain_and_key(ssl, chain.data(), chain.size(), it->second.key.get(), nullptr) != 1) {
    return ssl_select_cert_error;
  }
  SSL_set_ex_data(ssl, acmeExIndex(), const_cast<ServerTls*>(self));
  return ssl_select_cert_success;
}

void ServerTls::setAlpnChallenges(std::shared_ptr<const AlpnChallenges> challenges) {
  std::lock_guard<std::mutex> lock(mu_);
  alpnChallenges_ = std::move(challenges);
}

const CertifiedKey* CertSet::match(std::string_view serverName) const {
  if (serverName.empty()) return nullptr;
  for (const CertifiedKey& c : certs) {
    for (const std::string& name : c.names) {
      if (nameMatches(name, serverName)) return &c;
    }
  }
  return nullptr;
}

const CertifiedKey& CertSet::select(std::string_view serverName) const {
  const CertifiedKey* c = match(serverName);
  return c != nullptr ? *c : certs.front();
}

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::create(std::shared_ptr<const CertSet> certs,
                                                             bool requireSni) {
  if (!certs || (certs->certs.empty() && certs->pending.empty())) {
    return absl::InvalidArgumentError("TLS: no certificates configured");
  }
  ERR_clear_error();
  std::unique_ptr<ServerTls> tls(new ServerTls());
  tls->requireSni_ = requireSni;
  tls->ctx_.reset(SSL_CTX_new(TLS_method()));
  SSL_CTX* ctx = tls->ctx_.get();
  if (ctx == nullptr || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
    const uint32_t err = ERR_get_error();
    ERR_clear_error();
    const char* reason = ERR_reason_error_string(err);
    return absl::InternalError(
        absl::StrCat("TLS: cannot configure SSL_CTX: ", reason != nullptr ? reason : "unknown"));
  }
  if (!SSL_CTX_set_strict_cipher_list(ctx, kTls12Ciphers)) {
    ERR_clear_error();
    return absl::InternalError("TLS: cannot set the TLS 1.2 cipher suites");
  }
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_current_time_cb(ctx, randomTime);
  SSL_CTX_set_alpn_select_cb(ctx, &ServerTls::selectAlpn, nullptr);
  SSL_CTX_set_app_data(ctx, tls.get());
  SSL_CTX_set_select_certificate_cb(ctx, &ServerTls::selectEarly);
  // The certificate is chosen per handshake (after SNI is parsed), so a
  // reload never has to touch the shared SSL_CTX.
  SSL_CTX_set_cert_cb(ctx, &ServerTls::selectCertificate, tls.get());
  // DERP clients (Tailscale's derphttp) keep no session cache, so TLS 1.3
  // tickets would be sealed and sent on every handshake for nothing (and
  // TLS 1.2 has neither tickets nor a session cache, above).
  SSL_CTX_set_num_tickets(ctx, 0);
  tls->replaceCerts(std::move(certs));
  return tls;
}

ServerTls::~ServerTls() = default;

bssl::UniquePtr<SSL> ServerTls::newSession() const {
  return bssl::UniquePtr<SSL>(SSL_new(ctx_.get()));
}

void ServerTls::replaceCerts(std::shared_ptr<const CertSet> certs) {
  const int64_t notAfter = certs ? earliestNotAfter(*certs) : 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    certs_ = std::move(certs);
  }
  notAfter_.store(notAfter, std::memory_order_relaxed);
}

void ServerTls::setAcmeStatus(std::vector<AcmeNameStatus> status) {
  std::lock_guard<std::mutex> lock(mu_);
  acmeStatus_ = std::move(status);
}

std::vector<ServerTls::AcmeNameStatus> ServerTls::acmeStatus() const {
  std::lock_guard<std::mutex> lock(mu_);
  return acmeStatus_;
}

std::shared_ptr<const CertSet> ServerTls::certs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return certs_;
}

int ServerTls::selectCertificate(SSL* ssl, void* arg) {
  const auto* self = static_cast<const ServerTls*>(arg);
  // The copy keeps this set alive for the rest of the callback even if a
  // reload swaps it meanwhile; SSL_set_chain_and_key takes its own references.
  // A TLS-ALPN-01 validation has its certificate already (selectEarly).
  if (SSL_get_ex_data(ssl, acmeExIndex()) != nullptr) return 1;
  const std::shared_ptr<const CertSet> set = self->certs();
  if (!set) return 0;
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const std::string_view name = sni != nullptr ? std::string_view(sni) : "";
  // Failing here ends the handshake with an alert (closed as tls_handshake_failed).
  const CertifiedKey* cert = set->match(name);
  if (cert == nullptr) {
    const bool awaited = set->certs.empty() ||
                         std::any_of(set->pending.begin(), set->pending.end(),
                                     [&](const std::string& p) { return nameMatches(p, name); });
    if (awaited) {
      self->refusedAwaitingCertificate.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    if (self->requireSni_) return 0;
    cert = &set->certs.front();
  }

  // Leaf, intermediates, then the meta-cert: derp clients look for it among
  // the peer certificates, TLS verifiers ignore the unused extra.
  std::vector<CRYPTO_BUFFER*> chain;
  chain.reserve(cert->chain.size() + 1);
  for (const auto& der : cert->chain) chain.push_back(der.get());
  if (set->metaCert) chain.push_back(set->metaCert.get());
  return SSL_set_chain_and_key(ssl, chain.data(), chain.size(), cert->key.get(), nullptr) == 1 ? 1
                                                                                               : 0;
}

}  // namespace derpd::tls
