// Small file-system helpers shared by the modules that read and write
// certificates, keys and other secrets.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace derpd {

// Creates every missing directory above `path` (like mkdir -p on its parent)
// with mode 0700, since what goes there is private. The error names the
// directory that could not be made.
absl::Status makePrivateParentDirs(const std::string& path);

// dir + "/" + name (no doubled slash; name alone when dir is empty).
std::string joinPath(const std::string& dir, const std::string& name);

}  // namespace derpd
