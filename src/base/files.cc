#include "base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"

namespace derpd {

absl::Status makePrivateParentDirs(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  const std::string dir = path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); i++) {
    if (i != dir.size() && dir[i] != '/') continue;
    const std::string prefix = dir.substr(0, i);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("create directory ", prefix));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> readSmallFile(const std::string& path, size_t maxBytes,
                                          absl::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat(what, " ", path, ": open"));
  std::string content;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat(what, " ", path, ": read"));
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > maxBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", path, ": larger than ", maxBytes, " bytes"));
    }
  }
  return content;
}

std::string joinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace derpd
