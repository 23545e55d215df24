#include "integration/tls_test_conn.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"
#include "tls/ssl_error.h"

namespace derpd::testing {
namespace {

using client::monotonicNow;

// Splits a whole HTTP/1.1 response read until close into status, headers and body.
absl::StatusOr<HttpResponse> parseWholeResponse(const std::string& raw) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return absl::DataLossError(absl::StrCat("no head in: ", raw));
  absl::StatusOr<HttpResponse> parsed = parseResponseHead(raw.substr(0, end));
  if (!parsed.ok()) return parsed.status();
  HttpResponse r = *std::move(parsed);
  r.body = raw.substr(end + 4);
  if (std::string cl = r.header("Content-Length"); !cl.empty()) {
    size_t len = 0;
    if (!absl::SimpleAtoi(cl, &len) || len != r.body.size()) {
      return absl::DataLossError(
          absl::StrCat("Content-Length ", cl, " but ", r.body.size(), " body bytes"));
    }
  }
  return r;
}

}  // namespace

struct TlsTestConn::State {
  bssl::UniquePtr<SSL_CTX> ctx;
  bssl::UniquePtr<SSL> ssl;
};

TlsTestConn::TlsTestConn(TcpConn tcp) : tcp_(std::move(tcp)), state_(std::make_unique<State>()) {}

TlsTestConn::~TlsTestConn() = default;

absl::Status TlsTestConn::waitAfter(int ret, Nanos deadline) {
  switch (SSL_get_error(state_->ssl.get(), ret)) {
    case SSL_ERROR_WANT_READ:
      return client::waitForFd(tcp_.fd(), POLLIN, deadline, "TLS read");
    case SSL_ERROR_WANT_WRITE:
      return client::waitForFd(tcp_.fd(), POLLOUT, deadline, "TLS write");
    case SSL_ERROR_ZERO_RETURN:
      return absl::UnavailableError("close_notify");
    case SSL_ERROR_SYSCALL:
      if (ret == 0 || errno == 0) return absl::UnavailableError("EOF");
      if (errno == EINTR) return absl::OkStatus();
      return absl::UnavailableError(strerror(errno));
    default:
      return absl::UnavailableError(tls::drainSslErrors());
  }
}

absl::StatusOr<std::unique_ptr<TlsTestConn>> TlsTestConn::connect(uint16_t port,
                                                                  const Options& opts,
                                                                  Nanos timeout) {
  const Nanos deadline = monotonicNow() + timeout;
  absl::StatusOr<TcpConn> tcp = TcpConn::connect(port);
  if (!tcp.ok()) return tcp.status();
  std::unique_ptr<TlsTestConn> c(new TlsTestConn(*std::move(tcp)));
  State& s = *c->state_;
  ERR_clear_error();
  s.ctx.reset(SSL_CTX_new(TLS_method()));
  if (!s.ctx) return absl::InternalError(tls::drainSslErrors());
  SSL_CTX_set_min_proto_version(s.ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(s.ctx.get(),
                                opts.maxVersion != 0 ? opts.maxVersion : TLS1_3_VERSION);
  SSL_CTX_set_verify(s.ctx.get(), SSL_VERIFY_NONE, nullptr);
  s.ssl.reset(SSL_new(s.ctx.get()));
  if (!s.ssl || SSL_set_fd(s.ssl.get(), c->tcp_.fd()) != 1) {
    return absl::InternalError(tls::drainSslErrors());
  }
  if (!opts.serverName.empty() &&
      SSL_set_tlsext_host_name(s.ssl.get(), opts.serverName.c_str()) != 1) {
    return absl::InvalidArgumentError(tls::drainSslErrors());
  }
  for (;;) {
    ERR_clear_error();
    const int ret = SSL_connect(s.ssl.get());
    if (ret == 1) break;
    if (absl::Status st = c->waitAfter(ret, deadline); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("TLS handshake: ", st.message()));
    }
  }
  return c;
}

