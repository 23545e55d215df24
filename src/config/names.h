// Host names and addresses as the configuration accepts them, and the
// -mesh-with entries built from them (config.h's MeshEntry). Internal to
// src/config, apart from parseMeshEntry (declared in config.h).
#pragma once

#include "absl/strings/string_view.h"

namespace derpd {

// An IP address of the family (AF_INET, AF_INET6), nothing else.
bool isIpLiteral(int family, absl::string_view text);

// A DNS name: dot-separated labels of letters, digits, '-' and '_' (1-63
// each, 253 in all, one trailing dot allowed). The last label may not be all
// digits: getaddrinfo would read such a "name" as a shorthand IPv4 address.
bool isHostName(absl::string_view name);

}  // namespace derpd
