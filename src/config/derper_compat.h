// What derper does that its flags do not say: the mesh key's other sources,
// and the flags derpd refuses. Internal to src/config.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "config/config.h"

namespace derpd {

// derper's other mesh key sources: with -dev, $TAILSCALE_DERPER_MESH_KEY
// (Config::devMeshKey); with no -mesh-psk-file at all, the first of
// /home/derp/keys/derp-mesh.key and $HOME/keys/derp-mesh.key that exists.
// env: "NAME=value" entries.
void applyMeshKeyDefaults(const std::vector<std::string>& env, ParsedCommandLine& out);

// For a derper flag derpd refuses: the error, saying why and what to use
// instead; nullopt for any other name.
std::optional<std::string> derperFlagNotBuilt(absl::string_view name);

}  // namespace derpd
