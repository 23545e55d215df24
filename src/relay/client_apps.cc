#include "relay/client_apps.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace derpd::relay {
namespace {

std::string_view bucketOf(std::string_view name) {
  if (name.empty()) return "(none)";
  if (name.size() > ClientApps::kMaxNameLen) return "(invalid)";
  for (char ch : name) {
    if (ch < 0x20 || ch > 0x7e) return "(invalid)";
  }
  return name;
}

}  // namespace

void ClientApps::count(std::string_view appName) {
  std::string_view name = bucketOf(appName);
  std::lock_guard lock(mu_);
  auto find = [&](std::string_view n) {
    return std::find_if(counts_.begin(), counts_.end(),
                        [&](const auto& e) { return e.first == n; });
  };
  auto it = find(name);
  if (it == counts_.end() && counts_.size() >= kMaxNames) {
    name = "(other)";
    it = find(name);
  }
  if (it == counts_.end()) {
    counts_.emplace_back(std::string(name), 1);
  } else {
    it->second++;
  }
}

std::vector<std::pair<std::string, uint64_t>> ClientApps::snapshot() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  {
    std::lock_guard lock(mu_);
    out = counts_;
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

std::string ClientApps::debugText() const {
  std::vector<std::pair<std::string, uint64_t>> s = snapshot();
  std::string out = "# DERP handshakes since start by the client's AppName (ClientInfo)\n";
  if (s.empty()) out += "# none yet\n";
  for (const auto& [name, n] : s) absl::StrAppend(&out, n, " ", name, "\n");
  return out;
}

}  // namespace derpd::relay
