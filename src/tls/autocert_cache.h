// The certificate directory of -certmode letsencrypt, in the layout of the
// cache derper uses (Go's autocert.DirCache), so derper and derpd can each
// take over a -certdir the other wrote, keeping its certificates and ACME
// account:
//
//   <certdir>/<hostname>        ECDSA certificate: the private key as PEM
//                               ("EC PRIVATE KEY"), then the chain's
//                               CERTIFICATE blocks, leaf first
//   <certdir>/<hostname>+rsa    the same for an RSA certificate
//   <certdir>/acme_account+key  the ACME account key, "EC PRIVATE KEY" PEM
//                               (older autocert versions: acme_account.key)
//
// The directory is created 0700 and files are written 0600 through a
// temporary file renamed into place, as DirCache does. Stateless functions;
// any thread.
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include <openssl/base.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tls/certificate.h"

namespace derpd::tls::autocert {

// The cache file of host's certificate (rsa: its RSA one).
std::string certPath(const std::string& dir, absl::string_view host, bool rsa = false);
std::string accountKeyPath(const std::string& dir);
std::string legacyAccountKeyPath(const std::string& dir);

// A host name the cache can hold: a DNS name (letters, digits, '-', '.', no
// empty label), never a path. The error says what is wrong.
absl::Status checkHostName(absl::string_view host);

// A cache entry's text: the key, then the chain.
absl::StatusOr<std::string> formatEntry(const CertifiedKey& cert);
// Parses an entry; `what` names it in errors.
absl::StatusOr<CertifiedKey> parseEntry(absl::string_view pem, absl::string_view what);

// host's certificate from the cache: the ECDSA entry if there is one, else
// the RSA one. NotFound when there is neither; an entry that does not parse,
// is not valid for host, or is not valid at nowUnix (not yet, or expired) is
// an error that names the file and says why.
absl::StatusOr<CertifiedKey> loadCert(const std::string& dir, absl::string_view host,
                                      int64_t nowUnix);
// Stores host's certificate (ECDSA key: <host>; RSA: <host>+rsa).
absl::Status storeCert(const std::string& dir, absl::string_view host, const CertifiedKey& cert);

// The ACME account key: the cached one (either name), or a new ECDSA P-256
// key stored under acme_account+key.
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> loadOrCreateAccountKey(const std::string& dir);

}  // namespace derpd::tls::autocert
