// Certificates: loading derper's PEM files, generating the self-signed IP
// certificate and the DERP meta-cert, and naming a leaf for pinning.
//
// Everything is held in BoringSSL's shareable, reference-counted form
// (CRYPTO_BUFFER for DER certificates, EVP_PKEY for keys) so a loaded pair can
// be handed to any number of handshakes on any thread without copying.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/pool.h>

#include "absl/status/statusor.h"

namespace derpd::tls {

// A certificate chain (leaf first, as in the .crt file) and the leaf's key.
struct CertifiedKey {
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain;
  bssl::UniquePtr<EVP_PKEY> key;
  // Names the leaf is valid for: DNS SANs (lowercase, "*.x" wildcards kept)
  // and IP SANs (text form); the subject CN when there are no SANs.
  std::vector<std::string> names;
  int64_t notBeforeUnix = 0;  // the leaf's validity, seconds since the epoch
  int64_t notAfterUnix = 0;

  std::span<const uint8_t> leafDer() const;
  // Another reference to the same certificate and key (no copy of either).
  CertifiedKey share() const;
};

// Reads a PEM chain (one or more CERTIFICATE blocks) and a PEM private key
// (RSA or ECDSA; PKCS#1, SEC1 or PKCS#8). Checks the key matches the leaf.
// Errors name the file and say what is wrong with it.
absl::StatusOr<CertifiedKey> loadPemFiles(const std::string& crtPath, const std::string& keyPath);
// The same from memory; `what` names the source in errors.
absl::StatusOr<CertifiedKey> parsePem(std::string_view crtPem, std::string_view keyPem,
                                      std::string_view what);

// True when the leaf is valid for `host`: an IP literal matches an IP SAN, a
// DNS name matches a DNS SAN (case-insensitive, "*.example.com" matches one
// label), as TLS clients check.
bool matchesHost(const CertifiedKey& cert, std::string_view host);

// A fresh ECDSA P-256 key (certificates, the ACME account); nullptr when
// BoringSSL fails.
bssl::UniquePtr<EVP_PKEY> newP256Key();

// A self-signed certificate under a fresh P-256 key: a random 128-bit serial,
// CN commonName, valid from notBeforeUnix to notAfterUnix, with the
// extensions addExtensions adds (false: it failed).
absl::StatusOr<CertifiedKey> generateSelfSigned(std::string_view commonName, int64_t notBeforeUnix,
                                                int64_t notAfterUnix,
                                                const std::function<bool(X509*)>& addExtensions);

// derper's self-signed certificate for an IP hostname: fresh ECDSA P-256 key,
// random 128-bit serial, CN and IP SAN = ip, valid from now for one year,
// digitalSignature|keyEncipherment, serverAuth, basic constraints CA:FALSE.
absl::StatusOr<CertifiedKey> generateSelfSignedIp(std::string_view ip, int64_t nowUnix);

// Writes the pair as derper does: the directory created 0700 if missing, the
// certificate 0644, the key 0600 ("EC PRIVATE KEY" PEM for ECDSA keys).
absl::Status writePemFiles(const CertifiedKey& cert, const std::string& crtPath,
                           const std::string& keyPath);

// PEM text of a private key ("EC PRIVATE KEY" for ECDSA, "RSA PRIVATE KEY"
// for RSA, as Go's autocert and derper write them) and of a chain.
absl::StatusOr<std::string> keyToPem(EVP_PKEY* key);
absl::StatusOr<std::string> chainToPem(const CertifiedKey& cert);

// Writes `data` to `path` with `mode` through a temporary file renamed into
// place (fsync'd first), so a reader never sees half a file.
absl::Status writeFileAtomically(const std::string& path, std::string_view data, mode_t mode);

// "sha256-raw:<hex of SHA-256 over the leaf's DER>": the derpMap CertName that
// pins this certificate.
std::string certName(const CertifiedKey& cert);

// A certificate in one line for the log: its names, when it expires and in
// how long, and its SHA-256 fingerprint (certName's).
std::string describeCertificate(const CertifiedKey& cert, int64_t nowUnix);
// Expired, or expiring within 14 days: worth a warning when it is loaded.
inline constexpr int64_t kExpiringSoonSeconds = 14 * 86400;
bool expiresSoon(const CertifiedKey& cert, int64_t nowUnix);

// The DERP meta-cert (PROTOCOL.md): self-signed Ed25519 from `ed25519Seed`,
// version 3, serial = DERP protocol version (2), subject = issuer = CN
// "derpkey<serverPublicHex>" (PrintableString), the given validity (UTCTime),
// one extension: basic constraints, critical, CA:FALSE. With the seed and
// validity of metacert.json it reproduces that DER byte for byte.
absl::StatusOr<bssl::UniquePtr<CRYPTO_BUFFER>> makeMetaCert(std::string_view serverPublicHex,
                                                           std::span<const uint8_t, 32> ed25519Seed,
                                                           int64_t notBeforeUnix,
                                                           int64_t notAfterUnix);

// The meta-cert as derper makes it at start: a fresh Ed25519 key (dropped once
// it has signed), valid from 30 days before `nowUnix` to 30 days after.
absl::StatusOr<bssl::UniquePtr<CRYPTO_BUFFER>> makeFreshMetaCert(std::string_view serverPublicHex,
                                                                int64_t nowUnix);

}  // namespace derpd::tls
