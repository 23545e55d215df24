#include "client/client_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/hex.h"
#include "client/derp_client.h"
#include "client/fd_wait.h"
#include "tls/client_context.h"
#include "tls/ssl_error.h"

namespace derpd::client {
namespace {

constexpr std::string_view kMetaCertPrefix = "derpkey";
constexpr std::string_view kPinPrefix = "sha256-raw:";
std::optional<std::string> commonName(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return std::nullopt;
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return std::nullopt;
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return cn;
}

}  // namespace

std::optional<MetaCert> findMetaCert(std::span<const std::vector<uint8_t>> chainDer) {
  for (const std::vector<uint8_t>& der : chainDer) {
    const uint8_t* p = der.data();
    bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (!cert) continue;
    std::optional<std::string> cn = commonName(cert.get());
    if (!cn.has_value() || !cn->starts_with(kMetaCertPrefix)) continue;
    std::optional<derp::NodeKey> key =
        derp::NodeKey::parse(std::string_view(*cn).substr(kMetaCertPrefix.size()));
    long serial = ASN1_INTEGER_get(X509_get0_serialNumber(cert.get()));
    if (!key.has_value() || key->isZero() || serial < 1 || serial > 255) continue;
    return MetaCert{*key, static_cast<int>(serial)};
  }
  return std::nullopt;
}

absl::StatusOr<std::array<uint8_t, 32>> parseCertNamePin(std::string_view certName) {
  std::array<uint8_t, 32> digest;
  if (!certName.starts_with(kPinPrefix) ||
      !hexDecodeInto(certName.substr(kPinPrefix.size()), digest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "certificate pin must be sha256-raw:<64 hex>, not \"", std::string(certName), "\""));
  }
  return digest;
}

struct ClientTls::State {
  bssl::UniquePtr<SSL_CTX> ctx;
  bssl::UniquePtr<SSL> ssl;
};

ClientTls::ClientTls(int fd) : fd_(fd), state_(std::make_unique<State>()) {}

ClientTls::~ClientTls() = default;

absl::StatusOr<std::unique_ptr<ClientTls>> ClientTls::handshake(int fd, const ClientOptions& opts,
                                                                Nanos deadline) {
  std::optional<std::array<uint8_t, 32>> pin;
  if (!opts.pinCertName.empty()) {
    absl::StatusOr<std::array<uint8_t, 32>> parsed = parseCertNamePin(opts.pinCertName);
    if (!parsed.ok()) return parsed.status();
    pin = *parsed;
  }
  const std::string& name = opts.serverName.empty() ? opts.host : opts.serverName;
  const bool verifyChain = !opts.insecure && !pin.has_value();

  ERR_clear_error();
  std::unique_ptr<ClientTls> t(new ClientTls(fd));
  State& s = *t->state_;
  // A pin is checked after the handshake, before any byte is sent.
  const bool defaultCas = opts.caFile.empty() && opts.caDir.empty();
  auto ctx = tls::makeClientContext(
      verifyChain ? (defaultCas ? std::string(kDefaultCaFile) : opts.caFile) : "",
      opts.maxTlsVersion, verifyChain ? opts.caDir : "");
  if (!ctx.ok()) return ctx.status();
  s.ctx = std::move(*ctx);
  s.ssl.reset(SSL_new(s.ctx.get()));
  if (!s.ssl || SSL_set_fd(s.ssl.get(), fd) != 1) {
    return absl::InternalError(absl::StrCat("setting up TLS: ", tls::drainSslErrors()));
  }
  SSL* ssl = s.ssl.get();
  if (absl::Status st = tls::configureClientSession(ssl, name, verifyChain); !st.ok()) return st;

  for (;;) {
    ERR_clear_error();
    int ret = SSL_connect(ssl);
    if (ret == 1) break;
    int err = SSL_get_error(ssl, ret);
    if (err == SSL_ERROR_SSL && verifyChain && SSL_get_verify_result(ssl) != X509_V_OK) {
      return absl::UnauthenticatedError(
          absl::StrCat("certificate verification failed for ", name, ": ",
                       X509_verify_cert_error_string(SSL_get_verify_result(ssl))));
    }
    if (absl::Status st = t->waitAfter(ret, deadline, "during TLS handshake"); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("handshake: ", st.message()));
    }
  }

  if (const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl)) {
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(chain); ++i) {
      const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(chain, i);
      const uint8_t* data = CRYPTO_BUFFER_data(b);
      t->peerChainDer_.emplace_back(data, data + CRYPTO_BUFFER_len(b));
    }
  }
  if (pin.has_value()) {
    if (t->peerChainDer_.empty()) {
      return absl::UnauthenticatedError("the server sent no certificate to check the pin against");
    }
    std::array<uint8_t, SHA256_DIGEST_LENGTH> got;
    const std::vector<uint8_t>& leaf = t->peerChainDer_.front();
    SHA256(leaf.data(), leaf.size(), got.data());
    if (got != *pin) {
      return absl::UnauthenticatedError(
          absl::StrCat("certificate pin mismatch: the server's leaf is sha256-raw:", hexEncode(got),
                       ", expected ", absl::AsciiStrToLower(opts.pinCertName)));
    }
  }
  t->version_ = SSL_get_version(ssl);
  t->isTls13_ = SSL_version(ssl) == TLS1_3_VERSION;
  if (t->isTls13_) t->metaCert_ = findMetaCert(t->peerChainDer_);
  return t;
}

