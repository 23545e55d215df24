// The client side of TLS as derpd speaks it: used by the client library
// (ClientTls, blocking sockets) and by the shards' mesh links (over the
// connection's own buffers).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <openssl/base.h>
#include <openssl/ssl.h>

#include "absl/status/statusor.h"

namespace derpd::tls {

// An SSL_CTX for clients: TLS 1.2 minimum, maxVersion (0: TLS 1.3) maximum.
// caFile (a PEM bundle) or caDir (a hashed certificate directory, as
// c_rehash makes) non-empty: peers are verified against those CAs; both
// empty: no verification (insecure, or a pin checked after the handshake).
absl::StatusOr<bssl::UniquePtr<SSL_CTX>> makeClientContext(const std::string& caFile,
                                                           uint16_t maxVersion = 0,
                                                           const std::string& caDir = "");

// Names the server on a new client SSL: SNI for a DNS name (an IP literal is
// sent none, as Tailscale's clients do), ALPN http/1.1, and when `verify`,
// the name or IP the certificate must carry.
absl::Status configureClientSession(SSL* ssl, std::string_view name, bool verify);

// The address part of an IP literal ("fe80::1%eth0" -> "fe80::1"), or empty
// when `name` is not one.
std::string ipLiteral(std::string_view name);

}  // namespace derpd::tls
