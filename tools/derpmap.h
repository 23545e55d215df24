// derpctl derpmap: the DERP map entries that make clients use a set of derpd
// nodes as one region, for the Tailscale policy file ("derpMap", JSON) and
// for headscale's derp.paths file (YAML). Field names and meanings are
// tailcfg.DERPRegion / tailcfg.DERPNode's; a port of 0 means the default
// (443 for DERP, 3478 for STUN) and is left out of the JSON.
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace derpd::derpmap {

struct Node {
  std::string name;      // "900a", "900b", ... in the order given
  std::string hostName;  // DNS name, or the IP for an IP-certificate node
  std::string ipv4, ipv6;
  std::string certName;  // "sha256-raw:<hex>" for a node with an IP certificate
  int derpPort = 0;      // 0: 443
  int stunPort = 0;      // 0: 3478; -1: no STUN
};

struct Region {
  int id = 900;
  std::string code = "home";
  std::string name;  // "" : the code
  std::vector<Node> nodes;
};

// One NODE argument: HOST[:DERPPORT][,stun=PORT|off][,certname=sha256-raw:HEX]
// [,ipv4=ADDR][,ipv6=ADDR]. An IP as HOST is also the node's IPv4 or IPv6.
absl::StatusOr<Node> parseNode(absl::string_view spec);

// Names the nodes (region id + a, b, ...) and checks the region.
absl::Status finish(Region& region);

// {"derpMap": {"OmitDefaultRegions": false, "Regions": {"900": {...}}}}
std::string tailscaleJson(const Region& region);
// headscale's derp.paths file: regions: {900: {regionid: ..., nodes: [...]}}
std::string headscaleYaml(const Region& region);

}  // namespace derpd::derpmap
