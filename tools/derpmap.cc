#include "derpmap.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace derpd::derpmap {
namespace {

bool isIp(int family, const std::string& s) {
  unsigned char buf[16];
  return inet_pton(family, s.c_str(), buf) == 1;
}

absl::StatusOr<int> parsePort(absl::string_view what, absl::string_view text) {
  int port = 0;
  if (!absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": want a port from 1 to 65535, got \"", text, "\""));
  }
  return port;
}

bool isHostName(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    }
  }
  return true;
}

// YAML scalars we write are names, addresses and hex: quote them so that
// "1e3" or an IPv6 address stays a string.
std::string q(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

absl::StatusOr<Node> parseNode(absl::string_view spec) {
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
  Node n;
  std::string host(parts[0]);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("node \"", spec, "\": ", why));
  };
  // [v6]:port, [v6], v4:port, name:port, or a bare host / IPv6.
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string::npos) return bad("unclosed [");
    std::string rest = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("want [IPv6]:PORT");
      absl::StatusOr<int> p = parsePort("DERP port", rest.substr(1));
      if (!p.ok()) return bad(p.status().message());
      n.derpPort = *p;
    }
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    const size_t colon = host.find(':');
    absl::StatusOr<int> p = parsePort("DERP port", host.substr(colon + 1));
    if (!p.ok()) return bad(p.status().message());
    n.derpPort = *p;
    host.resize(colon);
  }
  if (isIp(AF_INET, host)) {
    n.ipv4 = host;
  } else if (isIp(AF_INET6, host)) {
    n.ipv6 = host;
  } else if (!isHostName(host)) {
    return bad("want a host name or an IP address");
  }
  n.hostName = host;
  if (n.derpPort == 443) n.derpPort = 0;
  for (size_t i = 1; i < parts.size(); i++) {
    std::vector<absl::string_view> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    if (kv.size() != 2) return bad(absl::StrCat("want KEY=VALUE, got \"", parts[i], "\""));
    const std::string value(kv[1]);
    if (kv[0] == "stun") {
      if (value == "off") {
        n.stunPort = -1;
      } else {
        absl::StatusOr<int> p = parsePort("stun", value);
        if (!p.ok()) return bad(p.status().message());
        n.stunPort = *p == 3478 ? 0 : *p;
      }
    } else if (kv[0] == "certname") {
      if (value.rfind("sha256-raw:", 0) != 0 || value.size() != 11 + 64) {
        return bad(
            "certname wants sha256-raw: and 64 hex digits (derpd logs it for IP certificates)");
      }
      n.certName = value;
    } else if (kv[0] == "ipv4") {
      if (!isIp(AF_INET, value)) return bad("ipv4 wants an IPv4 address");
      n.ipv4 = value;
    } else if (kv[0] == "ipv6") {
      if (!isIp(AF_INET6, value)) return bad("ipv6 wants an IPv6 address");
      n.ipv6 = value;
    } else {
      return bad(absl::StrCat("unknown key \"", kv[0], "\" (stun, certname, ipv4, ipv6)"));
    }
  }
  return n;
}

absl::Status finish(Region& region) {
  if (region.id < 1 || region.id > 999) {
    return absl::InvalidArgumentError("region id: want 1 to 999 (900-999 are for custom regions)");
  }
  if (region.code.empty()) return absl::InvalidArgumentError("region code: must not be empty");
  if (region.nodes.empty()) return absl::InvalidArgumentError("no nodes given");
  if (region.nodes.size() > 26) return absl::InvalidArgumentError("at most 26 nodes per region");
  if (region.name.empty()) region.name = region.code;
  for (size_t i = 0; i < region.nodes.size(); i++) {
    region.nodes[i].name = absl::StrCat(region.id, std::string(1, static_cast<char>('a' + i)));
  }
  return absl::OkStatus();
}

std::string tailscaleJson(const Region& r) {
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (const Node& n : r.nodes) {
    nlohmann::ordered_json j;
    j["Name"] = n.name;
    j["RegionID"] = r.id;
    j["HostName"] = n.hostName;
    if (!n.certName.empty()) j["CertName"] = n.certName;
    if (!n.ipv4.empty()) j["IPv4"] = n.ipv4;
    if (!n.ipv6.empty()) j["IPv6"] = n.ipv6;
    if (n.stunPort != 0) j["STUNPort"] = n.stunPort;
    if (n.derpPort != 0) j["DERPPort"] = n.derpPort;
    nodes.push_back(j);
  }
  nlohmann::ordered_json region;
  region["RegionID"] = r.id;
  region["RegionCode"] = r.code;
  region["RegionName"] = r.name;
  region["Nodes"] = nodes;
  nlohmann::ordered_json out;
  out["derpMap"]["OmitDefaultRegions"] = false;
  out["derpMap"]["Regions"][std::to_string(r.id)] = region;
  return out.dump(2) + "\n";
}

std::string headscaleYaml(const Region& r) {
  std::string y =
      absl::StrCat("regions:\n  ", r.id, ":\n    regionid: ", r.id, "\n    regioncode: ", q(r.code),
                   "\n    regionname: ", q(r.name), "\n    nodes:\n");
  for (const Node& n : r.nodes) {
    absl::StrAppend(&y, "      - name: ", q(n.name), "\n        regionid: ", r.id,
                    "\n        hostname: ", q(n.hostName), "\n");
    if (!n.certName.empty()) absl::StrAppend(&y, "        certname: ", q(n.certName), "\n");
    if (!n.ipv4.empty()) absl::StrAppend(&y, "        ipv4: ", q(n.ipv4), "\n");
    if (!n.ipv6.empty()) absl::StrAppend(&y, "        ipv6: ", q(n.ipv6), "\n");
    absl::StrAppend(&y, "        stunport: ", n.stunPort, "\n        stunonly: false\n",
                    "        derpport: ", n.derpPort, "\n");
  }
  return y;
}

}  // namespace derpd::derpmap
