// A small blocking HTTP/1.1 client for derpd's control threads: the ACME
// client's requests to the CA, and the admission checks' (issue 17). One
// request per connection (Connection: close), over TCP, TLS (BoringSSL,
// verified against the system's trust store) or a unix socket, the whole
// exchange bounded by one deadline and the response body by a size limit.
//
// Why our own and not libcurl: Debian 12's libcurl (its GnuTLS flavour too)
// links libssh2, which loads OpenSSL's libcrypto.so.3 next to BoringSSL; with
// BoringSSL's unversioned symbols first in the lookup order, 1,292 of
// OpenSSL's own symbol references bind to BoringSSL's functions (measured with
// LD_DEBUG=bindings), and libssh2's initialisation then runs OpenSSL code
// against BoringSSL's structures. docs/ARCHITECTURE.md says more.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "client/http_response.h"

namespace derpd::client {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  // Sent after Host, User-Agent and Content-Length, in this order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Non-empty: connect to this unix socket instead of the URL's host (which
  // still goes into Host); http:// URLs only.
  std::string unixSocket;
  Nanos timeout = 30 * kSecond;  // connect, TLS, request and response together
  size_t maxBodyBytes = 1 << 20;
  // A longer body is not an error: its first maxBodyBytes are read, the rest
  // is not (HttpResponse::truncated).
  bool truncateBody = false;
};

// The CAs an https request verifies the server against: the files named by
// SSL_CERT_FILE and SSL_CERT_DIR when set (as OpenSSL-based tools do), else
// Debian's bundle /etc/ssl/certs/ca-certificates.crt.
struct TrustStore {
  std::string caFile;
  std::string caDir;
  static TrustStore fromEnvironment();
};

// Sends the request and reads the whole response. The error says which step
// failed (resolving, connecting, certificate verification, a malformed or
// oversized response, the deadline). Any status code is a response, not an
// error.
absl::StatusOr<HttpResponse> fetch(const HttpRequest& request,
                                   const TrustStore& trust = TrustStore::fromEnvironment());

}  // namespace derpd::client
