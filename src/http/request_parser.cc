#include "http/request_parser.h"

#include <algorithm>
#include <optional>

#include "http/ascii.h"

namespace derpd::http {
namespace {

// RFC 9110 tchar: what a method and a header name may be made of.
bool isTokenChar(uint8_t c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return isTokenChar(c); });
}

// The target is kept to visible ASCII: anything else is either an attack or a
// client that did not percent-encode, and neither reaches a DERP endpoint.
bool isTargetChar(uint8_t c) { return c > 0x20 && c < 0x7f; }

// Field values may carry obs-text (UTF-8 in a User-Agent is common) but no
// control characters other than HTAB: a stray CR or NUL is how header
// injection and request smuggling start.
bool isFieldValueChar(uint8_t c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// A line that is not finished yet may still be judged: bytes no valid line can
// contain mean garbage (a TLS ClientHello on the plain port, a port scan), and
// rejecting them now beats waiting for a head that never comes. A CR is fine as
// the last byte because its LF may be in the next read.
bool isPlausibleLinePrefix(std::string_view partial, bool requestLine) {
  for (size_t i = 0; i < partial.size(); ++i) {
    const auto c = static_cast<uint8_t>(partial[i]);
    if (c == '\r' && i + 1 == partial.size()) continue;
    if (requestLine ? (c == ' ' || isTargetChar(c)) : isFieldValueChar(c)) continue;
    return false;
  }
  return true;
}

bool isDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The path of a target: origin-form ("/a?b") loses its query; absolute-form
// ("http://host/a?b"), which RFC 9112 says servers must accept, also loses its
// scheme and authority so it routes like the origin-form it stands for.
std::string_view pathOf(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (startsWithIgnoreCase(target, scheme)) {
      target.remove_prefix(scheme.size());
      const size_t slash = target.find_first_of("/?");
      if (slash == std::string_view::npos || target[slash] == '?') return "/";
      target.remove_prefix(slash);
      break;
    }
  }
  return target.substr(0, target.find('?'));
}

bool parseRequestLine(std::string_view line, Request& request) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!isToken(method)) return false;
  if (target.empty() ||
      !std::all_of(target.begin(), target.end(), [](char c) { return isTargetChar(c); })) {
    return false;
  }
  if (target.front() != '/' && target != "*" && !startsWithIgnoreCase(target, "http://") &&
      !startsWithIgnoreCase(target, "https://")) {
    return false;
  }
  // Only 1.0 and 1.1 can be spoken on this framing; HTTP/2's preface and
  // anything newer must not be mistaken for them.
  if (version == "HTTP/1.1") {
    request.versionMinor = 1;
  } else if (version == "HTTP/1.0") {
    request.versionMinor = 0;
  } else {
    return false;
  }
  request.method = method;
  request.target = target;
  request.path = pathOf(target);
  return true;
}

std::optional<Header> parseHeaderLine(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  // A space before the colon is rejected (RFC 9112 5.1): proxies disagree on
  // what it means, which is what smuggling feeds on. isToken catches it.
  const std::string_view name = line.substr(0, colon);
  if (!isToken(name)) return std::nullopt;
  const std::string_view value = line.substr(colon + 1);
  if (!std::all_of(value.begin(), value.end(), [](char c) { return isFieldValueChar(c); })) {
    return std::nullopt;
  }
  return Header{name, trimOws(value)};
}

// Checks the headers as a whole, the way Go's net/http does, so that a client
// that derper would refuse is refused here too.
bool headersAreConsistent(const Request& request) {
  int hosts = 0;
  std::string_view contentLength;
  for (const Header& h : request.headers) {
    if (equalsIgnoreCase(h.name, "Host")) {
      ++hosts;
    } else if (equalsIgnoreCase(h.name, "Content-Length")) {
      // Two different lengths make the message boundary ambiguous.
      if (!isDigits(h.value)) return false;
      if (!contentLength.empty() && contentLength != h.value) return false;
      contentLength = h.value;
    }
  }
  if (hosts > 1) return false;
  return request.versionMinor == 0 || hosts == 1;
}

}  // namespace

std::string_view Request::header(std::string_view name) const {
  for (const Header& h : headers) {
    if (equalsIgnoreCase(h.name, name)) return h.value;
  }
  return {};
}

bool Request::hasHeader(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(),
                     [name](const Header& h) { return equalsIgnoreCase(h.name, name); });
}

bool Request::keepAlive() const {
  bool sawClose = false;
  bool sawKeepAlive = false;
  // Connection is a comma-separated token list and may be repeated.
  for (const Header& h : headers) {
    if (!equalsIgnoreCase(h.name, "Connection")) continue;
    sawClose = sawClose || listHasToken(h.value, "close");
    sawKeepAlive = sawKeepAlive || listHasToken(h.value, "keep-alive");
  }
  if (sawClose) return false;
  return versionMinor >= 1 || sawKeepAlive;
}

ParseResult parseRequest(std::span<const uint8_t> bytes, size_t maxHead) {
  const std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  // Only the first maxHead bytes can hold a head we accept; looking further
  // would let a peer make every read rescan an ever larger buffer.
  const std::string_view window = all.substr(0, std::min(all.size(), maxHead));
  const ParseStatus incomplete =
      all.size() > maxHead ? ParseStatus::kHeadTooLarge : ParseStatus::kNeedMore;

  ParseResult result{ParseStatus::kNeedMore, {}};
  Request& request = result.request;
  size_t pos = 0;
  bool first = true;
  while (true) {
    const size_t lf = window.find('\n', pos);
    if (lf == std::string_view::npos) {
      if (!isPlausibleLinePrefix(window.substr(pos), first)) {
        result.status = ParseStatus::kBadRequest;
      } else {
        result.status = incomplete;
      }
      result.request = Request{};
      return result;
    }
    std::string_view line = window.substr(pos, lf - pos);
    // Go accepts a bare LF as a line end; so do we.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = lf + 1;

    if (first) {
      first = false;
      if (!parseRequestLine(line, request)) break;
      // Real clients send 3 to 8 headers: one allocation instead of a few regrowths.
      request.headers.reserve(8);
      continue;
    }
    if (line.empty()) {
      if (!headersAreConsistent(request)) break;
      request.headLength = pos;
      result.status = ParseStatus::kComplete;
      return result;
    }
    // obs-fold (a continuation line) is obsolete and a known smuggling vector.
    if (line.front() == ' ' || line.front() == '\t') break;
    std::optional<Header> header = parseHeaderLine(line);
    if (!header) break;
    request.headers.push_back(*header);
  }
  result.status = ParseStatus::kBadRequest;
  result.request = Request{};
  return result;
}

}  // namespace derpd::http
