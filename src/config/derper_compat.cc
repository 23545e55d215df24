#include "config/derper_compat.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace derpd {
namespace {

// The value of NAME in env; empty when unset.
std::string envValue(const std::vector<std::string>& env, absl::string_view name) {
  for (const std::string& entry : env) {
    if (entry.size() > name.size() && absl::string_view(entry).substr(0, name.size()) == name &&
        entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return "";
}

constexpr std::pair<absl::string_view, absl::string_view> kNotBuilt[] = {
    {"secrets-url",
     "derper can fetch the mesh key from setec, Tailscale's own secrets server, reached over "
     "the tailnet; derpd reads it from -mesh-psk-file"},
    {"secrets-path-prefix", "it names the mesh key in setec (-secrets-url); use -mesh-psk-file"},
    {"secrets-cache-dir", "it caches setec's secrets (-secrets-url); use -mesh-psk-file"},
    {"ace", "derper's embedded ACE server is experimental and undocumented"},
};

}  // namespace

void applyMeshKeyDefaults(const std::vector<std::string>& env, ParsedCommandLine& out) {
  Config& c = out.config;
  if (c.dev) c.devMeshKey = envValue(env, "TAILSCALE_DERPER_MESH_KEY");
  if (!c.devMeshKey.empty()) {
    out.environment.push_back("TAILSCALE_DERPER_MESH_KEY=(set)");
    return;
  }
  if (c.meshPskFileGiven) return;
  std::vector<std::string> tries = {"/home/derp/keys/derp-mesh.key"};
  if (std::string home = envValue(env, "HOME"); !home.empty()) {
    tries.push_back(home + "/keys/derp-mesh.key");
  }
  for (const std::string& path : tries) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      c.meshPskFile = path;
      return;
    }
  }
}

std::optional<std::string> derperFlagNotBuilt(absl::string_view name) {
  for (const auto& [flag, why] : kNotBuilt) {
    if (name == flag) return absl::StrCat("derper's -", name, " is not built in derpd: ", why);
  }
  return std::nullopt;
}

}  // namespace derpd
