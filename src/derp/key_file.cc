#include "derp/key_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/files.h"
#include "base/unique_fd.h"

namespace derpd::derp {
namespace {

// A key file is about 90 bytes; the cap stops a mistaken -c (a device, a
// huge file) from being read without end.
constexpr size_t kMaxKeyFileLen = 64 << 10;

absl::Status pathError(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("key file ", path, ": ", why));
}

absl::Status errnoError(int err, const std::string& path, absl::string_view op) {
  return absl::ErrnoToStatus(err, absl::StrCat("key file ", path, ": ", op));
}

// Reads the whole file. NotFound when it does not exist.
absl::StatusOr<std::string> readKeyFile(const std::string& path) {
  return readSmallFile(path, kMaxKeyFileLen, "key file");
}


absl::Status writeAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "write");
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return absl::ErrnoToStatus(errno, "fsync");
  return absl::OkStatus();
}

// Writes a fresh key with O_EXCL so that an existing file, even one that
// appeared since we looked, is never overwritten. nullopt: someone else won
// the race and the caller should load their file.
absl::StatusOr<std::optional<PrivateKey>> createKeyFile(const std::string& path) {
  if (absl::Status s = makePrivateParentDirs(path); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("key file ", path, ": ", s.message()));
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == EEXIST) return std::nullopt;
    return errnoError(errno, path, "create");
  }
  const PrivateKey key = PrivateKey::generate();
  if (absl::Status s = writeAll(fd.get(), formatKeyFile(key)); !s.ok()) {
    // A half-written file would be rejected on every later start; remove it.
    ::unlink(path.c_str());
    return absl::Status(s.code(), absl::StrCat("key file ", path, ": ", s.message()));
  }
  return key;
}

}  // namespace

absl::StatusOr<PrivateKey> parseKeyFile(std::string_view content) {
  const auto j = nlohmann::json::parse(content.begin(), content.end(), nullptr,
                                       /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  const nlohmann::json* text = nullptr;
  for (const auto& [name, value] : j.items()) {
    // derper reads the file with Go's encoding/json, which matches field
    // names case-insensitively.
    if (absl::EqualsIgnoreCase(name, "PrivateKey") && !value.is_null()) text = &value;
  }
  if (text == nullptr) return absl::InvalidArgumentError("no PrivateKey");
  if (!text->is_string()) return absl::InvalidArgumentError("PrivateKey is not a string");
  std::optional<PrivateKey> key = PrivateKey::parse(text->get_ref<const std::string&>());
  if (!key) {
    return absl::InvalidArgumentError("PrivateKey is not \"privkey:\" and 64 hex digits");
  }
  return *key;
}

std::string formatKeyFile(const PrivateKey& key) {
  return absl::StrCat("{\n\t\"PrivateKey\": \"", key.toString(), "\"\n}");
}

absl::StatusOr<PrivateKey> loadOrCreateKeyFile(const std::string& path) {
  // Two rounds: if another process creates the file between our read and our
  // create, the second read picks up its key.
  for (int attempt = 0; attempt < 2; attempt++) {
    absl::StatusOr<std::string> content = readKeyFile(path);
    if (content.ok()) {
      absl::StatusOr<PrivateKey> key = parseKeyFile(*content);
      if (!key.ok()) return pathError(path, key.status().message());
      return key;
    }
    if (!absl::IsNotFound(content.status())) return content.status();
    absl::StatusOr<std::optional<PrivateKey>> created = createKeyFile(path);
    if (!created.ok()) return created.status();
    if (*created) return **created;
  }
  return pathError(path, "appeared and vanished while being created");
}

}  // namespace derpd::derp
