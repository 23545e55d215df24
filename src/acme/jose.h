// JOSE as ACME uses it (RFC 8555 section 6.2): base64url without padding
// (RFC 7515 section 2), the account key's JWK and its thumbprint (RFC 7638),
// requests as JWS in the flattened JSON serialization signed ES256 with the
// account key (RFC 7518 section 3.4: the signature is R || S, 32 bytes each),
// the key authorization of a challenge (RFC 8555 section 8.1), and the
// external account binding of newAccount (section 7.3.4: HS256 with the CA's
// MAC key over the account key's JWK). Pure functions over BoringSSL; any
// thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <openssl/base.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace derpd::acme {

std::string base64url(std::span<const uint8_t> bytes);
std::string base64url(absl::string_view text);
// Refuses padding, whitespace and characters outside the URL-safe alphabet.
std::optional<std::vector<uint8_t>> base64urlDecode(absl::string_view text);

// {"crv":"P-256","kty":"EC","x":"...","y":"..."}: the members RFC 7638
// requires, in its order and without whitespace, so the same text is the
// jwk of a request and the input of the thumbprint. P-256 keys only.
absl::StatusOr<std::string> jwk(EVP_PKEY* key);
// base64url(SHA-256(jwk(key))).
absl::StatusOr<std::string> thumbprint(EVP_PKEY* key);
// token "." thumbprint: what HTTP-01 serves and TLS-ALPN-01 hashes.
absl::StatusOr<std::string> keyAuthorization(absl::string_view token, EVP_PKEY* accountKey);

// A request's protected header: the key itself (newAccount, or any request
// before the account URL is known) when kid is empty, else the account URL.
struct JwsHeader {
  std::string nonce;
  std::string url;
  std::string kid;
};

// {"protected":...,"payload":...,"signature":...}. payload is the request's
// JSON text; empty for POST-as-GET (RFC 8555 section 6.3).
absl::StatusOr<std::string> signEs256(EVP_PKEY* key, const JwsHeader& header,
                                      absl::string_view payload);

// The externalAccountBinding member of a newAccount payload: a JWS over the
// account key's JWK, protected {"alg":"HS256","kid":eabKid,"url":newAccountUrl},
// MACed with the CA's key (given base64url, as CAs hand it out).
absl::StatusOr<std::string> externalAccountBinding(EVP_PKEY* accountKey, absl::string_view eabKid,
                                                   absl::string_view eabKeyBase64url,
                                                   absl::string_view newAccountUrl);

}  // namespace derpd::acme
