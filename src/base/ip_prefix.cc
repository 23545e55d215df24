#include "base/ip_prefix.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace derpd {
namespace {

constexpr int kV4MappedBits = 96;

bool isV4Mapped(const Ip16& ip) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(ip.data(), kPrefix, sizeof(kPrefix)) == 0;
}

// The address and whether it was written as IPv4.
bool parseIp(const std::string& text, Ip16& out, bool& v4) {
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    out = {};
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &a4, 4);
    v4 = true;
    return true;
  }
  v4 = false;
  return inet_pton(AF_INET6, text.c_str(), out.data()) == 1;
}

}  // namespace

bool IpPrefix::contains(const Ip16& ip) const {
  const int whole = bits / 8;
  if (std::memcmp(ip.data(), addr.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[static_cast<size_t>(whole)] & mask) == (addr[static_cast<size_t>(whole)] & mask);
}

std::string IpPrefix::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (isV4Mapped(addr) && bits >= kV4MappedBits) {
    inet_ntop(AF_INET, addr.data() + 12, buf, sizeof(buf));
    return absl::StrCat(buf, "/", bits - kV4MappedBits);
  }
  inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
  return absl::StrCat(buf, "/", bits);
}

absl::StatusOr<IpPrefix> parseIpPrefix(absl::string_view text) {
  const size_t slash = text.find('/');
  const std::string host(text.substr(0, slash));
  IpPrefix p;
  bool v4 = false;
  if (!parseIp(host, p.addr, v4)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not an IP address or prefix (want e.g. 10.0.0.0/8)"));
  }
  const int maxBits = v4 ? 32 : 128;
  int n = maxBits;
  if (slash != absl::string_view::npos) {
    const absl::string_view len = text.substr(slash + 1);
    const bool digits = !len.empty() && len.size() <= 3 &&
                        len.find_first_not_of("0123456789") == absl::string_view::npos;
    if (!digits || !absl::SimpleAtoi(len, &n) || n > maxBits) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": prefix length must be 0 to ", maxBits));
    }
  }
  p.bits = v4 ? kV4MappedBits + n : n;
  IpPrefix masked{};
  masked.bits = p.bits;
  for (int i = 0; i < 16; i++) {
    const int keep = std::min(8, std::max(0, p.bits - 8 * i));
    masked.addr[static_cast<size_t>(i)] =
        static_cast<uint8_t>(p.addr[static_cast<size_t>(i)] & (0xff00 >> keep));
  }
  if (masked.addr != p.addr) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" has bits set past /", n,
                                                   "; did you mean ", masked.toString(), "?"));
  }
  return p;
}

absl::StatusOr<std::vector<IpPrefix>> parseIpPrefixList(absl::string_view text) {
  std::vector<IpPrefix> out;
  if (text.empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    absl::StatusOr<IpPrefix> p = parseIpPrefix(item);
    if (!p.ok()) return p.status();
    out.push_back(*p);
  }
  return out;
}

const std::vector<IpPrefix>& tailnetPrefixes() {
  static const std::vector<IpPrefix> prefixes = [] {
    std::vector<IpPrefix> v;
    for (const char* text : {"100.64.0.0/10", "fd7a:115c:a1e0::/48"})
      v.push_back(*parseIpPrefix(text));
    return v;
  }();
  return prefixes;
}

bool isLoopbackIp(const Ip16& ip) {
  static constexpr Ip16 kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return ip == kV6Loopback || (isV4Mapped(ip) && ip[12] == 127);
}

}  // namespace derpd
