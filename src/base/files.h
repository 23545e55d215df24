// Small file-system helpers shared by the modules that write secrets.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace derpd {

// Creates every missing directory above `path` (like mkdir -p on its parent)
// with mode 0700, since what goes there is private. The error names the
// directory that could not be made.
absl::Status makePrivateParentDirs(const std::string& path);

}  // namespace derpd
