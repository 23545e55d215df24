#include "http/routes.h"
#include "http/websocket.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <array>
#include <string>
#include <utility>

#include "http/ascii.h"
#include "http/rollout.h"

namespace derpd::http {
namespace {

constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";
constexpr std::string_view kTextHtml = "text/html; charset=utf-8";
constexpr size_t kMaxChallengeLength = 64;

constexpr std::string_view kHomePage =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>DERP relay</title></head><body>\n"
    "<h1>DERP</h1>\n"
    "<p>\n"
    "  This host runs derpd, a relay for the\n"
    "  <a href=\"https://pkg.go.dev/tailscale.com/derp\">DERP</a>\n"
    "  protocol that Tailscale clients fall back to when they cannot reach each\n"
    "  other directly. There is nothing to browse here: clients talk to /derp.\n"
    "</p>\n"
    "</body></html>\n";

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 302:
      return "Found";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return {};
  }
}

void appendStatusLine(std::string& out, int status) {
  const std::string_view reason = reasonPhrase(status);
  // Go's wording for codes it has no text for, so clients see what derper sends.
  const std::string code = std::to_string(status);
  out.append("HTTP/1.1 ").append(code).append(" ");
  if (reason.empty()) {
    out.append("status code ").append(code);
  } else {
    out.append(reason);
  }
  out.append("\r\n");
}

// Whether a comma-separated header (Connection, Sec-WebSocket-Protocol) lists
// token, in any of its occurrences.
bool hasListToken(const Request& request, std::string_view name, std::string_view token) {
  for (const Header& h : request.headers) {
    if (equalsIgnoreCase(h.name, name) && listHasToken(h.value, token)) return true;
  }
  return false;
}

// We never read request bodies, so after one the connection cannot be reused:
// the body would be parsed as the next request.
bool hasBody(const Request& request) {
  if (request.hasHeader("Transfer-Encoding")) return true;
  const std::string_view length = request.header("Content-Length");
  return !length.empty() && length.find_first_not_of('0') != std::string_view::npos;
}

bool isChallengeChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

bool isValidChallenge(std::string_view challenge) {
  return !challenge.empty() && challenge.size() <= kMaxChallengeLength &&
         std::all_of(challenge.begin(), challenge.end(), isChallengeChar);
}

// Builds a response the way Go's net/http lays one out, so that ours match
// derper's byte for byte: the handler's headers sorted by name, then (Date,
// which we leave out,) Content-Length, a sniffed Content-Type, Connection.
class ResponseBuilder {
 public:
  ResponseBuilder(const Request& request, const RouteContext& ctx, int status)
      : request_(request), status_(status), date_(ctx.date) {
    if (ctx.tls) {
      // derper sets these over TLS on everything but the hijacked 101, to
      // satisfy security scanners; browsers are the only ones who read them.
      add("Content-Security-Policy",
          "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'self'; "
          "block-all-mixed-content; plugin-types 'none'");
      add("Strict-Transport-Security", "max-age=63072000; includeSubDomains");
    }
  }

  void add(std::string_view name, std::string_view value) { headers_[count_++] = {name, value}; }

  // The handler says Connection: close itself (sorted with its headers, as
  // Go writes it), whatever the request asked for.
  void closeConnection() {
    add("Connection", "close");
    forceClose_ = true;
  }

  // Content-Type as Go sniffs it from the body rather than as a handler sets it:
  // it goes after Content-Length, not among the sorted headers.
  void setSniffedContentType(std::string_view type) { sniffedContentType_ = type; }

