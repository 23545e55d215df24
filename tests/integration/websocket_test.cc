// DERP over WebSocket (RFC 6455), plain and TLS, against an independent
// client: ws_derp_client.py, on Debian's python3-websockets and PyNaCl (no
// derpd code), exchanges packets of 10, 1280 and 60,000 bytes both ways with
// a native raw-DERP client through derpd, framing its DERP bytes three ways,
// pinging, and closing with a Close that derpd must answer. Then the same
// derpd is fed broken WebSocket frames by hand: each closes that connection
// with the RFC's code, counted, while the other clients keep being served.
// Exits 77 (skipped) when python3-websockets or PyNaCl is missing.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "derp/frame.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/websocket.h"
#include "integration/test_net.h"
#include "integration/test_support.h"
#include "integration/tls_fixture.h"
#include "integration/ws_peer.h"

namespace derpd::testing {
namespace {

using ::testing::HasSubstr;

// ws_derp_client.py against url (DERPD_WS_CLIENT names it).
void relayWithPythonClient(const std::string& url, client::DerpClient& native,
                           const std::vector<std::string>& extra = {}) {
  const char* script = std::getenv("DERPD_WS_CLIENT");
  ASSERT_NE(script, nullptr) << "DERPD_WS_CLIENT is not set (tests/integration/meson.build)";
  std::vector<std::string> argv = {"/usr/bin/python3", script, url};
  argv.insert(argv.end(), extra.begin(), extra.end());
  relayWithExternalClient(argv, native);
}

TEST_F(TlsTest, WebSocketClientRelaysWithANativeClientOverTls) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(auto native, connectTls());
  relayWithPythonClient(absl::StrCat("wss://127.0.0.1:", port_, "/derp"), *native,
                        {"--ca", gFix->pki->caCrt(), "--server-name", "derp.test"});
  ASSERT_OK_AND_ASSIGN(double upgrades, metricTls(port_, "derpd_websocket_upgrades_total"));
  EXPECT_EQ(upgrades, 1);
  ASSERT_OK_AND_ASSIGN(double closes, metricTls(port_, "derpd_connections_closed_total",
                                                {{"reason", "websocket_close"}}));
  EXPECT_EQ(closes, 1);
  // The native client is still served.
  ASSERT_OK_AND_ASSIGN(auto other, connectTls());
  expectRelayBothWays(*native, *other, 7);
}

// A plain derpd (no TLS): the WebSocket client, then hand-made bad frames.
class PlainWebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DerpdOptions opts;
    opts.extraArgs = {"--metrics-addr", "127.0.0.1:0"};
    auto d = DerpdProcess::start(opts);
    ASSERT_OK(d.status());
    derpd_ = std::move(*d);
  }
  std::unique_ptr<DerpdProcess> derpd_;
};

TEST_F(PlainWebSocketTest, WebSocketClientRelaysWithANativeClient) {
  ASSERT_OK_AND_ASSIGN(auto native, connectClient(derpd_->port()));
  relayWithPythonClient(absl::StrCat("ws://127.0.0.1:", derpd_->port(), "/derp"), *native);
}

constexpr std::string_view kUpgrade =
    "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Protocol: derp\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

// A request pipelined ahead of the upgrade is answered in plain HTTP; only
// what follows the 101 is WebSocket.
TEST_F(PlainWebSocketTest, ResponsePipelinedBeforeTheUpgradeStaysHttp) {
  ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(derpd_->port()));
  ASSERT_OK(conn.writeAll("GET /generate_204 HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(kUpgrade)));
  ASSERT_OK_AND_ASSIGN(HttpResponse first, readHttpResponse(conn, /*noBody=*/true));
  EXPECT_EQ(first.status, 204);
  ASSERT_OK_AND_ASSIGN(HttpResponse upgrade, readHttpResponse(conn, /*noBody=*/true));
  EXPECT_EQ(upgrade.status, 101);
  ASSERT_OK_AND_ASSIGN(std::string key, conn.readExact(2 + 45));
  EXPECT_EQ(static_cast<uint8_t>(key[0]), 0x82);
  EXPECT_EQ(static_cast<uint8_t>(key[1]), 45);
  EXPECT_EQ(static_cast<uint8_t>(key[2]), 0x01);  // ServerKey
}

TEST_F(PlainWebSocketTest, BrokenFramesCloseWithTheRightCodeAndOthersAreServed) {
  ASSERT_OK_AND_ASSIGN(uint16_t mport, metricsPortOf(*derpd_));
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(derpd_->port()));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(derpd_->port()));
  const uint8_t mask[4] = {9, 8, 7, 6};
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    uint16_t code;
  };
  auto masked = [&](http::ws::Opcode op, std::vector<uint8_t> body) {
    uint8_t h[http::ws::kMaxHeaderLen];
    size_t n = http::ws::encodeClientHeader(h, op, body.size(), mask);
    http::ws::applyMask(body.data(), body.size(), mask, 0);
    std::vector<uint8_t> out(h, h + n);
    out.insert(out.end(), body.begin(), body.end());
    return out;
  };
  const Case cases[] = {
      {"unmasked", {0x82, 0x01, 0x00}, 1002},
      {"text", masked(http::ws::kText, {'h', 'i'}), 1003},
      {"reserved bit", {0xc2, 0x80, 1, 2, 3, 4}, 1002},
      {"oversized frame", {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, 1009},
      {"close", masked(http::ws::kClose, {0x03, 0xe8}), 1000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK_AND_ASSIGN(TcpConn conn, TcpConn::connect(derpd_->port()));
    ASSERT_OK(conn.writeAll(kUpgrade));
    ASSERT_OK(conn.writeAll(c.bytes));
    ASSERT_OK_AND_ASSIGN(std::string got, conn.readUntilClose(5 * kSecond));
    // The 101, ServerKey in a binary message, then a Close with the code.
    ASSERT_THAT(got, HasSubstr("HTTP/1.1 101 Switching Protocols\r\n"));
    ASSERT_THAT(got, HasSubstr("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    const size_t head = got.find("\r\n\r\n") + 4;
    ASSERT_GE(got.size(), head + 2 + 45 + 4);
    EXPECT_EQ(static_cast<uint8_t>(got[head]), 0x82);
    EXPECT_EQ(static_cast<uint8_t>(got[head + 1]), 45);  // ServerKey: 5 + 8 + 32
    EXPECT_EQ(static_cast<uint8_t>(got[head + 2]), 0x01);
    const std::string close = got.substr(head + 2 + 45);
    ASSERT_EQ(close.size(), 4u);
    EXPECT_EQ(static_cast<uint8_t>(close[0]), 0x88);
    EXPECT_EQ(static_cast<uint8_t>(close[1]), 2);
    EXPECT_EQ((static_cast<uint8_t>(close[2]) << 8) | static_cast<uint8_t>(close[3]), c.code);
  }
  ASSERT_OK_AND_ASSIGN(HttpResponse m, httpGet(mport, "/metrics"));
  EXPECT_THAT(m.body, HasSubstr("derpd_connections_closed_total{reason=\"websocket_protocol\"} 4"));
  EXPECT_THAT(m.body, HasSubstr("derpd_connections_closed_total{reason=\"websocket_close\"} 1"));
  expectRelayBothWays(*a, *b, 3);
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  if (std::system("/usr/bin/python3 -c 'import websockets, nacl' >/dev/null 2>&1") != 0) {
    std::printf(
        "skipped: /usr/bin/python3 lacks websockets or nacl "
        "(Debian: python3-websockets python3-nacl)\n");
    return 77;
  }
  return derpd::testing::runTlsTestMain(argc, argv);
}
