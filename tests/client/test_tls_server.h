// TestTlsServer: a one-connection DERP server over BoringSSL TLS, for testing
// the client's TLS without derpd.
//
// It listens on 127.0.0.1 port 0, accepts one connection on its own thread,
// handshakes, reads the /derp upgrade, answers 101 (unless fast start was
// asked for) and ServerKey, opens the ClientInfo, sends ServerInfo, and then
// echoes every SendPacket back as a RecvPacket from the sender. What it saw is
// returned by finish(). The test thread only calls port() and finish().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "derp/key.h"

namespace derpd::testing {

struct TestTlsServerConfig {
  std::string certChainFile;               // PEM, leaf first
  std::string keyFile;                     // PEM key of the leaf
  std::vector<uint8_t> extraChainCertDer;  // appended to the chain when not empty (meta-cert)
  uint16_t maxVersion = 0;                 // TLS1_2_VERSION or TLS1_3_VERSION
  derp::PrivateKey serverKey;
};

// What the server observed on its one connection.
struct TestTlsServerReport {
  std::string error;  // first failure on the server side; empty when none
  bool handshakeDone = false;
  std::string version;         // negotiated, e.g. "TLSv1.3"
  std::string sni;             // empty when the client sent none
  bool offeredHttp11 = false;  // ALPN
  std::string requestHead;     // up to and including the blank line
  bool fastStartHeader = false;
  // A whole ClientInfo frame was already behind the request head in the read
  // that completed the head (the client wrote them together).
  bool clientInfoBehindHead = false;
  bool clientInfoOpened = false;
  std::optional<derp::NodeKey> clientKey;
  int packetsEchoed = 0;
};

class TestTlsServer {
 public:
  explicit TestTlsServer(TestTlsServerConfig config);
  ~TestTlsServer();

  uint16_t port() const { return port_; }
  // Waits for the connection to end (the client closed it, or 10 s passed)
  // and returns what the server saw.
  TestTlsServerReport finish();

 private:
  void serve();
  void serveConnection(int fd);

  TestTlsServerConfig config_;
  int listenFd_ = -1;
  uint16_t port_ = 0;
  TestTlsServerReport report_;
  std::thread thread_;
};

}  // namespace derpd::testing