  RouteResult finish(std::string_view body) {
    RouteResult result;
    result.status = status_;
    result.keepAlive = request_.keepAlive() && !hasBody(request_) && !forceClose_;
    std::sort(headers_.begin(), headers_.begin() + count_);

    std::string& out = result.response;
    appendStatusLine(out, status_);
    for (size_t i = 0; i < count_; ++i) {
      out.append(headers_[i].first).append(": ").append(headers_[i].second).append("\r\n");
    }
    // Go writes Date after the handler's headers, then Content-Length.
    if (!date_.empty()) out.append("Date: ").append(date_).append("\r\n");
    // A 204 must not carry Content-Length (RFC 9110 8.6); Go leaves it out too.
    if (status_ != 204) {
      out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    }
    if (!sniffedContentType_.empty()) {
      out.append("Content-Type: ").append(sniffedContentType_).append("\r\n");
    }
    if (forceClose_) {
      // Already among the sorted headers.
    } else if (!result.keepAlive) {
      out += "Connection: close\r\n";
    } else if (request_.versionMinor == 0) {
      // HTTP/1.0 closes by default; say that we did not.
      out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    // HEAD gets GET's headers, Content-Length included, and no body.
    if (request_.method != "HEAD") out += body;
    return result;
  }

 private:
  const Request& request_;
  int status_;
  std::array<std::pair<std::string_view, std::string_view>, 8> headers_;
  size_t count_ = 0;
  std::string_view sniffedContentType_;
  std::string_view date_;
  bool forceClose_ = false;
};

// http.Error's shape: a plain-text body ending in a newline, never sniffed.
RouteResult textError(const Request& request, const RouteContext& ctx, int status,
                      std::string_view message) {
  ResponseBuilder builder(request, ctx, status);
  builder.add("Content-Type", kTextPlain);
  builder.add("X-Content-Type-Options", "nosniff");
  if (status == 405) builder.add("Allow", "GET, HEAD");
  std::string body(message);
  body += '\n';
  return builder.finish(body);
}

bool isGetOrHead(const Request& request) {
  return request.method == "GET" || request.method == "HEAD";
}

// RFC 6455 4.2: the opening handshake's checks, then the 101 with the
// accept key and the derp subprotocol (derper's answer, compression off).
RouteResult routeWebSocket(const Request& request, const RouteContext& ctx) {
  if (request.header("Sec-WebSocket-Version") != "13") {
    ResponseBuilder builder(request, ctx, 400);
    builder.add("Content-Type", kTextPlain);
    builder.add("Sec-WebSocket-Version", "13");
    builder.add("X-Content-Type-Options", "nosniff");
    return builder.finish("unsupported WebSocket protocol version (only 13 is supported)\n");
  }
  const std::string_view key = request.header("Sec-WebSocket-Key");
  if (!ws::validClientKey(absl::string_view(key.data(), key.size()))) {
    return textError(request, ctx, 400, "invalid Sec-WebSocket-Key");
  }
  RouteResult result;
  result.status = 101;
  result.action = RouteAction::kUpgradeWebSocket;
  result.idealNodeMismatch = !request.header("Ideal-Node").empty();
  result.response
      .append(
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: ")
      .append(ws::acceptKey(absl::string_view(key.data(), key.size())))
      .append("\r\nSec-WebSocket-Protocol: derp\r\n\r\n");
  return result;
}

RouteResult routeDerp(const Request& request, const RouteContext& ctx) {
  // derper's words when it runs STUN only.
  if (!ctx.derp) return textError(request, ctx, 404, "derp server disabled");
  const std::string_view upgrade = request.header("Upgrade");
  const bool isWebSocket = equalsIgnoreCase(upgrade, "websocket");
  const bool upgrades = request.method == "GET" && hasListToken(request, "Connection", "upgrade") &&
                        (isWebSocket || equalsIgnoreCase(upgrade, "derp"));
  if (!upgrades) return textError(request, ctx, 426, "DERP requires connection upgrade");
  // Browsers ask for DERP inside real RFC 6455 WebSocket frames; old native
  // clients also say "websocket" but speak raw DERP, and never send this.
  if (isWebSocket && hasListToken(request, "Sec-WebSocket-Protocol", "derp")) {
    return routeWebSocket(request, ctx);
  }

  RouteResult result;
  result.status = 101;
  // Go's Header.Get cannot tell an empty header from a missing one; neither can we.
  result.idealNodeMismatch = !request.header("Ideal-Node").empty();
  if (request.header("Derp-Fast-Start") == "1") {
    // The client is not waiting for a 101 and already sent DERP bytes after it.
    result.action = RouteAction::kUpgradeDerpFast;
    return result;
  }
  result.action = RouteAction::kUpgradeDerp;
  result.response
      .append(
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: DERP\r\n"
          "Connection: Upgrade\r\n"
          "Derp-Version: 2\r\n"
          "Derp-Public-Key: ")
      .append(ctx.serverPublicKeyHex)
      .append("\r\n\r\n");
  return result;
}

RouteResult routeProbe(const Request& request, const RouteContext& ctx) {
  // derper's own wording for this 405.
  if (!isGetOrHead(request)) return textError(request, ctx, 405, "bogus probe method");
  ResponseBuilder builder(request, ctx, 200);
  builder.add("Access-Control-Allow-Origin", "*");
  return builder.finish({});
}

RouteResult routeGenerate204(const Request& request, const RouteContext& ctx) {
  if (!isGetOrHead(request)) return textError(request, ctx, 405, "method not allowed");
  ResponseBuilder builder(request, ctx, 204);
  // Captive-portal checks go through caching proxies; a cached 204 would hide
  // the portal.
  builder.add("Cache-Control", "no-cache, no-store, must-revalidate, no-transform, max-age=0");
  // Echoing only a short, plain challenge keeps this from reflecting arbitrary
  // bytes into a response header.
  const std::string_view challenge = request.header("X-Tailscale-Challenge");
  std::string answer;
  if (isValidChallenge(challenge)) {
    answer.append("response ").append(challenge);
    builder.add("X-Tailscale-Response", answer);
  }
  return builder.finish({});
}

RouteResult routeRobots(const Request& request, const RouteContext& ctx) {
  if (!isGetOrHead(request)) return textError(request, ctx, 405, "method not allowed");
  ResponseBuilder builder(request, ctx, 200);
  builder.setSniffedContentType(kTextPlain);
  return builder.finish("User-agent: *\nDisallow: /\n");
}

// Go's http.Redirect with 302: Location, and for GET and HEAD a short HTML
// body linking to it (quotes and angle brackets escaped).
RouteResult redirect(const Request& request, const RouteContext& ctx, std::string_view location) {
  ResponseBuilder builder(request, ctx, 302);
  builder.add("Location", location);
  if (!isGetOrHead(request)) return builder.finish({});
  builder.add("Content-Type", kTextHtml);
  std::string body = "<a href=\"";
  for (char ch : location) {
    switch (ch) {
      case '"': body += "&#34;"; break;
      case '&': body += "&amp;"; break;
      case '<': body += "&lt;"; break;
      case '>': body += "&gt;"; break;
      case '\'': body += "&#39;"; break;
      default: body += ch;
    }
  }
  body += "\">Found</a>.\n\n";
  return builder.finish(body);
}

RouteResult routeHome(const Request& request, const RouteContext& ctx) {
  if (!isGetOrHead(request)) return textError(request, ctx, 405, "method not allowed");
  if (!ctx.home.empty() && ctx.home != "blank") return redirect(request, ctx, ctx.home);
  ResponseBuilder builder(request, ctx, 200);
  builder.add("Content-Type", kTextHtml);
  return builder.finish(ctx.home.empty() ? kHomePage : std::string_view());
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The first value of query parameter `key` in target, URL-decoded ('+' is a
// space, %XX a byte), as Go's URL.Query().Get does; empty when absent.
std::string queryValue(std::string_view target, std::string_view key) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    if (eq == std::string_view::npos) return {};
    std::string_view raw = pair.substr(eq + 1);
    std::string value;
    for (size_t i = 0; i < raw.size(); i++) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() && hexValue(raw[i + 1]) >= 0 &&
                 hexValue(raw[i + 2]) >= 0) {
        value += static_cast<char>(hexValue(raw[i + 1]) * 16 + hexValue(raw[i + 2]));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return {};
}

// derper's /bootstrap-dns: every published name, unless ?q= names an
// unpublished one whose rollout includes this client, which is then answered
// alone. Always closes: clients ask
// once, from anywhere, so a kept-alive connection would only cost memory.
RouteResult routeBootstrapDns(const Request& request, const RouteContext& ctx) {
  ResponseBuilder builder(request, ctx, 200);
  builder.add("Content-Type", "application/json");
  builder.closeConnection();
  const BootstrapDnsSnapshot* dns = ctx.bootstrapDns;
  if (dns == nullptr) return builder.finish({});
  const std::string q = queryValue(request.target, "q");
  DnsQuery outcome = DnsQuery::kNone;
  if (!q.empty()) {
    outcome = dns->publishedNames.contains(q) ? DnsQuery::kPublished : DnsQuery::kUnknown;
    if (auto it = dns->unpublished.find(q); it != dns->unpublished.end()) {
      if (rolloutIncludes(ctx.peerIp, it->second.share)) {
        RouteResult r = builder.finish(it->second.json);
        r.dnsQuery = DnsQuery::kUnpublished;
        return r;
      }
      outcome = DnsQuery::kRolloutExcluded;
    }
  }
  RouteResult r = builder.finish(dns->publishedJson);
  r.dnsQuery = outcome;
  return r;
}

}  // namespace

RouteResult route(const Request& request, const RouteContext& ctx) {
  const std::string_view path = request.path;
  if (path == "/derp") return routeDerp(request, ctx);
  if (path == "/derp/probe" || path == "/derp/latency-check") return routeProbe(request, ctx);
  if (path == "/generate_204") return routeGenerate204(request, ctx);
  if (path == "/robots.txt") return routeRobots(request, ctx);
  if (path == "/bootstrap-dns") return routeBootstrapDns(request, ctx);
  if (path == "/") return routeHome(request, ctx);
  // Go's http.NotFound text.
  return textError(request, ctx, 404, "404 page not found");
}

RouteResult routePort80(const Request& request, const RouteContext& ctx) {
  const std::string_view path = request.path;
  if (path == "/generate_204") return routeGenerate204(request, ctx);
  constexpr std::string_view kChallenges = "/.well-known/acme-challenge/";
  if (path.substr(0, kChallenges.size()) == kChallenges) {
    // The key authorization of a pending HTTP-01 challenge, as the CA wants
    // it (RFC 8555 section 8.3); anything else there is not found.
    if (ctx.acmeChallenges != nullptr && isGetOrHead(request)) {
      const auto& tokens = ctx.acmeChallenges->http01;
      if (auto it = tokens.find(path.substr(kChallenges.size())); it != tokens.end()) {
        return respond(request, ctx, 200, kTextPlain, it->second);
      }
    }
    return textError(request, ctx, 404, "404 page not found");
  }
  if (!isGetOrHead(request)) return textError(request, ctx, 400, "Use HTTPS");
  // The Host header without its port (which is this port), then the TLS port
  // unless it is the default. The parser has refused control characters.
  std::string_view host = request.header("Host");
  if (host.empty()) return textError(request, ctx, 400, "missing Host header");
  const size_t bracket = host.rfind(']');
  const size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = host.substr(0, colon);
  }
  std::string location = "https://";
  location.append(host);
  if (ctx.httpsPort != 443) location.append(":").append(std::to_string(ctx.httpsPort));
  location.append(request.target.empty() ? "/" : request.target);
  return redirect(request, ctx, location);
}

RouteResult respond(const Request& request, const RouteContext& ctx, int status,
                    std::string_view contentType, std::string_view body) {
  ResponseBuilder builder(request, ctx, status);
  builder.add("Content-Type", contentType);
  return builder.finish(body);
}

std::string httpDate(int64_t unixSeconds) {
  const time_t t = static_cast<time_t>(unixSeconds);
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[40];
  // The C locale's names, which IMF-fixdate requires, whatever LC_TIME says.
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[parts.tm_wday],
                parts.tm_mday, kMonths[parts.tm_mon], parts.tm_year + 1900, parts.tm_hour,
                parts.tm_min, parts.tm_sec);
  return buf;
}

RouteResult debugForbidden(const Request& request, const RouteContext& ctx) {
  return textError(request, ctx, 403, "debug access denied");
}

std::string errorResponse(int status, std::string_view body) {
  std::string out;
  appendStatusLine(out, status);
  out.append("Content-Type: ").append(kTextPlain);
  out.append("\r\nContent-Length: ").append(std::to_string(body.size()));
  out.append("\r\nConnection: close\r\n\r\n").append(body);
  return out;
}

}  // namespace derpd::http
