// IpPrefix: an address range in CIDR form ("10.0.0.0/8", "fd7a:115c:a1e0::/48",
// or one address), kept as the relay keeps peer addresses: 16 bytes, IPv4
// mapped into IPv6 (::ffff:a.b.c.d), so one comparison serves both families.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace derpd {

using Ip16 = std::array<uint8_t, 16>;

struct IpPrefix {
  Ip16 addr{};
  int bits = 0;  // of the 128; an IPv4 /n is 96 + n

  bool contains(const Ip16& ip) const;
  // "10.0.0.0/8" or "fd7a:115c:a1e0::/48".
  std::string toString() const;
  bool operator==(const IpPrefix&) const = default;
};

// Parses "ADDR/N" or a bare address (a single-address prefix). The address
// must be the prefix's first one ("10.1.0.0/8" is refused: the bits past /8
// suggest a typo).
absl::StatusOr<IpPrefix> parseIpPrefix(absl::string_view text);
// A comma-separated list; empty text is an empty list.
absl::StatusOr<std::vector<IpPrefix>> parseIpPrefixList(absl::string_view text);

// What derper serves /debug/ to besides loopback: Tailscale's address ranges,
// 100.64.0.0/10 (CGNAT, tailnet IPv4) and fd7a:115c:a1e0::/48 (tailnet IPv6).
const std::vector<IpPrefix>& tailnetPrefixes();

bool isLoopbackIp(const Ip16& ip);

}  // namespace derpd
