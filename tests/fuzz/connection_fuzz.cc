// Stateful libFuzzer target: one connection's whole life, from the first byte
// of its HTTP request through the upgrade to DERP frames, against a real
// relay::Server (one shard, io_uring, real sockets) running in this process,
// so its code is instrumented and guides the fuzzer.
//
// Input: a mode byte, then the bytes the client sends.
//   mode even: plain HTTP; odd: TLS (a BoringSSL client handshakes first with
//   the server's fixed self-signed certificate, then the bytes go through
//   SSL_write).
// Wherever the bytes hold the token "\xff" "CI" "\xff", the harness puts a valid
// ClientInfo frame sealed with fixed keys, so the fuzzer reaches the states
// after the handshake without forging crypto. The client then reads until the
// server closes or falls silent (bounded), and closes. Nothing the bytes do
// may crash the server or trip a sanitizer, and it must go on serving: every
// 64th input is followed by a clean handshake that has to succeed.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "relay/server.h"
#include "tls/certificate.h"
#include "tls/server_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

using namespace derpd;

constexpr std::string_view kToken = "\xff" "CI" "\xff";
constexpr int kIoMillis = 500;   // per input: writing, and reading what comes back
constexpr int kIdleMillis = 20;  // a server silent this long is waiting for more
constexpr uint64_t kCheckEvery = 64;

derp::PrivateKey fixedKey(uint8_t first) {
  derp::PrivateKey k;
  for (size_t i = 0; i < k.bytes.size(); i++) k.bytes[i] = static_cast<uint8_t>(first + i);
  return k;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "connection_fuzz: %s\n", what);
  std::abort();
}

struct Harness {
  std::unique_ptr<tls::ServerTls> tls;
  std::unique_ptr<relay::Server> plain;
  std::unique_ptr<relay::Server> secure;
  bssl::UniquePtr<SSL_CTX> clientCtx;
  std::vector<uint8_t> clientInfo;  // the frame the token stands for
  uint64_t inputs = 0;

  Harness() {
    const derp::PrivateKey serverKey = fixedKey(0x01);
    const derp::PrivateKey clientKey = fixedKey(0x21);
    auto cert = tls::generateSelfSignedIp("127.0.0.1", std::time(nullptr));
    if (!cert.ok()) die("certificate");
    auto set = std::make_shared<tls::CertSet>();
    set->certs.push_back(*std::move(cert));
    auto t = tls::ServerTls::create(set);
    if (!t.ok()) die("server TLS");
    tls = *std::move(t);
    for (bool withTls : {false, true}) {
      relay::Server::Options o;
      o.relay.serverKey = serverKey;
      o.relay.handshakeTimeout = 2 * kSecond;
      o.relay.headerTimeout = 2 * kSecond;
      o.listen = *net::parseListenAddress("127.0.0.1:0");
      o.shards = 1;
      if (withTls) o.tls = tls.get();
      auto s = std::make_unique<relay::Server>(std::move(o));
      if (!s->start().ok()) die("server start");
      (withTls ? secure : plain) = std::move(s);
    }
    clientCtx.reset(SSL_CTX_new(TLS_method()));
    SSL_CTX_set_verify(clientCtx.get(), SSL_VERIFY_NONE, nullptr);
    derp::ClientInfo info;
    info.version = 2;
    const std::string json = derp::clientInfoJson(info);
    const std::vector<uint8_t> sealed =
        derp::sealBox(clientKey, serverKey.publicKey(),
                      {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
    clientInfo = derp::encodeFrame(derp::ClientInfoFrame{clientKey.publicKey(), sealed});
  }

  // Retries what a loaded machine makes transient (CI runs this beside
  // tests that open thousands of loopback connections: no free local port
  // for a moment); a refusal that lasts half a second still ends the run,
  // with the error.
  static int connectTo(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (int attempt = 0;; attempt++) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) die("socket");
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) break;
      const int err = errno;
      ::close(fd);
      const bool transient = err == EADDRNOTAVAIL || err == EAGAIN || err == EINTR ||
                             err == ECONNREFUSED || err == ETIMEDOUT;
      if (!transient || attempt == 50) {
        std::fprintf(stderr, "connection_fuzz: connect to 127.0.0.1:%u: %s (attempt %d)\n", port,
                     std::strerror(err), attempt + 1);
        die("connect");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }

  // The client's bytes with every token replaced by the ClientInfo frame.
  std::vector<uint8_t> expand(std::string_view in) const {
    std::vector<uint8_t> out;
    out.reserve(in.size() + clientInfo.size());
    for (size_t at = 0; at < in.size();) {
      size_t hit = in.find(kToken, at);
      size_t end = hit == std::string_view::npos ? in.size() : hit;
      out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(at),
                 in.begin() + static_cast<std::ptrdiff_t>(end));
      if (hit == std::string_view::npos) break;
      out.insert(out.end(), clientInfo.begin(), clientInfo.end());
      at = hit + kToken.size();
    }
    return out;
  }

