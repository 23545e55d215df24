// The rollout share of an unpublished /bootstrap-dns name
// (-unpublished-bootstrap-dns-names name/txtname, PROTOCOL.md "HTTP
// endpoints"): which clients get the name's addresses. derper decides per
// client address with Go's math/rand/v2 PCG seeded by the address, so one
// client always gets the same answer and a fleet of relays agrees on it; we
// decide the same way, bit for bit, so that a region mixing derper and derpd
// rolls a name out to the same clients.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace derpd::http {

// Go's math/rand/v2 PCG (128-bit LCG, DXSM output), seeded as NewPCG(seed1,
// seed2). Hand-written: no Debian library carries this generator, and the
// answers must match Go's exactly.
class GoPcg {
 public:
  GoPcg(uint64_t seed1, uint64_t seed2) : hi_(seed1), lo_(seed2) {}
  uint64_t next();  // Go's PCG.Uint64
  // Go's Rand.Float64 over this source: [0, 1) in steps of 2^-53.
  double nextFloat64() { return static_cast<double>(next() << 11 >> 11) / 9007199254740992.0; }

 private:
  uint64_t hi_;
  uint64_t lo_;
};

// Whether the client at ip (IPv4 mapped into IPv6, as the relay keeps
// addresses) is inside a rollout of `share` (0 to 1), as derper's
// remoteAddrMatchesPercent: 0 never, 1 always, a loopback client at random
// half of the time (for local testing), any other client by its address.
bool rolloutIncludes(const std::array<uint8_t, 16>& ip, double share);

// A TXT value as derper reads it (Go's strconv.Atoi, then 0..100): the share
// it gives, or nullopt for a value that gives none.
std::optional<double> rolloutShareFromTxt(std::string_view value);

}  // namespace derpd::http
