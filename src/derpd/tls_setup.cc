#include "derpd/tls_setup.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "tls/autocert_cache.h"

namespace derpd {
namespace {

// derper's default: tsweb.DefaultCertDir("derper-certs").
std::string defaultCertDir() {
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr && *home != '\0' ? home : "/root",
                      "/.cache/tailscale/derper-certs");
}

absl::StatusOr<TlsSetup> devTls(const std::string& serverPublicHex) {
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto leaf = tls::generateSelfSignedIp("127.0.0.1", now);
  if (!leaf.ok()) return leaf.status();
  auto meta = tls::makeFreshMetaCert(serverPublicHex, now);
  if (!meta.ok()) return meta.status();
  auto set = std::make_shared<tls::CertSet>();
  TlsSetup out;
  out.devCertName = tls::certName(*leaf);
  set->certs.push_back(std::move(*leaf));
  set->metaCert = std::move(*meta);
  auto server = tls::ServerTls::create(std::move(set));
  if (!server.ok()) return server.status();
  out.tls = std::move(*server);
  return out;
}

bool isIpLiteral(const std::string& h) {
  in6_addr ip6;
  in_addr ip4;
  return inet_pton(AF_INET, h.c_str(), &ip4) == 1 || inet_pton(AF_INET6, h.c_str(), &ip6) == 1;
}

// -certmode letsencrypt, as far as this derpd has it: the certificates that
// derper's letsencrypt mode (or any ACME client writing its cache layout)
// left in -certdir are served; obtaining and renewing them over ACME is not
// built yet, so a name without a valid cached certificate stops startup.
absl::StatusOr<TlsSetup> cachedAcmeTls(const Config& cfg, const tls::ManualCerts::Options& opts) {
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto set = std::make_shared<tls::CertSet>();
  TlsSetup out;
  for (const std::string& host : opts.hostnames) {
    if (isIpLiteral(host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag -hostname: ", host,
          " is an IP address, which -certmode letsencrypt cannot get "
          "a certificate for; use -certmode manual (a self-signed certificate is made for it)"));
    }
    if (absl::Status s = tls::autocert::checkHostName(host); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flag -hostname: ", s.message()));
    }
    absl::StatusOr<tls::CertifiedKey> cert = tls::autocert::loadCert(opts.certDir, host, now);
    if (!cert.ok()) {
      // A file's problem, not a flag's (exit 1, not 2).
      return absl::FailedPreconditionError(
          absl::StrCat("-certmode letsencrypt: ", cert.status().message(),
                       ". This derpd cannot obtain certificates over ACME yet: it serves the ones "
                       "derper's letsencrypt mode keeps in -certdir (",
                       opts.certDir, "); or use -certmode manual"));
    }
    out.warnings.push_back(absl::StrCat(
        "serving ", host, "'s certificate from ", opts.certDir,
        " (derper's letsencrypt cache), valid until ",
        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(cert->notAfterUnix),
                         absl::UTCTimeZone()),
        "; this derpd does not renew it: renew it before then (derper, or an ACME client "
        "writing that file)"));
    set->certs.push_back(std::move(*cert));
  }
  auto meta = tls::makeFreshMetaCert(opts.serverPublicHex, now);
  if (!meta.ok()) return meta.status();
  set->metaCert = std::move(*meta);
  auto server = tls::ServerTls::create(std::move(set), cfg.requireSni);
  if (!server.ok()) return server.status();
  out.tls = std::move(*server);
  return out;
}

}  // namespace

bool tlsWanted(const Config& cfg, uint16_t listenPort) {
  return cfg.dev || listenPort == 443 || cfg.certMode == "manual";
}

absl::StatusOr<TlsSetup> setupTls(const Config& cfg, const std::string& serverPublicHex) {
  if (cfg.dev && cfg.requireSni) {
    return absl::InvalidArgumentError(
        "flag --require-sni: -dev serves 127.0.0.1, which clients cannot send as SNI");
  }
  if (cfg.dev) return devTls(serverPublicHex);
  tls::ManualCerts::Options opts;
  opts.certDir = cfg.certDir.empty() ? defaultCertDir() : cfg.certDir;
  for (absl::string_view h : absl::StrSplit(cfg.hostname, ',', absl::SkipWhitespace())) {
    opts.hostnames.emplace_back(h);
  }
  if (opts.hostnames.empty()) return absl::InvalidArgumentError("flag -hostname: empty");
  opts.serverPublicHex = serverPublicHex;
  if (cfg.certMode == "letsencrypt") return cachedAcmeTls(cfg, opts);
  if (cfg.requireSni) {
    for (const std::string& h : opts.hostnames) {
      if (isIpLiteral(h)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flag --require-sni: -hostname ", h,
            " is an IP address, which clients cannot send as SNI: every handshake would fail"));
      }
    }
  }
  TlsSetup out;
  out.manual = std::make_unique<tls::ManualCerts>(opts);
  auto set = out.manual->load(&out.notices);
  if (!set.ok()) return set.status();
  auto server = tls::ServerTls::create(std::move(*set), cfg.requireSni);
  if (!server.ok()) return server.status();
  out.tls = std::move(*server);
  if (absl::Status st = out.manual->watch(); !st.ok()) {
    out.notices.push_back(absl::StrCat("certificate changes will not be noticed (",
                                       st.message(), "); SIGHUP reloads them"));
  }
  return out;
}

}  // namespace derpd
