// derpd's HTTP front against a live server (PROTOCOL.md "HTTP endpoints").
#include <unistd.h>

#include <ctime>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

constexpr Nanos kWait = 5 * kSecond;

class HttpEndpointsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DerpdProcess>> p = DerpdProcess::start({});
    ASSERT_TRUE(p.ok()) << p.status();
    derpd_ = p->release();
  }
  static void TearDownTestSuite() {
    delete derpd_;
    derpd_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(derpd_, nullptr) << "derpd did not start"; }

  static uint16_t port() { return derpd_->port(); }

  static DerpdProcess* derpd_;
};

DerpdProcess* HttpEndpointsTest::derpd_ = nullptr;

TEST_F(HttpEndpointsTest, Generate204AnswersTheChallenge) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r,
                       httpGet(port(), "/generate_204", "X-Tailscale-Challenge: abc123\r\n"));
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.header("X-Tailscale-Response"), "response abc123");
  EXPECT_TRUE(r.body.empty());
}

TEST_F(HttpEndpointsTest, Generate204WithoutChallenge) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), "/generate_204"));
  EXPECT_EQ(r.status, 204);
  EXPECT_FALSE(r.hasHeader("X-Tailscale-Response"));
}

TEST_F(HttpEndpointsTest, Generate204IgnoresInvalidChallenges) {
  for (const std::string& challenge : {std::string(65, 'a'), std::string("abc!def")}) {
    SCOPED_TRACE(challenge);
    ASSERT_OK_AND_ASSIGN(HttpResponse r,
                         httpGet(port(), "/generate_204",
                                 absl::StrCat("X-Tailscale-Challenge: ", challenge, "\r\n")));
    EXPECT_EQ(r.status, 204);
    EXPECT_FALSE(r.hasHeader("X-Tailscale-Response"));
  }
  // 64 characters from the whole allowed alphabet is still answered.
  std::string longest = "Az09._:-";
  while (longest.size() < 64) longest += longest;
  longest.resize(64);
  ASSERT_OK_AND_ASSIGN(
      HttpResponse r,
      httpGet(port(), "/generate_204", absl::StrCat("X-Tailscale-Challenge: ", longest, "\r\n")));
  EXPECT_EQ(r.header("X-Tailscale-Response"), "response " + longest);
}

TEST_F(HttpEndpointsTest, ProbeAndLatencyCheck) {
  for (const char* path : {"/derp/probe", "/derp/latency-check"}) {
    SCOPED_TRACE(path);
    ASSERT_OK_AND_ASSIGN(HttpResponse get, httpGet(port(), path));
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.header("Access-Control-Allow-Origin"), "*");
    ASSERT_OK_AND_ASSIGN(
        HttpResponse head,
        httpExchange(port(), absl::StrCat("HEAD ", path,
                                          " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    EXPECT_EQ(head.status, 200);
    ASSERT_OK_AND_ASSIGN(
        HttpResponse post,
        httpExchange(port(), absl::StrCat("POST ", path,
                                          " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                          "Connection: close\r\n\r\n")));
    EXPECT_EQ(post.status, 405);
  }
}

TEST_F(HttpEndpointsTest, RobotsTxt) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), "/robots.txt"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "User-agent: *\nDisallow: /\n");
}

TEST_F(HttpEndpointsTest, HomePage) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), "/"));
  EXPECT_EQ(r.status, 200);
}

// RFC 9110 6.6.1: an origin server with a clock sends Date (IMF-fixdate).
TEST_F(HttpEndpointsTest, ResponsesCarryADate) {
  for (const char* path : {"/", "/generate_204", "/nope", "/derp"}) {
    const time_t before = ::time(nullptr);
    ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), path));
    const time_t after = ::time(nullptr);
    const std::string date = r.header("Date");
    tm parts{};
    const char* end = ::strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts);
    ASSERT_TRUE(end != nullptr && *end == '\0') << path << ": Date \"" << date << "\"";
    const time_t t = ::timegm(&parts);
    EXPECT_GE(t, before) << path;
    EXPECT_LE(t, after) << path;
  }
}

TEST_F(HttpEndpointsTest, UnknownPathIs404) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), "/nope"));
  EXPECT_EQ(r.status, 404);
}

TEST_F(HttpEndpointsTest, DerpWithoutUpgradeIs426) {
  ASSERT_OK_AND_ASSIGN(HttpResponse r, httpGet(port(), "/derp"));
  EXPECT_EQ(r.status, 426);
}

TEST_F(HttpEndpointsTest, TwoRequestsOnOneKeepAliveConnection) {
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port()));
  ASSERT_OK(conn.writeAll("GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_OK_AND_ASSIGN(HttpResponse first, readHttpResponse(conn));
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "User-agent: *\nDisallow: /\n");
  ASSERT_OK(
      conn.writeAll("GET /generate_204 HTTP/1.1\r\nHost: x\r\n"
                    "X-Tailscale-Challenge: second\r\n\r\n"));
  ASSERT_OK_AND_ASSIGN(HttpResponse second, readHttpResponse(conn));
  EXPECT_EQ(second.status, 204);
  EXPECT_EQ(second.header("X-Tailscale-Response"), "response second");
}