  // One connection: sends the bytes (through TLS if withTls), then reads what
  // the server answers until it closes, falls silent for kIdleMillis, or
  // `stop` shows up; then closes. Returns what it read.
  std::string converse(bool withTls, const std::vector<uint8_t>& bytes,
                       std::string_view stop = {}) {
    int fd = connectTo((withTls ? secure : plain)->boundAddress().port());
    using Clock = std::chrono::steady_clock;
    const auto until = Clock::now() + std::chrono::milliseconds(kIoMillis);
    std::string got;
    bssl::UniquePtr<SSL> ssl;
    if (withTls) {
      ssl.reset(SSL_new(clientCtx.get()));
      SSL_set_fd(ssl.get(), fd);
      int r;
      // libFuzzer's timers interrupt blocking calls: retry those.
      while ((r = SSL_connect(ssl.get())) != 1 && errno == EINTR &&
             SSL_get_error(ssl.get(), r) == SSL_ERROR_WANT_READ) {
      }
      if (r != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        std::fprintf(stderr, "connection_fuzz: SSL_connect: %d %d %s errno %d\n", r,
                     SSL_get_error(ssl.get(), r), why, errno);
        die("TLS handshake with our own server failed");
      }
    }
    // Writes are bounded by SO_SNDTIMEO (the server may stop reading), reads
    // by SO_RCVTIMEO (the idle limit).
    timeval sendLimit{0, kIoMillis * 1000};
    timeval idle{0, kIdleMillis * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendLimit, sizeof(sendLimit));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof(idle));
    for (size_t at = 0; at < bytes.size() && Clock::now() < until;) {
      const size_t chunk = std::min<size_t>(bytes.size() - at, 16384);
      errno = 0;
      ssize_t n = withTls ? SSL_write(ssl.get(), bytes.data() + at, static_cast<int>(chunk))
                          : ::send(fd, bytes.data() + at, chunk, MSG_NOSIGNAL);
      if (n <= 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the server closed (bad input) or stopped reading
      at += static_cast<size_t>(n);
    }
    char buf[4096];
    while (Clock::now() < until) {
      errno = 0;
      ssize_t n = withTls ? SSL_read(ssl.get(), buf, sizeof(buf)) : ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0 && errno == EINTR) continue;
      if (n <= 0) break;  // closed, or silent for kIdleMillis
      got.append(buf, static_cast<size_t>(n));
      if (!stop.empty() && got.find(stop) != std::string::npos) break;
    }
    ::close(fd);
    return got;
  }

  // A clean upgrade and handshake must still get the server's key.
  void checkStillServes(bool withTls) {
    std::string req =
        "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n";
    std::vector<uint8_t> bytes(req.begin(), req.end());
    bytes.insert(bytes.end(), clientInfo.begin(), clientInfo.end());
    std::string got = converse(withTls, bytes, "101 Switching Protocols");
    if (got.find("101 Switching Protocols") == std::string::npos) {
      std::fprintf(stderr, "connection_fuzz: the clean handshake got %zu bytes: %.200s\n",
                   got.size(), got.c_str());
      die("a clean handshake after fuzzed input got no upgrade");
    }
  }
};

Harness& harness() {
  static Harness* h = new Harness();  // lives as long as the process (its shards do)
  return *h;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  harness();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Harness& h = harness();
  const bool withTls = data[0] & 1;
  std::vector<uint8_t> bytes =
      h.expand(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  h.converse(withTls, bytes);
  if (++h.inputs % kCheckEvery == 0) h.checkStillServes(withTls);
  return 0;
}
