// STUN against a live derpd (PROTOCOL.md "STUN"): Tailscale's binding request
// over IPv4 and IPv6, malformed datagrams ignored and counted without stopping
// service, and Debian's own STUN clients getting the right mapped address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/hex.h"
#include "base/unique_fd.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_support.h"
#include "stun/stun.h"

namespace derpd::testing {
namespace {

// Tailscale's stun.Request for txid 01..0c (tests/vectors/stun.json).
constexpr std::string_view kTailscaleRequest =
    "000100142112a4420102030405060708090a0b0c802200087461696c6e6f646580280004b32c370f";

uint16_t stunPortFromLog(const DerpdProcess& d) {
  std::optional<std::string> line = d.findLog("STUN listening on udp://");
  if (!line) return 0;
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

struct UdpClient {
  UniqueFd fd;
  sockaddr_storage local{};
  sockaddr_storage server{};
  socklen_t serverLen = 0;
};

std::optional<UdpClient> udpClient(int family, uint16_t port) {
  UdpClient c;
  c.fd.reset(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!c.fd.valid()) return std::nullopt;
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&c.server);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &s->sin_addr);
    c.serverLen = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&c.server);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    s->sin6_addr = in6addr_loopback;
    c.serverLen = sizeof(sockaddr_in6);
  }
  if (::connect(c.fd.get(), reinterpret_cast<sockaddr*>(&c.server), c.serverLen) != 0) {
    return std::nullopt;
  }
  socklen_t len = sizeof(c.local);
  getsockname(c.fd.get(), reinterpret_cast<sockaddr*>(&c.local), &len);
  return c;
}

// Sends one datagram and waits up to timeoutMs for an answer.
std::optional<std::vector<uint8_t>> stunExchange(UdpClient& c, const std::vector<uint8_t>& req,
                                             int timeoutMs = 2000) {
  if (::send(c.fd.get(), req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) {
    return std::nullopt;
  }
  pollfd p{c.fd.get(), POLLIN, 0};
  if (::poll(&p, 1, timeoutMs) != 1) return std::nullopt;
  std::vector<uint8_t> buf(1500);
  ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
  if (n <= 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// The response derpd must send for `req` to the client's own address: the
// codec is checked against Tailscale's bytes in the unit tests, so here the
// question is whether the server answers the right peer with it.
std::vector<uint8_t> expectedResponse(const std::vector<uint8_t>& req, const UdpClient& c) {
  auto parsed = stun::parseBindingRequest(req);
  EXPECT_TRUE(std::holds_alternative<stun::BindingRequest>(parsed));
  std::vector<uint8_t> out(stun::kMaxResponseLen);
  size_t n = stun::buildBindingResponse(std::get<stun::BindingRequest>(parsed),
                                        reinterpret_cast<const sockaddr*>(&c.local), out);
  out.resize(n);
  return out;
}

class StunTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    DerpdOptions opts;
    opts.extraArgs = std::move(extra);
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
    derpd_->waitForLog("STUN listening on udp://", 5 * kSecond);
    stunPort_ = stunPortFromLog(*derpd_);
    ASSERT_NE(stunPort_, 0) << "derpd did not log its STUN port:\n" << derpd_->logText();
  }
  std::unique_ptr<DerpdProcess> derpd_;
  uint16_t stunPort_ = 0;
};

TEST_F(StunTest, AnswersTailscaleRequestOverIpv4) {
  start();
  std::vector<uint8_t> req = *hexDecode(kTailscaleRequest);
  // Several sockets: SO_REUSEPORT spreads sources across both shards.
  for (int i = 0; i < 8; i++) {
    auto c = udpClient(AF_INET, stunPort_);
    ASSERT_TRUE(c.has_value());
    auto resp = stunExchange(*c, req);
    ASSERT_TRUE(resp.has_value()) << "no STUN answer";
    EXPECT_EQ(*resp, expectedResponse(req, *c));
    EXPECT_LE(resp->size(), 32u);
  }
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(derpd_->port()));
  EXPECT_GE(sumMetric(m, "derpd_stun_responses_total", {}), 8);
}

TEST_F(StunTest, AnswersOverIpv6) {
  auto probe = udpClient(AF_INET6, 9);
  if (!probe) GTEST_SKIP() << "no IPv6 loopback on this machine";
  start({"-a", "[::1]:0"});
  std::vector<uint8_t> req = *hexDecode(kTailscaleRequest);
  auto c = udpClient(AF_INET6, stunPort_);
  ASSERT_TRUE(c.has_value());
  auto resp = stunExchange(*c, req);
  ASSERT_TRUE(resp.has_value()) << "no STUN answer over ::1";
  EXPECT_EQ(*resp, expectedResponse(req, *c));
  EXPECT_EQ(resp->size(), 44u);
}