std::string TlsTestConn::version() const { return SSL_get_version(state_->ssl.get()); }

std::vector<std::vector<uint8_t>> TlsTestConn::peerChainDer() const {
  std::vector<std::vector<uint8_t>> out;
  if (const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(state_->ssl.get())) {
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(chain); ++i) {
      const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(chain, i);
      out.emplace_back(CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_data(b) + CRYPTO_BUFFER_len(b));
    }
  }
  return out;
}

absl::Status TlsTestConn::write(std::string_view plaintext, Nanos timeout) {
  const Nanos deadline = monotonicNow() + timeout;
  while (!plaintext.empty()) {
    ERR_clear_error();
    const int n =
        SSL_write(state_->ssl.get(), plaintext.data(), static_cast<int>(plaintext.size()));
    if (n > 0) {
      plaintext.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (absl::Status st = waitAfter(n, deadline); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TlsTestConn::readUntilClose(Nanos timeout) {
  const Nanos deadline = monotonicNow() + timeout;
  std::string out;
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(state_->ssl.get(), buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    const int err = SSL_get_error(state_->ssl.get(), n);
    if (err == SSL_ERROR_ZERO_RETURN ||
        (err == SSL_ERROR_SYSCALL && (n == 0 || errno == 0 || errno == ECONNRESET))) {
      return out;
    }
    if (absl::Status st = waitAfter(n, deadline); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(st.message(), "; got: ", out));
    }
  }
}

absl::Status TlsTestConn::writeCorruptedRecord(std::string_view plaintext) {
  // Let BoringSSL seal the record into memory instead of the socket.
  SSL* ssl = state_->ssl.get();
  BIO* mem = BIO_new(BIO_s_mem());
  if (mem == nullptr) return absl::InternalError(tls::drainSslErrors());
  SSL_set0_wbio(ssl, mem);  // the socket BIO stays as the read side
  ERR_clear_error();
  const int n = SSL_write(ssl, plaintext.data(), static_cast<int>(plaintext.size()));
  if (n != static_cast<int>(plaintext.size())) {
    return absl::InternalError(absl::StrCat("SSL_write to memory: ", tls::drainSslErrors()));
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(mem, &data, &len) || len <= 5) {
    return absl::InternalError("no record was written to memory");
  }
  std::string record(reinterpret_cast<const char*>(data), len);
  if (static_cast<uint8_t>(record[0]) != 0x17) {
    return absl::InternalError(absl::StrCat("expected one application-data record, got type ",
                                            static_cast<int>(static_cast<uint8_t>(record[0]))));
  }
  record[5 + (len - 5) / 2] ^= 0x01;  // a byte in the middle of the ciphertext
  return tcp_.writeAll(record);
}

absl::StatusOr<HttpResponse> httpsGet(uint16_t port, std::string_view path,
                                      const std::string& serverName) {
  absl::StatusOr<std::unique_ptr<TlsTestConn>> c =
      TlsTestConn::connect(port, {.serverName = serverName});
  if (!c.ok()) return c.status();
  const std::string req =
      absl::StrCat("GET ", std::string(path),
                   " HTTP/1.1\r\nHost: ", serverName.empty() ? "127.0.0.1" : serverName,
                   "\r\nConnection: close\r\n\r\n");
  if (absl::Status st = (*c)->write(req); !st.ok()) return st;
  absl::StatusOr<std::string> raw = (*c)->readUntilClose();
  if (!raw.ok()) return raw.status();
  return parseWholeResponse(*raw);
}

absl::StatusOr<std::vector<MetricSample>> scrapeMetricsTls(uint16_t port) {
  absl::StatusOr<HttpResponse> r = httpsGet(port, "/metrics");
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrCat("GET /metrics: ", r.status().message()));
  }
  if (r->status != 200) {
    return absl::FailedPreconditionError(absl::StrCat("GET /metrics: ", r->statusLine));
  }
  return parsePrometheusText(r->body);
}

}  // namespace derpd::testing