// A head that arrives a few bytes at a time (each write a separate segment) is
// answered once complete, and garbage on the first line is refused before the
// head is complete.
TEST_F(HttpEndpointsTest, HeadArrivingInSmallPiecesIsAnswered) {
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port()));
  std::string req =
      "GET /generate_204 HTTP/1.1\r\nHost: x\r\nX-Tailscale-Challenge: slow\r\n"
      "Connection: close\r\n\r\n";
  for (size_t i = 0; i < req.size(); i += 3) {
    ASSERT_OK(conn.writeAll(std::string_view(req).substr(i, 3)));
    ::usleep(1000);
  }
  ASSERT_OK_AND_ASSIGN(HttpResponse r, readHttpResponse(conn));
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.header("X-Tailscale-Response"), "response slow");

  ASSERT_OK_AND_ASSIGN(TcpConn bad, TcpConn::connect(port()));
  ASSERT_OK(bad.writeAll("\x16\x03\x01 not http\r\nHost: x\r\n"));
  ASSERT_OK_AND_ASSIGN(HttpResponse refused, readHttpResponse(bad));
  EXPECT_EQ(refused.status, 400);
}

TEST_F(HttpEndpointsTest, PipelinedRequestsAreAnsweredInOrder) {
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port()));
  ASSERT_OK(
      conn.writeAll("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /robots.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  ASSERT_OK_AND_ASSIGN(HttpResponse first, readHttpResponse(conn));
  EXPECT_EQ(first.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpResponse second, readHttpResponse(conn));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "User-agent: *\nDisallow: /\n");
}

// The ClientInfo written in the same packet as the upgrade request is DERP, not
// garbage: the server answers it after the 101 and the ServerKey.
TEST_F(HttpEndpointsTest, BytesPipelinedBehindTheUpgradeAreDerp) {
  std::optional<std::string> line = derpd_->findLog("public key nodekey:");
  ASSERT_TRUE(line.has_value()) << "derpd did not log its public key";
  std::optional<derp::NodeKey> serverKey =
      derp::NodeKey::parse(line->substr(line->find("nodekey:"), 8 + 64));
  ASSERT_TRUE(serverKey.has_value()) << *line;

  derp::PrivateKey key = derp::PrivateKey::generate();
  std::string bytes = derpUpgradeRequest(port());
  std::vector<uint8_t> info = clientInfoFrameBytes(key, *serverKey, R"({"version":2})");
  bytes.append(info.begin(), info.end());
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(port()));
  ASSERT_OK(conn.writeAll(bytes));

  ASSERT_OK_AND_ASSIGN(HttpResponse upgrade, readHttpResponse(conn, /*noBody=*/true));
  ASSERT_EQ(upgrade.status, 101) << upgrade.statusLine;
  EXPECT_EQ(upgrade.header("Derp-Public-Key"), serverKey->hex());
  ASSERT_OK_AND_ASSIGN(RawFrame serverKeyFrame, readRawFrame(conn));
  ASSERT_EQ(serverKeyFrame.type, static_cast<uint8_t>(derp::FrameType::kServerKey));
  ASSERT_OK_AND_ASSIGN(RawFrame serverInfo, readRawFrame(conn));
  ASSERT_EQ(serverInfo.type, static_cast<uint8_t>(derp::FrameType::kServerInfo));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> json,
                       derp::openBox(key, *serverKey, asBytes(serverInfo.body)));
  ASSERT_OK_AND_ASSIGN(derp::ServerInfo parsed,
                       derp::parseServerInfoJson(std::string_view(
                           reinterpret_cast<const char*>(json.data()), json.size())));
  EXPECT_EQ(parsed.version, 2);

  // And it is registered: a packet sent to its key arrives.
  ASSERT_OK_AND_ASSIGN(auto sender, connectClient(port()));
  std::vector<uint8_t> payload = taggedPayload(1, 2, 100);
  ASSERT_OK(sender->sendPacket(key.publicKey(), payload));
  RealClock clock;
  Nanos deadline = clock.now() + kWait;
  for (;;) {
    ASSERT_LT(clock.now(), deadline) << "packet never arrived";
    ASSERT_OK_AND_ASSIGN(RawFrame f, readRawFrame(conn, deadline - clock.now()));
    if (f.type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) continue;
    ASSERT_EQ(f.body.size(), derp::kKeyLen + payload.size());
    EXPECT_EQ(f.body.substr(derp::kKeyLen), std::string(payload.begin(), payload.end()));
    EXPECT_EQ(f.body.substr(0, derp::kKeyLen),
              std::string(sender->publicKey().bytes.begin(), sender->publicKey().bytes.end()));
    break;
  }
}

}  // namespace
}  // namespace derpd::testing