TEST_F(StunTest, MalformedDatagramsAreCountedAndServiceContinues) {
  start();
  auto c = udpClient(AF_INET, stunPort_);
  ASSERT_TRUE(c.has_value());
  std::vector<uint8_t> good = *hexDecode(kTailscaleRequest);
  std::vector<std::vector<uint8_t>> bad = {
      {},                                    // empty
      {0x00, 0x01, 0x00},                    // too short
      std::vector<uint8_t>(1200, 0xff),      // garbage
  };
  std::vector<uint8_t> wrongFingerprint = good;
  wrongFingerprint.back() ^= 1;
  bad.push_back(wrongFingerprint);
  std::vector<uint8_t> response = good;
  response[0] = 0x01;  // 0x0101: a Binding Success Response, not a request
  bad.push_back(response);
  std::vector<uint8_t> badLength = good;
  badLength[3] = 0x18;
  bad.push_back(badLength);
  // Paced, so the kernel's socket buffers (not derpd) never drop any.
  for (int round = 0; round < 50; round++) {
    for (const auto& d : bad) ::send(c->fd.get(), d.data(), d.size(), 0);
    ::usleep(1000);
  }
  // Nothing comes back for any of them...
  pollfd p{c->fd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0) << "derpd answered a malformed datagram";
  // ...and a good request is still answered.
  auto resp = stunExchange(*c, good);
  ASSERT_TRUE(resp.has_value());
  EXPECT_EQ(*resp, expectedResponse(good, *c));
  // The other five kinds, fifty times each, are all counted (the empty
  // datagram is counted too where the kernel delivers it as a message).
  ASSERT_OK_AND_ASSIGN(double dropped, waitForMetric(derpd_->port(), "derpd_stun_dropped_total",
                                                     {}, 250, 5 * kSecond));
  EXPECT_GE(dropped, 250);
  ASSERT_OK_AND_ASSIGN(double badFingerprint,
                       waitForMetric(derpd_->port(), "derpd_stun_dropped_total",
                                     {{"reason", "bad_fingerprint"}}, 50, 5 * kSecond));
  EXPECT_GE(badFingerprint, 50);
  ASSERT_OK_AND_ASSIGN(double notRequest,
                       waitForMetric(derpd_->port(), "derpd_stun_dropped_total",
                                     {{"reason", "not_binding_request"}}, 50, 5 * kSecond));
  EXPECT_GE(notRequest, 50);
  // A bad length field, and the 1200-byte garbage that overflows a receive
  // buffer and arrives truncated.
  ASSERT_OK_AND_ASSIGN(double lengthDrops,
                       waitForMetric(derpd_->port(), "derpd_stun_dropped_total",
                                     {{"reason", "bad_length"}}, 100, 5 * kSecond));
  EXPECT_GE(lengthDrops, 100);
}

TEST_F(StunTest, OffWithStunFalse) {
  DerpdOptions opts;
  opts.extraArgs = {"-stun=false"};
  ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
  EXPECT_FALSE(derpd_->findLog("STUN listening").has_value()) << derpd_->logText();
}

// derper's STUN-only node: STUN answers, /derp is 404 (raw, fast start and
// WebSocket alike), the other endpoints stay.
TEST_F(StunTest, DerpFalseServesStunOnly) {
  start({"-derp=false"});
  std::vector<uint8_t> req = *hexDecode(kTailscaleRequest);
  auto c = udpClient(AF_INET, stunPort_);
  ASSERT_TRUE(c.has_value());
  auto resp = stunExchange(*c, req);
  ASSERT_TRUE(resp.has_value()) << "no STUN answer";
  EXPECT_EQ(*resp, expectedResponse(req, *c));
  for (bool fast : {false, true}) {
    ASSERT_OK_AND_ASSIGN(HttpResponse derp,
                         httpExchange(derpd_->port(), derpUpgradeRequest(derpd_->port(), fast)));
    EXPECT_EQ(derp.status, 404);
    EXPECT_EQ(derp.body, "derp server disabled\n");
  }
  ASSERT_OK_AND_ASSIGN(
      HttpResponse ws,
      httpExchange(
          derpd_->port(),
          "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
          "Upgrade: websocket\r\nSec-WebSocket-Protocol: derp\r\n"
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
  EXPECT_EQ(ws.status, 404);
  EXPECT_FALSE(connectClient(derpd_->port()).ok());
  ASSERT_OK_AND_ASSIGN(HttpResponse g, httpGet(derpd_->port(), "/generate_204"));
  EXPECT_EQ(g.status, 204);
  ASSERT_OK_AND_ASSIGN(HttpResponse probe, httpGet(derpd_->port(), "/derp/probe"));
  EXPECT_EQ(probe.status, 200);
}

TEST_F(StunTest, BadStunPortStopsStartup) {
  DerpdOptions opts;
  opts.extraArgs = {"-stun-port", "70000"};
  ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::spawn(opts));
  ASSERT_OK_AND_ASSIGN(int code, derpd_->waitExit(5 * kSecond));
  EXPECT_EQ(code, 2);
  EXPECT_TRUE(derpd_->waitForOutputEnd(5 * kSecond));
  EXPECT_NE(derpd_->logText().find("-stun-port"), std::string::npos) << derpd_->logText();
}

}  // namespace
}  // namespace derpd::testing
