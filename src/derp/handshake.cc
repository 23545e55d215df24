#include "derp/handshake.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace derpd::derp {
namespace {

// ordered_json keeps document order, so that of two keys that fold to the same
// field the later one wins, as in Go's encoding/json.
using Json = nlohmann::ordered_json;

void ensureSodium() {
  // Idempotent and thread-safe; the static pays for it once. Without it the
  // RNG behind random nonces may be unseeded.
  static const bool ready = sodium_init() >= 0;
  if (!ready) std::abort();
}

absl::Status jsonError(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("derp: ", what, " JSON: ", why));
}

// Appends s as a JSON string the way Go's encoding/json writes it (HTML-safe
// escapes, invalid UTF-8 replaced), so our ClientInfo is byte-identical to
// the Go client's for the same fields.
void appendGoJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
      } else {
        out.push_back(static_cast<char>(c));
      }
      i++;
      continue;
    }
    // Multi-byte sequence: validate it, then copy it or write U+FFFD.
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len != 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; k++) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      valid = (cc & 0xc0) == 0x80;
      cp = cp << 6 | (cc & 0x3f);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    valid = valid && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) &&
            !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
    if (!valid) {
      out += "\\ufffd";
      i++;
      continue;
    }
    if (cp == 0x2028 || cp == 0x2029) {
      // Go escapes these because JavaScript treats them as line ends.
      out += cp == 0x2028 ? "\\u2028" : "\\u2029";
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  out.push_back('"');
}

bool keyIs(const std::string& key, absl::string_view field) {
  return absl::EqualsIgnoreCase(key, field);
}

absl::Status readInt64(absl::string_view what, const std::string& key, const Json& v, int64_t lo,
                       int64_t hi, int64_t& out) {
  if (v.is_number_integer()) {
    // Unsigned values above INT64_MAX show up as number_unsigned.
    if (v.is_number_unsigned() &&
        v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return jsonError(what, absl::StrCat(key, " out of range"));
    }
    const int64_t n = v.get<int64_t>();
    if (n < lo || n > hi) return jsonError(what, absl::StrCat(key, " out of range"));
    out = n;
    return absl::OkStatus();
  }
  return jsonError(what, absl::StrCat(key, " is not an integer"));
}

absl::Status readInt(absl::string_view what, const std::string& key, const Json& v, int& out) {
  int64_t n = 0;
  absl::Status s =
      readInt64(what, key, v, std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), n);
  if (s.ok()) out = static_cast<int>(n);
  return s;
}

absl::Status readBool(absl::string_view what, const std::string& key, const Json& v, bool& out) {
  if (!v.is_boolean()) return jsonError(what, absl::StrCat(key, " is not a boolean"));
  out = v.get<bool>();
  return absl::OkStatus();
}

absl::Status readString(absl::string_view what, const std::string& key, const Json& v,
                        std::string& out) {
  if (!v.is_string()) return jsonError(what, absl::StrCat(key, " is not a string"));
  out = v.get<std::string>();
  return absl::OkStatus();
}

absl::StatusOr<Json> parseObject(absl::string_view what, std::string_view text) {
  // No exceptions: the parser reports failure as a discarded value.
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return jsonError(what, "invalid JSON");
  if (!j.is_object()) return jsonError(what, "not an object");
  return j;
}

}  // namespace

std::optional<BoxKey> BoxKey::derive(const PrivateKey& self, const NodeKey& peer) {
  ensureSodium();
  static_assert(sizeof(BoxKey::bytes) == crypto_box_BEFORENMBYTES);
  BoxKey k;
  if (crypto_box_beforenm(k.bytes.data(), peer.bytes.data(), self.bytes.data()) != 0) {
    return std::nullopt;
  }
  return k;
}

std::vector<uint8_t> sealBox(const BoxKey& key, std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce) {
  std::vector<uint8_t> out(kNonceLen + kBoxOverhead + plaintext.size());
  if (nonce) {
    std::memcpy(out.data(), nonce->data(), kNonceLen);
  } else {
    randombytes_buf(out.data(), kNonceLen);
  }
  crypto_box_easy_afternm(out.data() + kNonceLen, plaintext.data(), plaintext.size(), out.data(),
                          key.bytes.data());
  return out;
}

absl::StatusOr<std::vector<uint8_t>> openBox(const BoxKey& key, std::span<const uint8_t> sealed) {
  if (sealed.size() < kNonceLen + kBoxOverhead) {
    return absl::InvalidArgumentError(absl::StrCat("derp: sealed box of ", sealed.size(),
                                                   " bytes is shorter than nonce + tag (",
                                                   kNonceLen + kBoxOverhead, ")"));
  }
  const std::span<const uint8_t> box = sealed.subspan(kNonceLen);
  std::vector<uint8_t> plain(box.size() - kBoxOverhead);
  if (crypto_box_open_easy_afternm(plain.data(), box.data(), box.size(), sealed.data(),
                                   key.bytes.data()) != 0) {
    return absl::InvalidArgumentError("derp: box does not open");
  }
  return plain;
}

// The key-pair forms: the same boxes (crypto_box is beforenm then afternm).
std::vector<uint8_t> sealBox(const PrivateKey& self, const NodeKey& peer,
                             std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce) {
  // libsodium refuses a low-order peer key (the shared secret would be zero);
  // such a box could only be forged, so return nothing rather than send it.
  std::optional<BoxKey> key = BoxKey::derive(self, peer);
  if (!key) return {};
  return sealBox(*key, plaintext, nonce);
}

