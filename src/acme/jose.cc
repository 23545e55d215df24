#include "acme/jose.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace derpd::acme {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int decodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// The key's EC_KEY when it is a P-256 key.
const EC_KEY* p256(EVP_PKEY* key) {
  if (key == nullptr || EVP_PKEY_id(key) != EVP_PKEY_EC) return nullptr;
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
  if (ec == nullptr || EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
    return nullptr;
  }
  return ec;
}

std::string flattened(const std::string& protectedB64, const std::string& payloadB64,
                      std::span<const uint8_t> signature) {
  nlohmann::json jws = {
      {"protected", protectedB64}, {"payload", payloadB64}, {"signature", base64url(signature)}};
  return jws.dump();
}

}  // namespace

std::string base64url(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
            kAlphabet[v & 63]};
  }
  if (bytes.size() - i == 1) {
    const uint32_t v = uint32_t{bytes[i]} << 16;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63]};
  } else if (bytes.size() - i == 2) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63]};
  }
  return out;
}

std::string base64url(absl::string_view text) {
  return base64url(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

std::optional<std::vector<uint8_t>> base64urlDecode(absl::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;  // no byte ends there
  std::vector<uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = decodeChar(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return std::nullopt;  // non-canonical: bits left over that are not zero
  return out;
}

absl::StatusOr<std::string> jwk(EVP_PKEY* key) {
  const EC_KEY* ec = p256(key);
  if (ec == nullptr) return absl::InvalidArgumentError("the ACME account key must be ECDSA P-256");
  bssl::UniquePtr<BIGNUM> x(BN_new());
  bssl::UniquePtr<BIGNUM> y(BN_new());
  uint8_t xb[32];
  uint8_t yb[32];
  if (!x || !y ||
      !EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                                           x.get(), y.get(), nullptr) ||
      !BN_bn2bin_padded(xb, sizeof(xb), x.get()) || !BN_bn2bin_padded(yb, sizeof(yb), y.get())) {
    return absl::InternalError("reading the account key's public point failed");
  }
  return absl::StrCat(R"({"crv":"P-256","kty":"EC","x":")", base64url(xb), R"(","y":")",
                      base64url(yb), R"("})");
}

absl::StatusOr<std::string> thumbprint(EVP_PKEY* key) {
  absl::StatusOr<std::string> text = jwk(key);
  if (!text.ok()) return text.status();
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(text->data()), text->size(), digest);
  return base64url(digest);
}

absl::StatusOr<std::string> keyAuthorization(absl::string_view token, EVP_PKEY* accountKey) {
  absl::StatusOr<std::string> print = thumbprint(accountKey);
  if (!print.ok()) return print.status();
  return absl::StrCat(token, ".", *print);
}

absl::StatusOr<std::string> signEs256(EVP_PKEY* key, const JwsHeader& header,
                                      absl::string_view payload) {
  const EC_KEY* ec = p256(key);
  if (ec == nullptr) return absl::InvalidArgumentError("the ACME account key must be ECDSA P-256");
  nlohmann::json prot = {{"alg", "ES256"}, {"nonce", header.nonce}, {"url", header.url}};
  if (header.kid.empty()) {
    absl::StatusOr<std::string> key_jwk = jwk(key);
    if (!key_jwk.ok()) return key_jwk.status();
    prot["jwk"] = nlohmann::json::parse(*key_jwk);
  } else {
    prot["kid"] = header.kid;
  }
  const std::string protectedB64 = base64url(prot.dump());
  const std::string payloadB64 = base64url(payload);
  const std::string input = absl::StrCat(protectedB64, ".", payloadB64);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(input.data()), input.size(), digest);
  bssl::UniquePtr<ECDSA_SIG> sig(ECDSA_do_sign(digest, sizeof(digest), ec));
  uint8_t rs[64];
  if (!sig || !BN_bn2bin_padded(rs, 32, ECDSA_SIG_get0_r(sig.get())) ||
      !BN_bn2bin_padded(rs + 32, 32, ECDSA_SIG_get0_s(sig.get()))) {
    return absl::InternalError("ES256 signing failed");
  }
  return flattened(protectedB64, payloadB64, rs);
}

absl::StatusOr<std::string> externalAccountBinding(EVP_PKEY* accountKey, absl::string_view eabKid,
                                                   absl::string_view eabKeyBase64url,
                                                   absl::string_view newAccountUrl) {
  std::optional<std::vector<uint8_t>> mac = base64urlDecode(eabKeyBase64url);
  if (!mac.has_value() || mac->empty()) {
    return absl::InvalidArgumentError("the EAB key is not base64url (unpadded)");
  }
  absl::StatusOr<std::string> key_jwk = jwk(accountKey);
  if (!key_jwk.ok()) return key_jwk.status();
  nlohmann::json prot = {
      {"alg", "HS256"}, {"kid", std::string(eabKid)}, {"url", std::string(newAccountUrl)}};
  const std::string protectedB64 = base64url(prot.dump());
  const std::string payloadB64 = base64url(*key_jwk);
  const std::string input = absl::StrCat(protectedB64, ".", payloadB64);
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned outLen = 0;
  if (HMAC(EVP_sha256(), mac->data(), mac->size(), reinterpret_cast<const uint8_t*>(input.data()),
           input.size(), out, &outLen) == nullptr) {
    return absl::InternalError("HS256 failed");
  }
  return flattened(protectedB64, payloadB64, std::span<const uint8_t>(out, outLen));
}

}  // namespace derpd::acme
