// ConfigFile: the optional --config file, a TOML document whose keys are the
// flag names (`a = ":443"`, `stun-port = 3478`, `dev = true`). This reads and
// parses it into settings; config.cc applies them through the same flag table
// as the command line, so every setting has one name and one validation.
//
// Called once at startup by the main thread; no state.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace derpd {

// One top-level `key = value` of the file.
struct FileSetting {
  std::string key;
  // The value as a flag would give it: strings as they are, booleans
  // "true"/"false", integers in decimal. Empty for other types.
  std::string text;
  // The TOML type: "string", "boolean", "integer", "float", "array", "table",
  // "date", "time" or "date-time".
  absl::string_view type;
  int line = 0;  // 1-based; 0 when unknown
};

// Parses a TOML document; `path` names it in errors, which give the line and
// column of malformed TOML. Settings come in file order.
absl::StatusOr<std::vector<FileSetting>> parseConfigText(absl::string_view text,
                                                          absl::string_view path);

// Reads and parses the file at `path`. Errors name the file: unreadable,
// a directory, larger than 1 MiB, or malformed TOML.
absl::StatusOr<std::vector<FileSetting>> readConfigFile(const std::string& path);

}  // namespace derpd
