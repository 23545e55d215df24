#include "http/request_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "http_vectors.h"

namespace derpd::http {
namespace {

using testing::asBytes;
using testing::bytesFromHex;
using testing::httpVector;
using testing::vectorBytes;

ParseResult parse(std::string_view s, size_t maxHead = kMaxRequestHead) {
  return parseRequest(asBytes(s), maxHead);
}

TEST(RequestParserTest, ParsesGoClientUpgradeRequest) {
  const std::string bytes = vectorBytes("client_upgrade_request");
  ASSERT_FALSE(bytes.empty());
  const ParseResult r = parse(bytes);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.method, "GET");
  EXPECT_EQ(r.request.target, "/derp");
  EXPECT_EQ(r.request.path, "/derp");
  EXPECT_EQ(r.request.versionMinor, 1);
  EXPECT_EQ(r.request.headLength, bytes.size());
  ASSERT_EQ(r.request.headers.size(), 4u);
  EXPECT_EQ(r.request.headers[0].name, "Host");
  EXPECT_EQ(r.request.headers[0].value, "derp.example.com");
  EXPECT_EQ(r.request.header("user-agent"), "Go-http-client/1.1");
  EXPECT_EQ(r.request.header("CONNECTION"), "Upgrade");
  EXPECT_EQ(r.request.header("Upgrade"), "DERP");
  EXPECT_TRUE(r.request.hasHeader("upgrade"));
  EXPECT_FALSE(r.request.hasHeader("Derp-Fast-Start"));
  EXPECT_TRUE(r.request.keepAlive());
}

TEST(RequestParserTest, FastStartLeavesClientInfoBytesAfterHead) {
  const nlohmann::json v = httpVector("client_upgrade_request_fast_start");
  ASSERT_FALSE(v.is_null());
  const std::string head = bytesFromHex(v["hex"].get<std::string>());
  const std::string following = bytesFromHex(v["following_bytes_hex"].get<std::string>());
  ASSERT_FALSE(following.empty());
  const std::string wire = head + following;
  const ParseResult r = parse(wire);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.headLength, head.size());
  EXPECT_EQ(r.request.header("Derp-Fast-Start"), "1");
  // The first byte after the head is the ClientInfo frame type.
  EXPECT_EQ(static_cast<uint8_t>(wire[r.request.headLength]), 0x02);
  EXPECT_EQ(wire.substr(r.request.headLength), following);
}

TEST(RequestParserTest, EveryVectorRequestParses) {
  const nlohmann::json& doc = testing::httpVectors();
  ASSERT_FALSE(doc.is_null());
  int requests = 0;
  for (const auto& entry : doc["entries"]) {
    std::string bytes;
    if (entry.contains("request")) {
      bytes = entry["request"].get<std::string>();
    } else if (entry.value("name", "").starts_with("client_")) {
      bytes = bytesFromHex(entry["hex"].get<std::string>());
    } else {
      continue;
    }
    ++requests;
    SCOPED_TRACE(entry.value("name", ""));
    const ParseResult r = parse(bytes);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.request.headLength, bytes.size());
    EXPECT_EQ(r.request.method, "GET");
    EXPECT_FALSE(r.request.header("Host").empty());
  }
  EXPECT_GE(requests, 7);
}

TEST(RequestParserTest, ByteAtATimeNeedsMoreUntilComplete) {
  const nlohmann::json v = httpVector("client_upgrade_request_fast_start");
  ASSERT_FALSE(v.is_null());
  const std::string head = bytesFromHex(v["hex"].get<std::string>());
  for (const std::string& wire :
       {head, std::string("GET /x?y=1 HTTP/1.0\nHost: h\nA:\tb \n\n"),
        std::string("HEAD / HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9\r\n\r\n")}) {
    SCOPED_TRACE(wire);
    for (size_t n = 0; n < wire.size(); ++n) {
      ASSERT_EQ(parse(wire.substr(0, n)).status, ParseStatus::kNeedMore) << "prefix " << n;
    }
    const ParseResult r = parse(wire);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.request.headLength, wire.size());
  }
}

