#include "config/names.h"

#include <arpa/inet.h>

#include <charconv>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "config/config.h"

namespace derpd {

bool isIpLiteral(int family, absl::string_view text) {
  in6_addr buf;
  return inet_pton(family, std::string(text).c_str(), &buf) == 1;
}

bool isHostName(absl::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  bool lastAllDigits = false;
  while (true) {
    const size_t dot = name.find('.');
    absl::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > 63) return false;
    lastAllDigits = true;
    for (char ch : label) {
      if (!absl::ascii_isalnum(ch) && ch != '-' && ch != '_') return false;
      if (!absl::ascii_isdigit(ch)) lastAllDigits = false;
    }
    if (dot == absl::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  return !lastAllDigits;
}

absl::StatusOr<MeshEntry> parseMeshEntry(std::string_view item) {
  const absl::string_view text =
      absl::StripAsciiWhitespace(absl::string_view(item.data(), item.size()));
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("mesh peer \"", text, "\": ", why));
  };
  if (text.empty()) return bad("empty");
  MeshEntry entry;
  entry.text = std::string(text);
  absl::string_view authority = text;
  if (const size_t sep = authority.find("://"); sep != absl::string_view::npos) {
    const std::string scheme = absl::AsciiStrToLower(authority.substr(0, sep));
    if (scheme == "https") {
      entry.tls = true;
    } else if (scheme == "http") {
      entry.tls = false;
    } else {
      return bad("want http:// or https://, or no scheme");
    }
    authority.remove_prefix(sep + 3);
    if (const size_t slash = authority.find('/'); slash != absl::string_view::npos) {
      const absl::string_view path = authority.substr(slash);
      if (path != "/" && path != "/derp") return bad("the only path allowed is /derp");
      authority = authority.substr(0, slash);
    }
  } else if (const size_t slash = authority.find('/'); slash != absl::string_view::npos) {
    // derper's "host/dialhost": host names the peer (TLS, identity, self),
    // dialhost is where to connect (a headless Service's pod name, an IP).
    const absl::string_view left = authority.substr(0, slash);
    absl::StatusOr<MeshEntry> peer = parseMeshEntry(std::string_view(left.data(), left.size()));
    if (!peer.ok()) return bad(peer.status().message());
    absl::string_view dial = authority.substr(slash + 1);
    if (dial.size() > 2 && dial.front() == '[' && dial.back() == ']') {
      dial = dial.substr(1, dial.size() - 2);
      if (!isIpLiteral(AF_INET6, dial)) return bad("not an IPv6 address between [ and ] after /");
    } else if (!isIpLiteral(AF_INET, dial) && !isIpLiteral(AF_INET6, dial) && !isHostName(dial)) {
      return bad("after / want the host name or IP address to dial (no port: the peer's is used)");
    }
    peer->text = entry.text;
    peer->dialHost = absl::AsciiStrToLower(dial);
    return peer;
  }
  absl::string_view host = authority;
  std::optional<absl::string_view> portText;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("no closing ]");
    host = authority.substr(1, close - 1);
    const absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return bad("want [address]:port");
    if (!after.empty()) portText = after.substr(1);
    if (!isIpLiteral(AF_INET6, host)) return bad("not an IPv6 address between [ and ]");
  } else if (authority.find(':') != authority.rfind(':')) {
    // Several colons: an IPv6 address, which needs brackets to take a port.
    if (entry.tls.has_value() || !isIpLiteral(AF_INET6, authority)) {
      return bad("an IPv6 address is written [address] or [address]:port");
    }
  } else if (const size_t colon = authority.find(':'); colon != absl::string_view::npos) {
    host = authority.substr(0, colon);
    portText = authority.substr(colon + 1);
  }
  if (portText) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(portText->data(), portText->data() + portText->size(), port);
    if (portText->empty() || ec != std::errc() || end != portText->data() + portText->size() ||
        port < 1 || port > 65535) {
      return bad("want a port from 1 to 65535");
    }
    entry.port = static_cast<uint16_t>(port);
  }
  if (host.empty()) return bad("no host");
  if (!isIpLiteral(AF_INET, host) && !isIpLiteral(AF_INET6, host) && !isHostName(host)) {
    return bad("want a host name or IP address");
  }
  entry.host = absl::AsciiStrToLower(host);
  return entry;
}

}  // namespace derpd
