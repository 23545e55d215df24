#include "config/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <toml++/toml.h>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"

namespace derpd {
namespace {

// A config file is a few hundred bytes; anything near this is a wrong path.
constexpr size_t kMaxConfigFileBytes = 1 << 20;

absl::string_view typeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "string";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
  }
  return "none";
}

std::string valueText(const toml::node& node) {
  if (const auto* s = node.as_string()) return s->get();
  if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* i = node.as_integer()) return absl::StrCat(i->get());
  return "";
}

}  // namespace

absl::StatusOr<std::vector<FileSetting>> parseConfigText(absl::string_view text,
                                                          absl::string_view path) {
  // toml++ reports malformed documents by exception (the Debian build has
  // them on); it is caught here so callers see a Status like everywhere else.
  toml::table table;
  try {
    table = toml::parse(std::string_view(text.data(), text.size()),
                        std::string_view(path.data(), path.size()));
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, " line ",
                                                   static_cast<uint32_t>(e.source().begin.line), " column ",
                                                   static_cast<uint32_t>(e.source().begin.column),
                                                   ": ", std::string(e.description())));
  }
  std::vector<FileSetting> out;
  for (const auto& [key, node] : table) {
    FileSetting s;
    s.key = std::string(key.str());
    s.type = typeName(node.type());
    s.text = valueText(node);
    s.line = static_cast<int>(key.source().begin.line);
    out.push_back(std::move(s));
  }
  // The table is ordered by key; errors are easier to follow in file order.
  std::stable_sort(out.begin(), out.end(),
                   [](const FileSetting& a, const FileSetting& b) { return a.line < b.line; });
  return out;
}

absl::StatusOr<std::vector<FileSetting>> readConfigFile(const std::string& path) {
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", why));
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return fail("is a directory");
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigFileBytes) return fail("larger than 1 MiB");
  }
  return parseConfigText(text, path);
}

}  // namespace derpd
