#include "tls/client_context.h"

#include <arpa/inet.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "tls/ssl_error.h"

namespace derpd::tls {
namespace {

// ALPN wire form: a length byte, then the protocol name.
constexpr uint8_t kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

}  // namespace

std::string ipLiteral(std::string_view name) {
  std::string addr(name.substr(0, name.find('%')));
  in6_addr buf;
  if (::inet_pton(AF_INET, addr.c_str(), &buf) == 1 ||
      ::inet_pton(AF_INET6, addr.c_str(), &buf) == 1) {
    return addr;
  }
  return {};
}

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> makeClientContext(const std::string& caFile,
                                                           uint16_t maxVersion,
                                                           const std::string& caDir) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", drainSslErrors()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (maxVersion == 0) maxVersion = TLS1_3_VERSION;
  if (maxVersion < TLS1_2_VERSION || SSL_CTX_set_max_proto_version(ctx.get(), maxVersion) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported maximum TLS version 0x", absl::Hex(maxVersion)));
  }
  if (caFile.empty() && caDir.empty()) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    return ctx;
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), caFile.empty() ? nullptr : caFile.c_str(),
                                    caDir.empty() ? nullptr : caDir.c_str()) != 1) {
    return absl::FailedPreconditionError(absl::StrCat("cannot load CA certificates from ",
                                                      caFile.empty() ? caDir : caFile, ": ",
                                                      drainSslErrors()));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

absl::Status configureClientSession(SSL* ssl, std::string_view name, bool verify) {
  if (SSL_set_alpn_protos(ssl, kAlpnHttp11, sizeof(kAlpnHttp11)) != 0) {
    return absl::InternalError(absl::StrCat("setting up TLS: ", drainSslErrors()));
  }
  const std::string ip = ipLiteral(name);
  const std::string host(name);
  if (ip.empty() && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad TLS server name \"", host, "\""));
  }
  if (!verify) return absl::OkStatus();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  int ok;
  if (!ip.empty()) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = X509_VERIFY_PARAM_set1_host(param, host.data(), host.size());
  }
  if (ok != 1) return absl::InvalidArgumentError(absl::StrCat("bad TLS server name \"", host, "\""));
  return absl::OkStatus();
}

}  // namespace derpd::tls