absl::StatusOr<std::vector<uint8_t>> openBox(const PrivateKey& self, const NodeKey& peer,
                                             std::span<const uint8_t> sealed) {
  std::optional<BoxKey> key = BoxKey::derive(self, peer);
  absl::StatusOr<std::vector<uint8_t>> plain =
      key ? openBox(*key, sealed) : absl::InvalidArgumentError("derp: box does not open");
  if (!plain.ok() && absl::StrContains(plain.status().message(), "does not open")) {
    return absl::InvalidArgumentError(
        absl::StrCat("derp: box from ", peer.toString(), " does not open"));
  }
  return plain;
}

absl::StatusOr<ClientInfo> parseClientInfoJson(std::string_view json) {
  constexpr absl::string_view kWhat = "ClientInfo";
  absl::StatusOr<Json> j = parseObject(kWhat, json);
  if (!j.ok()) return j.status();
  ClientInfo info;
  for (const auto& [key, value] : j->items()) {
    // Go leaves a field untouched for null, and ignores keys it does not know.
    if (value.is_null()) continue;
    absl::Status s;
    if (keyIs(key, "version")) {
      s = readInt(kWhat, key, value, info.version);
    } else if (keyIs(key, "meshKey")) {
      s = readString(kWhat, key, value, info.meshKey);
    } else if (keyIs(key, "CanAckPings")) {
      s = readBool(kWhat, key, value, info.canAckPings);
    } else if (keyIs(key, "IsProber")) {
      s = readBool(kWhat, key, value, info.isProber);
    } else if (keyIs(key, "AppName")) {
      s = readString(kWhat, key, value, info.appName);
    }
    if (!s.ok()) return s;
  }
  return info;
}

std::string clientInfoJson(const ClientInfo& info) {
  // Go writes struct fields in declaration order, which changed between
  // releases: v1.36.2 puts version first, newer clients (the ones that send
  // AppName) put meshKey first. Pick the layout of the client that would send
  // these fields, so every captured ClientInfo is reproduced byte for byte.
  const bool modern = !info.appName.empty();
  std::string out = "{";
  auto field = [&out](std::string_view name) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    out.append(name);
    out += "\":";
  };
  auto version = [&] {
    if (info.version != 0) {
      field("version");
      out += absl::StrCat(info.version);
    }
  };
  auto meshKey = [&] {
    if (!info.meshKey.empty()) {
      field("meshKey");
      appendGoJsonString(out, info.meshKey);
    }
  };
  if (modern) {
    meshKey();
    version();
  } else {
    version();
    meshKey();
  }
  field("CanAckPings");
  out += info.canAckPings ? "true" : "false";
  if (info.isProber) {
    field("IsProber");
    out += "true";
  }
  if (!info.appName.empty()) {
    field("AppName");
    appendGoJsonString(out, info.appName);
  }
  out.push_back('}');
  return out;
}

absl::StatusOr<ServerInfo> parseServerInfoJson(std::string_view json) {
  constexpr absl::string_view kWhat = "ServerInfo";
  absl::StatusOr<Json> j = parseObject(kWhat, json);
  if (!j.ok()) return j.status();
  ServerInfo info;
  // Report what the server sent: an absent version is 0, as in Go.
  info.version = 0;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (const auto& [key, value] : j->items()) {
    if (value.is_null()) continue;
    absl::Status s;
    int64_t n = 0;
    if (keyIs(key, "version")) {
      s = readInt(kWhat, key, value, info.version);
    } else if (keyIs(key, "TokenBucketBytesPerSecond")) {
      s = readInt64(kWhat, key, value, kMin, kMax, n);
      if (s.ok()) info.tokenBucketBytesPerSecond = n;
    } else if (keyIs(key, "TokenBucketBytesBurst")) {
      s = readInt64(kWhat, key, value, kMin, kMax, n);
      if (s.ok()) info.tokenBucketBytesBurst = n;
    }
    if (!s.ok()) return s;
  }
  return info;
}

std::string serverInfoJson(const ServerInfo& info) {
  std::string out = "{";
  auto sep = [&out] {
    if (out.size() > 1) out.push_back(',');
  };
  if (info.version != 0) {
    sep();
    out += absl::StrCat("\"version\":", info.version);
  }
  if (info.tokenBucketBytesPerSecond) {
    sep();
    out += absl::StrCat("\"TokenBucketBytesPerSecond\":", *info.tokenBucketBytesPerSecond);
  }
  if (info.tokenBucketBytesBurst) {
    sep();
    out += absl::StrCat("\"TokenBucketBytesBurst\":", *info.tokenBucketBytesBurst);
  }
  out.push_back('}');
  return out;
}

absl::StatusOr<ClientInfo> openClientInfo(const PrivateKey& server, const NodeKey& client,
                                          std::span<const uint8_t> sealed) {
  absl::StatusOr<std::vector<uint8_t>> plain = openBox(server, client, sealed);
  if (!plain.ok()) return plain.status();
  return parseClientInfoJson(
      std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()));
}

absl::StatusOr<ClientInfo> openClientInfo(const BoxKey& key, std::span<const uint8_t> sealed) {
  absl::StatusOr<std::vector<uint8_t>> plain = openBox(key, sealed);
  if (!plain.ok()) return plain.status();
  return parseClientInfoJson(
      std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()));
}

}  // namespace derpd::derp
