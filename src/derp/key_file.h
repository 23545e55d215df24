// derper's key file (-c): {"PrivateKey": "privkey:<64 hex>"}.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "derp/key.h"

namespace derpd::derp {

// derper's default path for -c.
inline constexpr std::string_view kDefaultKeyFilePath = "/var/lib/derper/derper.key";

// Parses a key file's content. Errors say what is wrong (not JSON, no
// PrivateKey, bad key text).
absl::StatusOr<PrivateKey> parseKeyFile(std::string_view content);

// Exactly what derper writes: json.MarshalIndent with a tab, no trailing newline.
std::string formatKeyFile(const PrivateKey& key);

// Loads the key file at path; if it does not exist, generates a key and writes
// it with mode 0600 (creating the parent directory 0700 if needed). Errors name
// the path and the reason; a malformed file is an error, never overwritten.
absl::StatusOr<PrivateKey> loadOrCreateKeyFile(const std::string& path);

}  // namespace derpd::derp
