// TLS for derpd's main listener, decided as derper decides it: on when the
// -a port is 443 or -certmode is manual (and in -dev mode, which serves a
// certificate made at start). -certmode letsencrypt and gcp get their
// certificates from AcmeManager.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "derpd/acme_manager.h"
#include "tls/manual_certs.h"
#include "tls/server_tls.h"

namespace derpd {

struct TlsSetup {
  std::unique_ptr<tls::ServerTls> tls;        // nullptr: plain HTTP
  std::unique_ptr<tls::ManualCerts> manual;   // -certmode manual: the files and their watch
  std::unique_ptr<AcmeManager> acme;          // -certmode letsencrypt or gcp
  std::string devCertName;                    // -dev: the pin of the generated certificate
  std::vector<std::string> notices;           // lines for the operator
  std::vector<std::string> warnings;          // lines the operator must act on
};

bool tlsWanted(const Config& cfg, uint16_t listenPort);
// -certdir, or derper's default under $HOME.
std::string certDirOf(const Config& cfg);

// Loads (or makes) the certificates. InvalidArgument names a flag; other
// errors name a file.
absl::StatusOr<TlsSetup> setupTls(const Config& cfg, const std::string& serverPublicHex);

}  // namespace derpd