TEST(RequestParserTest, PipelinedRequestsParseOneAfterAnother) {
  const std::string wire =
      "GET /derp/probe HTTP/1.1\r\nHost: a\r\n\r\n"
      "HEAD /robots.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
      "GET /generate_204 HTTP/1.1\r\nHo";
  std::string_view rest = wire;
  ParseResult r = parse(rest);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.path, "/derp/probe");
  EXPECT_TRUE(r.request.keepAlive());
  rest.remove_prefix(r.request.headLength);

  r = parse(rest);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.method, "HEAD");
  EXPECT_EQ(r.request.path, "/robots.txt");
  EXPECT_FALSE(r.request.keepAlive());
  rest.remove_prefix(r.request.headLength);

  EXPECT_EQ(parse(rest).status, ParseStatus::kNeedMore);
}

TEST(RequestParserTest, AcceptsBareLfAndMixedLineEnds) {
  const ParseResult r = parse("GET / HTTP/1.1\nHost: a\r\nX: y\n\r\nrest");
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.headLength, std::string_view("GET / HTTP/1.1\nHost: a\r\nX: y\n\r\n").size());
  EXPECT_EQ(r.request.header("x"), "y");
}

TEST(RequestParserTest, TrimsValuesAndKeepsEmptyOnes) {
  const ParseResult r = parse("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v a l \t\r\nX-B:\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.header("Host"), "a");
  EXPECT_EQ(r.request.header("X-A"), "v a l");
  EXPECT_TRUE(r.request.hasHeader("X-B"));
  EXPECT_EQ(r.request.header("X-B"), "");
  EXPECT_EQ(r.request.header("X-C"), "");
  EXPECT_FALSE(r.request.hasHeader("X-C"));
}

TEST(RequestParserTest, FirstOfRepeatedHeadersWins) {
  const ParseResult r = parse("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.header("X"), "1");
  EXPECT_EQ(r.request.headers.size(), 3u);
}

TEST(RequestParserTest, SplitsPathFromQueryAndAbsoluteForm) {
  struct Case {
    std::string_view target;
    std::string_view path;
  };
  for (const Case& c :
       {Case{"/derp?x=1", "/derp"}, Case{"/", "/"}, Case{"/?", "/"}, Case{"/a/b?c?d", "/a/b"},
        Case{"*", "*"}, Case{"http://derp.example.com/derp?q", "/derp"},
        Case{"HTTPS://h:443/generate_204", "/generate_204"}, Case{"http://h", "/"},
        Case{"http://h?x", "/"}}) {
    SCOPED_TRACE(c.target);
    const std::string wire = "GET " + std::string(c.target) + " HTTP/1.1\r\nHost: h\r\n\r\n";
    const ParseResult r = parse(wire);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.request.target, c.target);
    EXPECT_EQ(r.request.path, c.path);
  }
}

TEST(RequestParserTest, KeepAliveFollowsVersionAndConnection) {
  struct Case {
    std::string_view wire;
    bool keepAlive;
  };
  for (const Case& c : {
           Case{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
           Case{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
           Case{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
           Case{"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", false},
           Case{"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
           Case{"GET / HTTP/1.0\r\n\r\n", false},
           Case{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
           Case{"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
       }) {
    SCOPED_TRACE(c.wire);
    const ParseResult r = parse(c.wire);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.request.keepAlive(), c.keepAlive);
  }
}

TEST(RequestParserTest, VersionMinor) {
  EXPECT_EQ(parse("GET / HTTP/1.0\r\n\r\n").request.versionMinor, 0);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").request.versionMinor, 1);
}

TEST(RequestParserTest, RejectsMalformedRequests) {
  const std::string_view cases[] = {
      // Request line.
      "\r\n",
      "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET\r\n\r\n",
      "GET /\r\nHost: a\r\n\r\n",
      "GET / \r\nHost: a\r\n\r\n",
      "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
      " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
      "GET / HTTP/1\r\nHost: a\r\n\r\n",
      "GET / http/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
      "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
      "GET / FOO/1.1\r\nHost: a\r\n\r\n",
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
      "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
      "G\"T / HTTP/1.1\r\nHost: a\r\n\r\n",
      "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET\x01 / HTTP/1.1\r\nHost: a\r\n\r\n",
      "G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET derp HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\rHost: a\r\n\r\n",
      std::string_view("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 29),
      // Header lines.
      "GET / HTTP/1.1\r\nHost a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX/y: z\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: z\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\rz\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n",
      std::string_view("GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n", 35),
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
      "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
      // Whole-head rules Go's server also enforces.
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nX: y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      // Not HTTP at all.
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
      "SSH-2.0-OpenSSH_9.2p1\r\n",
      std::string_view("\0\0\0\0", 4),
      "\xff\xfe\xfd",
  };
  for (std::string_view c : cases) {
    SCOPED_TRACE(::testing::PrintToString(std::string(c)));
    EXPECT_EQ(parse(c).status, ParseStatus::kBadRequest);
  }
}

TEST(RequestParserTest, RejectsGarbageBeforeTheLineEnds) {
  // A TLS ClientHello on the plain port must not wait for a line end that may never come.
  EXPECT_EQ(parse("\x16\x03\x01").status, ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /\x01").status, ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX: a\x01").status, ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\rX").status, ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r").status, ParseStatus::kNeedMore);
  EXPECT_EQ(parse("").status, ParseStatus::kNeedMore);
}

TEST(RequestParserTest, AcceptsOddButLegalRequests) {
  for (std::string_view c : {
           "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
           "M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET /a%20b?c=d&e=%ff HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX-!#$%&'*+-.^_`|~: v\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX: \"quoted\" (comment) <>{}[]\\\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
           "GET / HTTP/1.1\r\nhost: a\r\n\r\n",
           "GET / HTTP/1.0\r\n\r\n",
       }) {
    SCOPED_TRACE(c);
    EXPECT_EQ(parse(c).status, ParseStatus::kComplete);
  }
}

TEST(RequestParserTest, HeadOverLimitIsTooLargeEvenIncomplete) {
  std::string wire = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ";
  wire.append(kMaxRequestHead, 'a');
  EXPECT_EQ(parse(wire).status, ParseStatus::kHeadTooLarge);
  wire += "\r\n\r\n";
  EXPECT_EQ(parse(wire).status, ParseStatus::kHeadTooLarge);
  // Many small headers add up the same way.
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  while (many.size() <= kMaxRequestHead) many += "X-Many: 0123456789\r\n";
  EXPECT_EQ(parse(many).status, ParseStatus::kHeadTooLarge);
}

TEST(RequestParserTest, HeadExactlyAtLimitIsAccepted) {
  // A complete head of `size` bytes, padded in one header. (Built whole:
  // std::string::insert trips GCC 12's -Wrestrict false positive at -O3.)
  const auto headOfSize = [](size_t size) {
    const std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const std::string end = "\r\n\r\n";
    return start + std::string(size - start.size() - end.size(), 'p') + end;
  };
  std::string wire = headOfSize(kMaxRequestHead);
  ASSERT_EQ(wire.size(), kMaxRequestHead);
  const ParseResult r = parse(wire + "trailing bytes");
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.headLength, kMaxRequestHead);
  // One byte more and the blank line falls outside the limit.
  wire = headOfSize(kMaxRequestHead + 1);
  EXPECT_EQ(parse(wire).status, ParseStatus::kHeadTooLarge);
  // Up to the limit, an unfinished head just needs more.
  EXPECT_EQ(parse(wire.substr(0, kMaxRequestHead)).status, ParseStatus::kNeedMore);
}

TEST(RequestParserTest, HonoursCustomLimit) {
  const std::string_view wire = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parse(wire, wire.size()).status, ParseStatus::kComplete);
  EXPECT_EQ(parse(wire, wire.size() - 1).status, ParseStatus::kHeadTooLarge);
  EXPECT_EQ(parse(wire.substr(0, 10), 8).status, ParseStatus::kHeadTooLarge);
  EXPECT_EQ(parse(wire.substr(0, 8), 8).status, ParseStatus::kNeedMore);
}

}  // namespace
}  // namespace derpd::http