absl::Status ClientTls::waitAfter(int ret, Nanos deadline, std::string_view what) {
  switch (SSL_get_error(state_->ssl.get(), ret)) {
    case SSL_ERROR_WANT_READ:
      return waitForFd(fd_, POLLIN, deadline, what);
    case SSL_ERROR_WANT_WRITE:
      return waitForFd(fd_, POLLOUT, deadline, what);
    case SSL_ERROR_ZERO_RETURN:
      return absl::UnavailableError("connection closed by server");
    case SSL_ERROR_SYSCALL:
      if (ret == 0 || errno == 0) return absl::UnavailableError("connection closed by server");
      if (errno == EINTR) return absl::OkStatus();
      return absl::UnavailableError(strerror(errno));
    default:
      return absl::UnavailableError(tls::drainSslErrors());
  }
}

absl::StatusOr<size_t> ClientTls::read(std::span<uint8_t> buf, Nanos deadline) {
  SSL* ssl = state_->ssl.get();
  if (ssl == nullptr) return absl::FailedPreconditionError("TLS connection is shut down");
  const int len = static_cast<int>(std::min<size_t>(buf.size(), INT32_MAX));
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl, buf.data(), len);
    if (n > 0) return static_cast<size_t>(n);
    if (absl::Status st = waitAfter(n, deadline, "waiting for data"); !st.ok()) return st;
  }
}

absl::Status ClientTls::write(std::span<const uint8_t> bytes, Nanos deadline) {
  SSL* ssl = state_->ssl.get();
  if (ssl == nullptr) return absl::FailedPreconditionError("TLS connection is shut down");
  while (!bytes.empty()) {
    ERR_clear_error();
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE a success writes everything; a
    // retry after WANT_WRITE passes the same buffer, as SSL_write requires.
    const int len = static_cast<int>(std::min<size_t>(bytes.size(), INT32_MAX));
    int n = SSL_write(ssl, bytes.data(), len);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
      continue;
    }
    if (absl::Status st = waitAfter(n, deadline, "writing"); !st.ok()) return st;
  }
  return absl::OkStatus();
}

void ClientTls::shutdown() {
  if (state_->ssl) {
    ERR_clear_error();
    SSL_shutdown(state_->ssl.get());
    ERR_clear_error();
  }
  state_->ssl.reset();
  state_->ctx.reset();
}

}  // namespace derpd::client
