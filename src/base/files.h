// Small file-system helpers shared by the modules that read and write
// certificates, keys and other secrets.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace derpd {

// Creates every missing directory above `path` (like mkdir -p on its parent)
// with mode 0700, since what goes there is private. The error names the
// directory that could not be made.
absl::Status makePrivateParentDirs(const std::string& path);

// The whole of a small file (a key, a certificate, a config), at most
// maxBytes. Errors start with "<what> <path>: " (open, read, too large).
absl::StatusOr<std::string> readSmallFile(const std::string& path, size_t maxBytes,
                                          absl::string_view what);

// dir + "/" + name (no doubled slash; name alone when dir is empty).
std::string joinPath(const std::string& dir, const std::string& name);

}  // namespace derpd
