#include "derpd/tls_setup.h"

#include <cstdlib>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "acme/client.h"
#include "net/socket_address.h"
#include "tls/autocert_cache.h"
#include "tls/client_context.h"

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

bool isIpLiteral(const std::string& h) { return !tls::ipLiteral(h).empty(); }

// -certmode letsencrypt and gcp: the ACME manager serves what -certdir's
// cache holds (derper's layout) and obtains and renews over ACME.
absl::StatusOr<TlsSetup> acmeTls(const Config& cfg, const tls::ManualCerts::Options& opts) {
  for (const std::string& host : opts.hostnames) {
    if (isIpLiteral(host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag -hostname: ", host, " is an IP address, which -certmode ", cfg.certMode,
          " cannot get a certificate for; use -certmode manual (a self-signed certificate is "
          "made for it)"));
    }
    if (absl::Status s = tls::autocert::checkHostName(host); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flag -hostname: ", s.message()));
    }
  }
  AcmeManager::Options o;
  o.hostnames = opts.hostnames;
  o.certDir = opts.certDir;
  o.directoryUrl = !cfg.acmeDirectory.empty() ? cfg.acmeDirectory
                   : cfg.certMode == "gcp"    ? acme::kGoogleDirectory
                                              : acme::kLetsEncryptDirectory;
  o.email = cfg.acmeEmail;
  o.eabKid = cfg.acmeEabKid;
  o.eabKey = cfg.acmeEabKey;
  o.serverPublicHex = opts.serverPublicHex;
  o.requireSni = cfg.requireSni;
  o.http01 = cfg.httpPort >= 0;
  TlsSetup out;
  auto manager = AcmeManager::create(std::move(o), &out.notices);
  if (!manager.ok()) return manager.status();
  out.acme = std::move(*manager);
  out.tls = out.acme->takeTls();
  return out;
}

}  // namespace

std::string certDirOf(const Config& cfg) {
  return cfg.certDir.empty() ? defaultCertDir() : cfg.certDir;
}

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
  opts.certDir = certDirOf(cfg);
  for (absl::string_view h : absl::StrSplit(cfg.hostname, ',', absl::SkipWhitespace())) {
    opts.hostnames.emplace_back(h);
  }
  if (opts.hostnames.empty()) return absl::InvalidArgumentError("flag -hostname: empty");
  opts.serverPublicHex = serverPublicHex;
  if (absl::StatusOr<net::SocketAddress> a = net::parseListenAddress(cfg.addr); a.ok()) {
    opts.derpPort = a->port();
  }
  opts.stunPort = cfg.stun ? cfg.stunPort : -1;
  if (cfg.certMode == "letsencrypt" || cfg.certMode == "gcp") return acmeTls(cfg, opts);
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
