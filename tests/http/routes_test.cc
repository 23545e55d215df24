#include "http/routes.h"
#include "http/rollout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "http_vectors.h"

namespace derpd::http {
namespace {

using testing::asBytes;
using ::testing::HasSubstr;
using testing::httpVector;
using ::testing::Not;
using ::testing::StartsWith;
using testing::vectorBytes;
using testing::withoutHeader;

// The fixed server key of tests/vectors.
constexpr std::string_view kServerKeyHex =
    "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
constexpr std::string_view kCacheControlLine =
    "Cache-Control: no-cache, no-store, must-revalidate, no-transform, max-age=0\r\n";
constexpr std::string_view kCspLine =
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; form-action 'none'; "
    "base-uri 'self'; block-all-mixed-content; plugin-types 'none'\r\n";
constexpr std::string_view kHstsLine =
    "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n";

const RouteContext kPlain{kServerKeyHex, false};
const RouteContext kTls{kServerKeyHex, true};

// Parses wire (which must be a complete request) and routes it.
RouteResult routeWire(std::string_view wire, const RouteContext& ctx = kPlain) {
  const ParseResult parsed = parseRequest(asBytes(wire));
  EXPECT_EQ(parsed.status, ParseStatus::kComplete) << wire;
  return route(parsed.request, ctx);
}

std::string request(std::string_view method, std::string_view target,
                    std::string_view extraHeaders = "") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n" +
         std::string(extraHeaders) + "\r\n";
}

// The request captured with a vector. The _tls vectors carry none: theirs was
// the plain one's.
std::string vectorRequest(std::string name) {
  if (name.ends_with("_tls")) name.resize(name.size() - 4);
  const nlohmann::json v = httpVector(name);
  return v.is_null() ? std::string() : v["request"].get<std::string>();
}

// The value of a response's Date header ("" if none).
std::string dateOf(const std::string& response) {
  const size_t at = response.find("\r\nDate: ");
  if (at == std::string::npos) return "";
  const size_t from = at + 8;
  return response.substr(from, response.find("\r\n", from) - from);
}

// Routes the request captured with a vector, at the time derper answered it,
// and checks the response against the bytes derper sent, Date included.
void expectMatchesVector(std::string_view name, RouteContext ctx,
                         std::string_view alsoIgnore = "") {
  SCOPED_TRACE(name);
  const std::string wire = vectorRequest(std::string(name));
  ASSERT_FALSE(wire.empty());
  std::string want = vectorBytes(name);
  const std::string date = dateOf(want);
  EXPECT_FALSE(date.empty()) << "derper sent no Date";
  ctx.date = date;
  const RouteResult r = routeWire(wire, ctx);
  EXPECT_EQ(r.action, RouteAction::kRespond);
  std::string ours = r.response;
  if (!alsoIgnore.empty()) {
    ours = withoutHeader(ours, alsoIgnore);
    want = withoutHeader(want, alsoIgnore);
  }
  EXPECT_EQ(ours, want);
}

TEST(RoutesTest, HttpDateIsImfFixdate) {
  EXPECT_EQ(httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(httpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");  // RFC 9110's example
  EXPECT_EQ(httpDate(1796688176), "Tue, 08 Dec 2026 00:02:56 GMT");
}

TEST(RoutesTest, UpgradeAnswersWithDerpersExact101) {
  const RouteResult r = routeWire(vectorBytes("client_upgrade_request"));
  EXPECT_EQ(r.action, RouteAction::kUpgradeDerp);
  EXPECT_EQ(r.status, 101);
  EXPECT_EQ(r.response, vectorBytes("server_101_response"));
  EXPECT_FALSE(r.idealNodeMismatch);
}

TEST(RoutesTest, UpgradeOverTlsHasNoExtraHeaders) {
  const RouteResult r = routeWire(vectorBytes("client_upgrade_request"), kTls);
  EXPECT_EQ(r.action, RouteAction::kUpgradeDerp);
  EXPECT_EQ(r.response, vectorBytes("server_101_response_tls"));
}

TEST(RoutesTest, FastStartSendsNothing) {
  const RouteResult r = routeWire(vectorBytes("client_upgrade_request_fast_start"), kTls);
  EXPECT_EQ(r.action, RouteAction::kUpgradeDerpFast);
  EXPECT_EQ(r.response, "");
}

TEST(RoutesTest, FastStartNeedsExactlyOne) {
  for (std::string_view value : {"0", "true", "", "11"}) {
    SCOPED_TRACE(value);
    const RouteResult r = routeWire(request(
        "GET", "/derp",
        "Connection: Upgrade\r\nUpgrade: DERP\r\nDerp-Fast-Start: " + std::string(value) + "\r\n"));
    EXPECT_EQ(r.action, RouteAction::kUpgradeDerp);
  }
}

TEST(RoutesTest, UpgradeAcceptsItsSpellings) {
  for (std::string_view headers : {
           "Connection: Upgrade\r\nUpgrade: DERP\r\n",
           "Connection: upgrade\r\nUpgrade: derp\r\n",
           "Connection: keep-alive, Upgrade\r\nUpgrade: DeRp\r\n",
           "Connection: keep-alive\r\nConnection: UPGRADE\r\nUpgrade: DERP\r\n",
           "Connection: Upgrade\r\nUpgrade: WebSocket\r\n",
           "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n",
       }) {
    SCOPED_TRACE(headers);
    const RouteResult r = routeWire(request("GET", "/derp", headers));
    EXPECT_EQ(r.action, RouteAction::kUpgradeDerp);
    EXPECT_EQ(r.response, vectorBytes("server_101_response"));
  }
  // The query does not matter; the path does.
  EXPECT_EQ(
      routeWire(request("GET", "/derp?x=1", "Connection: Upgrade\r\nUpgrade: DERP\r\n")).action,
      RouteAction::kUpgradeDerp);
}

TEST(RoutesTest, WebSocketDerpGetsTheRfc6455Handshake) {
  const std::string ws =
      "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: derp\r\n";
  const RouteResult r = routeWire(
      request("GET", "/derp",
              ws + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"));
  EXPECT_EQ(r.action, RouteAction::kUpgradeWebSocket);
  EXPECT_EQ(r.status, 101);
  EXPECT_EQ(r.response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: derp\r\n\r\n");
  // Browsers list the subprotocol among others.
  EXPECT_EQ(routeWire(request("GET", "/derp",
                              "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                              "Sec-WebSocket-Protocol: chat, derp\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"))
                .action,
            RouteAction::kUpgradeWebSocket);
  // Another version: 400 naming the one we speak; no key or a bad one: 400.
  const RouteResult v8 = routeWire(
      request("GET", "/derp",
              ws + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"));
  EXPECT_EQ(v8.status, 400);
  EXPECT_THAT(v8.response, HasSubstr("Sec-WebSocket-Version: 13\r\n"));
  for (const char* key : {"", "Sec-WebSocket-Key: short\r\n"}) {
    const RouteResult bad =
        routeWire(request("GET", "/derp", ws + key + "Sec-WebSocket-Version: 13\r\n"));
    EXPECT_EQ(bad.status, 400) << key;
    EXPECT_EQ(bad.action, RouteAction::kRespond);
  }
}

TEST(RoutesTest, IdealNodeHeaderMarksMismatch) {
  RouteResult r = routeWire(
      request("GET", "/derp", "Connection: Upgrade\r\nUpgrade: DERP\r\nIdeal-Node: derp2b\r\n"));
  EXPECT_EQ(r.action, RouteAction::kUpgradeDerp);
  EXPECT_TRUE(r.idealNodeMismatch);
  r = routeWire(request("GET", "/derp",
                        "Connection: Upgrade\r\nUpgrade: DERP\r\nDerp-Fast-Start: 1\r\n"
                        "ideal-node: derp2b\r\n"));
  EXPECT_EQ(r.action, RouteAction::kUpgradeDerpFast);
  EXPECT_TRUE(r.idealNodeMismatch);
}

TEST(RoutesTest, DerpWithoutUpgradeMatchesDerpers426) {
  expectMatchesVector("derp_without_upgrade_426", kPlain);
}

TEST(RoutesTest, DerpRefusesAnythingButAnUpgradingGet) {
  for (const std::string& wire : {
           request("GET", "/derp"),
           request("GET", "/derp", "Upgrade: DERP\r\n"),
           request("GET", "/derp", "Connection: Upgrade\r\n"),
           request("GET", "/derp", "Connection: Upgraded\r\nUpgrade: DERP\r\n"),
           request("GET", "/derp", "Connection: Upgrade\r\nUpgrade: h2c\r\n"),
           request("GET", "/derp", "Connection: Upgrade\r\nUpgrade: derp, websocket\r\n"),
           request("POST", "/derp", "Connection: Upgrade\r\nUpgrade: DERP\r\n"),
           request("HEAD", "/derp", "Connection: Upgrade\r\nUpgrade: DERP\r\n"),
           request("get", "/derp", "Connection: Upgrade\r\nUpgrade: DERP\r\n"),
       }) {
    SCOPED_TRACE(wire);
    const RouteResult r = routeWire(wire);
    EXPECT_EQ(r.action, RouteAction::kRespond);
    EXPECT_EQ(r.status, 426);
    EXPECT_THAT(r.response, StartsWith("HTTP/1.1 426 Upgrade Required\r\n"));
    if (!wire.starts_with("HEAD")) {
      EXPECT_THAT(r.response, HasSubstr("\r\n\r\nDERP requires connection upgrade\n"));
    }
  }
}

TEST(RoutesTest, ProbeMatchesDerpers) { expectMatchesVector("derp_probe", kPlain); }

TEST(RoutesTest, LatencyCheckAnswersLikeProbe) {
  const RouteResult probe = routeWire(request("GET", "/derp/probe"));
  const RouteResult check = routeWire(request("GET", "/derp/latency-check"));
  EXPECT_EQ(check.status, 200);
  EXPECT_EQ(check.response, probe.response);
  EXPECT_EQ(check.response,
            "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(check.keepAlive);
}

TEST(RoutesTest, HeadGetsGetsHeadersWithoutBody) {
  for (std::string_view path :
       {"/derp/probe", "/derp/latency-check", "/robots.txt", "/", "/generate_204", "/nope"}) {
    SCOPED_TRACE(path);
    const RouteResult get = routeWire(request("GET", path));
    const RouteResult head = routeWire(request("HEAD", path));
    EXPECT_EQ(head.status, get.status);
    const size_t headEnd = get.response.find("\r\n\r\n") + 4;
    EXPECT_EQ(head.response, get.response.substr(0, headEnd));
  }
}

TEST(RoutesTest, Generate204WithoutChallenge) {
  // derper v1.36.2 sent no Cache-Control; PROTOCOL.md asks for it, as newer derpers send.
  expectMatchesVector("generate_204_no_challenge", kPlain, "Cache-Control");
  const RouteResult r = routeWire(vectorRequest("generate_204_no_challenge"));
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.response, std::string("HTTP/1.1 204 No Content\r\n") +
                            std::string(kCacheControlLine) + "Connection: close\r\n\r\n");
}

TEST(RoutesTest, Generate204WithChallenge) {
  expectMatchesVector("generate_204_with_challenge", kPlain, "Cache-Control");
  const RouteResult r = routeWire(vectorRequest("generate_204_with_challenge"));
  EXPECT_EQ(r.response, std::string("HTTP/1.1 204 No Content\r\n") +
                            std::string(kCacheControlLine) +
                            "X-Tailscale-Response: response abc123\r\nConnection: close\r\n\r\n");
}

TEST(RoutesTest, Generate204OverTls) {
  expectMatchesVector("generate_204_with_challenge_tls", kTls, "Cache-Control");
  const RouteResult r = routeWire(vectorRequest("generate_204_with_challenge_tls"), kTls);
  // Go sorts the handler's headers by name.
  EXPECT_EQ(r.response, std::string("HTTP/1.1 204 No Content\r\n") +
                            std::string(kCacheControlLine) + std::string(kCspLine) +
                            std::string(kHstsLine) +
                            "X-Tailscale-Response: response abc123\r\nConnection: close\r\n\r\n");
}

TEST(RoutesTest, ChallengeIsEchoedOnlyWhenShortAndPlain) {
  const std::string k64(64, 'x');
  struct Case {
    std::string challenge;
    bool echoed;
  };
  for (const Case& c : {
           Case{"abc123", true},
           Case{k64, true},
           Case{k64 + "x", false},
           Case{"ABCxyz019._:-", true},
           Case{"a b", false},
           Case{"a/b", false},
           Case{"a+b", false},
           Case{"a=b", false},
           Case{"a,b", false},
           Case{"a\"b", false},
           Case{"caf\xc3\xa9", false},
           Case{"<script>", false},
           Case{"", false},
       }) {
    SCOPED_TRACE(c.challenge);
    const RouteResult r = routeWire(
        request("GET", "/generate_204", "X-Tailscale-Challenge: " + c.challenge + "\r\n"));
    EXPECT_EQ(r.status, 204);
    if (c.echoed) {
      EXPECT_THAT(r.response,
                  HasSubstr("\r\nX-Tailscale-Response: response " + c.challenge + "\r\n"));
    } else {
      EXPECT_THAT(r.response, Not(HasSubstr("X-Tailscale-Response")));
    }
    EXPECT_THAT(r.response, Not(HasSubstr("Content-Length")));
    EXPECT_TRUE(r.keepAlive);
  }
}

TEST(RoutesTest, RobotsMatchesDerpers) { expectMatchesVector("robots_txt", kPlain); }

TEST(RoutesTest, HomePageIsHtml) {
  const RouteResult r = routeWire(request("GET", "/"));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.response, StartsWith("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                                     "Content-Length: "));
  EXPECT_THAT(r.response, HasSubstr("derpd"));
  EXPECT_THAT(r.response, HasSubstr("DERP"));
  const size_t bodyStart = r.response.find("\r\n\r\n") + 4;
  const std::string body = r.response.substr(bodyStart);
  EXPECT_THAT(r.response, HasSubstr("Content-Length: " + std::to_string(body.size()) + "\r\n"));
  EXPECT_THAT(body, StartsWith("<!DOCTYPE html>"));
}

TEST(RoutesTest, HomeBlankIsAnEmptyHtmlPage) {
  RouteContext ctx = kPlain;
  ctx.home = "blank";
  const RouteResult r = routeWire(request("GET", "/"), ctx);
  EXPECT_EQ(r.response,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Length: 0\r\n\r\n");
  EXPECT_TRUE(r.keepAlive);
}

TEST(RoutesTest, HomeUrlRedirects) {
  RouteContext ctx = kPlain;
  ctx.home = "https://example.com/a?b=<c>";
  RouteResult r = routeWire(request("GET", "/"), ctx);
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.response,
            "HTTP/1.1 302 Found\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Location: https://example.com/a?b=<c>\r\nContent-Length: 56\r\n\r\n"
            "<a href=\"https://example.com/a?b=&lt;c&gt;\">Found</a>.\n\n");
  r = routeWire(request("HEAD", "/"), ctx);
  EXPECT_EQ(r.status, 302);
  EXPECT_THAT(r.response, Not(HasSubstr("Found</a>")));
  // Only / itself: other paths are still 404.
  EXPECT_EQ(routeWire(request("GET", "/x"), ctx).status, 404);
}

TEST(RoutesTest, BootstrapDnsJsonIsDerpersShape) {
  EXPECT_EQ(bootstrapDnsJson({}), "{}");
  EXPECT_EQ(bootstrapDnsJson({{"b.example", {"10.0.0.2", "2001:db8::2"}},
                              {"a.example", {"10.0.0.1"}},
                              {"c\"<", {}}}),
            "{\n\t\"a.example\": [\n\t\t\"10.0.0.1\"\n\t],"
            "\n\t\"b.example\": [\n\t\t\"10.0.0.2\",\n\t\t\"2001:db8::2\"\n\t],"
            "\n\t\"c\\\"\\u003c\": []\n}");
}

TEST(RoutesTest, BootstrapDnsServesPublishedNamesAndUnpublishedOnlyWhenAsked) {
  const BootstrapDnsSnapshot dns = BootstrapDnsSnapshot::build(
      {{"pub.example", {"192.0.2.1"}}},
      {{{"hidden.example", {"192.0.2.9"}}, 1.0}, {{"gone.example", {}}, 1.0}});
  RouteContext ctx = kPlain;
  ctx.bootstrapDns = &dns;
  const std::string published = "{\n\t\"pub.example\": [\n\t\t\"192.0.2.1\"\n\t]\n}";
  RouteResult r = routeWire(request("GET", "/bootstrap-dns"), ctx);
  EXPECT_EQ(r.response, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
                        "Content-Length: " + std::to_string(published.size()) + "\r\n\r\n" +
                        published);
  EXPECT_FALSE(r.keepAlive);
  // ?q= naming an unpublished name answers it alone; anything else gets the
  // published set, never the hidden names.
  r = routeWire(request("GET", "/bootstrap-dns?x=1&q=hidden%2Eexample"), ctx);
  EXPECT_THAT(r.response, HasSubstr("\r\n\r\n{\n\t\"hidden.example\": [\n\t\t\"192.0.2.9\"\n\t]\n}"));
  EXPECT_THAT(r.response, Not(HasSubstr("pub.example")));
  for (std::string_view target : {"/bootstrap-dns?q=pub.example", "/bootstrap-dns?q=gone.example",
                                  "/bootstrap-dns?q=", "/bootstrap-dns?qq=hidden.example"}) {
    SCOPED_TRACE(target);
    r = routeWire(request("GET", target), ctx);
    EXPECT_THAT(r.response, HasSubstr("\r\n\r\n" + published));
    EXPECT_THAT(r.response, Not(HasSubstr("hidden")));
  }
  r = routeWire(request("GET", "/bootstrap-dns?q=hidden.example"), ctx);
  EXPECT_EQ(r.dnsQuery, DnsQuery::kUnpublished);
  EXPECT_EQ(routeWire(request("GET", "/bootstrap-dns?q=pub.example"), ctx).dnsQuery,
            DnsQuery::kPublished);
  EXPECT_EQ(routeWire(request("GET", "/bootstrap-dns?q=gone.example"), ctx).dnsQuery,
            DnsQuery::kUnknown);
  EXPECT_EQ(routeWire(request("GET", "/bootstrap-dns"), ctx).dnsQuery, DnsQuery::kNone);
  // Before the first resolution: 200 with an empty body, as derper.
  r = routeWire(request("GET", "/bootstrap-dns"), kPlain);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.response, HasSubstr("Content-Length: 0\r\n"));
}

// name/txtname rollouts: the share decides per client address (rollout_test
// checks the decision against Go's generator); a client left out gets the
// published set, as if it had not asked.
TEST(RoutesTest, BootstrapDnsRolloutAnswersOnlyTheClientsItIncludes) {
  const BootstrapDnsSnapshot dns = BootstrapDnsSnapshot::build(
      {{"pub.example", {"192.0.2.1"}}}, {{{"none.example", {"192.0.2.7"}}, 0.0},
                                         {{"half.example", {"192.0.2.8"}}, 0.5},
                                         {{"all.example", {"192.0.2.9"}}, 1.0}});
  RouteContext ctx = kPlain;
  ctx.bootstrapDns = &dns;
  int included = 0;
  for (uint8_t last = 1; last <= 40; last++) {
    ctx.peerIp = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, last};
    SCOPED_TRACE(last);
    RouteResult r = routeWire(request("GET", "/bootstrap-dns?q=none.example"), ctx);
    EXPECT_EQ(r.dnsQuery, DnsQuery::kRolloutExcluded);
    EXPECT_THAT(r.response, HasSubstr("pub.example"));
    EXPECT_THAT(r.response, Not(HasSubstr("192.0.2.7")));
    r = routeWire(request("GET", "/bootstrap-dns?q=all.example"), ctx);
    EXPECT_EQ(r.dnsQuery, DnsQuery::kUnpublished);
    EXPECT_THAT(r.response, HasSubstr("192.0.2.9"));
    r = routeWire(request("GET", "/bootstrap-dns?q=half.example"), ctx);
    const bool want = rolloutIncludes(ctx.peerIp, 0.5);
    EXPECT_EQ(r.dnsQuery, want ? DnsQuery::kUnpublished : DnsQuery::kRolloutExcluded);
    EXPECT_EQ(r.response.find("192.0.2.8") != std::string::npos, want);
    included += want ? 1 : 0;
  }
  // Both outcomes occur among 40 addresses at 50%.
  EXPECT_GT(included, 0);
  EXPECT_LT(included, 40);
}

TEST(RoutesTest, DebugForbiddenAndRespond) {
  const ParseResult parsed = parseRequest(asBytes(request("GET", "/debug/")));
  RouteResult r = debugForbidden(parsed.request, kPlain);
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.response, StartsWith("HTTP/1.1 403 Forbidden\r\n"));
  EXPECT_THAT(r.response, HasSubstr("\r\n\r\ndebug access denied\n"));
  r = respond(parsed.request, kPlain, 200, "text/plain", "x 1\n");
  EXPECT_EQ(r.response, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nx 1\n");
  EXPECT_TRUE(r.keepAlive);
}

TEST(RoutesTest, TlsAddsSecurityHeadersToEveryResponse) {
  for (std::string_view wire : {std::string_view("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                                std::string_view("GET /derp/probe HTTP/1.1\r\nHost: h\r\n\r\n"),
                                std::string_view("GET /nope HTTP/1.1\r\nHost: h\r\n\r\n"),
                                std::string_view("GET /derp HTTP/1.1\r\nHost: h\r\n\r\n"),
                                std::string_view("POST /robots.txt HTTP/1.1\r\nHost: h\r\n\r\n")}) {
    SCOPED_TRACE(wire);
    const RouteResult plain = routeWire(wire);
    const RouteResult tls = routeWire(wire, kTls);
    EXPECT_THAT(tls.response, HasSubstr(std::string("\r\n") + std::string(kCspLine)));
    EXPECT_THAT(tls.response, HasSubstr(std::string("\r\n") + std::string(kHstsLine)));
    EXPECT_EQ(withoutHeader(withoutHeader(tls.response, "Content-Security-Policy"),
                            "Strict-Transport-Security"),
              plain.response);
    EXPECT_THAT(plain.response, Not(HasSubstr("Strict-Transport-Security")));
  }
}

TEST(RoutesTest, UnknownPathsAre404) {
  for (std::string_view path : {"/nope", "/derp/", "/derpx", "/derp/probe/", "/generate_204/x",
                                "/ROBOTS.TXT", "//", "*", "/debug/", "/bootstrap-dns/"}) {
    SCOPED_TRACE(path);
    const RouteResult r = routeWire(request("GET", path));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.response,
              "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "X-Content-Type-Options: nosniff\r\nContent-Length: 19\r\n\r\n"
              "404 page not found\n");
    EXPECT_TRUE(r.keepAlive);
  }
}

TEST(RoutesTest, OtherMethodsAre405) {
  for (std::string_view method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "X"}) {
    for (std::string_view path :
         {"/derp/probe", "/derp/latency-check", "/generate_204", "/robots.txt", "/"}) {
      SCOPED_TRACE(std::string(method) + " " + std::string(path));
      const RouteResult r = routeWire(request(method, path));
      EXPECT_EQ(r.action, RouteAction::kRespond);
      EXPECT_EQ(r.status, 405);
      EXPECT_THAT(r.response, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"
                                         "Allow: GET, HEAD\r\n"
                                         "Content-Type: text/plain; charset=utf-8\r\n"));
    }
  }
  EXPECT_THAT(routeWire(request("POST", "/derp/probe")).response,
              HasSubstr("\r\n\r\nbogus probe method\n"));
}

TEST(RoutesTest, KeepAliveFollowsTheRequest) {
  struct Case {
    std::string_view wire;
    bool keepAlive;
    std::string_view connectionLine;  // empty: none
  };
  for (const Case& c : {
           Case{"GET /robots.txt HTTP/1.1\r\nHost: h\r\n\r\n", true, ""},
           Case{"GET /robots.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false,
                "Connection: close\r\n"},
           Case{"GET /robots.txt HTTP/1.0\r\n\r\n", false, "Connection: close\r\n"},
           Case{"GET /robots.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true,
                "Connection: keep-alive\r\n"},
           // A body we do not read would be taken for the next request.
           Case{"POST /derp/probe HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", false,
                "Connection: close\r\n"},
           Case{"POST /derp/probe HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", false,
                "Connection: close\r\n"},
           Case{"POST /derp/probe HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n", true, ""},
       }) {
    SCOPED_TRACE(c.wire);
    const RouteResult r = routeWire(c.wire);
    EXPECT_EQ(r.keepAlive, c.keepAlive);
    if (c.connectionLine.empty()) {
      EXPECT_THAT(r.response, Not(HasSubstr("Connection:")));
    } else {
      EXPECT_THAT(r.response,
                  HasSubstr(std::string("\r\n") + std::string(c.connectionLine) + "\r\n"));
    }
  }
}

TEST(RoutesTest, ErrorResponseAlwaysCloses) {
  EXPECT_EQ(errorResponse(400, "400 Bad Request"),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 15\r\nConnection: close\r\n\r\n400 Bad Request");
  EXPECT_THAT(errorResponse(431, ""),
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  EXPECT_THAT(errorResponse(408, "x"), StartsWith("HTTP/1.1 408 Request Timeout\r\n"));
  EXPECT_THAT(errorResponse(599, "x"), StartsWith("HTTP/1.1 599 status code 599\r\n"));
  EXPECT_THAT(errorResponse(503, "busy\n"), HasSubstr("\r\nConnection: close\r\n\r\nbusy\n"));
}


RouteResult routePort80Wire(std::string_view wire, const RouteContext& ctx) {
  const ParseResult parsed = parseRequest(asBytes(wire));
  EXPECT_EQ(parsed.status, ParseStatus::kComplete) << wire;
  return routePort80(parsed.request, ctx);
}

TEST(RoutesTest, Port80RedirectsToHttpsKeepingTheTarget) {
  RouteContext ctx{kServerKeyHex, false, 443};
  RouteResult r = routePort80Wire("GET /derp/probe?x=1 HTTP/1.1\r\nHost: derp.example.com\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 302);
  EXPECT_THAT(r.response, StartsWith("HTTP/1.1 302 Found\r\n"));
  EXPECT_THAT(r.response, HasSubstr("Location: https://derp.example.com/derp/probe?x=1\r\n"));
  EXPECT_THAT(r.response, HasSubstr("<a href=\"https://derp.example.com/derp/probe?x=1\">Found</a>.\n\n"));
  // The port of the plain listener is dropped; a TLS port other than 443 is added.
  RouteContext other{kServerKeyHex, false, 8443};
  r = routePort80Wire("HEAD / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", other);
  EXPECT_THAT(r.response, HasSubstr("Location: https://[2001:db8::1]:8443/\r\n"));
  EXPECT_THAT(r.response, Not(HasSubstr("Found</a>")));
}

TEST(RoutesTest, Port80AnswersGenerate204AndAcmePaths) {
  RouteContext ctx{kServerKeyHex, false, 443};
  RouteResult r = routePort80Wire(
      "GET /generate_204 HTTP/1.1\r\nHost: h\r\nX-Tailscale-Challenge: abc\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 204);
  EXPECT_THAT(r.response, HasSubstr("X-Tailscale-Response: response abc\r\n"));
  r = routePort80Wire("GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: h\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 404);
  r = routePort80Wire("POST /derp HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.response, HasSubstr("Use HTTPS\n"));
  r = routePort80Wire("GET / HTTP/1.0\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 400);
}

TEST(RoutePort80, AnswersPendingHttp01ChallengesOnly) {
  AcmeChallengeSnapshot pending;
  pending.http01["tok-EN_1"] = "tok-EN_1.thumb-print";
  RouteContext ctx{kServerKeyHex, false, 443};
  ctx.acmeChallenges = &pending;
  RouteResult r =
      routePort80Wire("GET /.well-known/acme-challenge/tok-EN_1 HTTP/1.1\r\nHost: h\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.response, HasSubstr("Content-Type: text/plain; charset=utf-8\r\n"));
  EXPECT_THAT(r.response, HasSubstr("\r\n\r\ntok-EN_1.thumb-print"));
  EXPECT_TRUE(r.keepAlive);
  r = routePort80Wire("HEAD /.well-known/acme-challenge/tok-EN_1 HTTP/1.1\r\nHost: h\r\n\r\n", ctx);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.response, Not(HasSubstr("thumb-print")));
  // Another token, a prefix of it, a longer path, another method: not found.
  for (const char* req :
       {"GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /.well-known/acme-challenge/tok-EN_1/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /.well-known/acme-challenge/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST /.well-known/acme-challenge/tok-EN_1 HTTP/1.1\r\nHost: h\r\nContent-Length: "
        "0\r\n\r\n"}) {
    EXPECT_EQ(routePort80Wire(req, ctx).status, 404) << req;
  }
  // Everything else on port 80 is as before.
  EXPECT_EQ(routePort80Wire("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", ctx).status, 302);
}

TEST(AcmeChallengeStore, PublishedSnapshotsStayValidWhileHeld) {
  AcmeChallengeStore store;
  EXPECT_EQ(store.load(), nullptr);
  auto first = std::make_shared<AcmeChallengeSnapshot>();
  first->http01["a"] = "a.x";
  store.publish(first);
  std::shared_ptr<const AcmeChallengeSnapshot> held = store.load();
  store.publish(std::make_shared<AcmeChallengeSnapshot>());
  first.reset();
  EXPECT_EQ(held->http01.at("a"), "a.x");
  EXPECT_TRUE(store.load()->http01.empty());
}

}  // namespace
}  // namespace derpd::http
