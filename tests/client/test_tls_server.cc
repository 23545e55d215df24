#include "client/test_tls_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "derp/frame.h"
#include "derp/handshake.h"

namespace derpd::testing {
namespace {

constexpr int kTimeoutMs = 10'000;
constexpr std::string_view kHeadEnd = "\r\n\r\n";

std::string sslError() {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  return buf;
}

int selectAlpn(SSL*, const uint8_t** out, uint8_t* outLen, const uint8_t* in, unsigned inLen,
               void* arg) {
  auto* report = static_cast<TestTlsServerReport*>(arg);
  for (unsigned i = 0; i < inLen; i += 1u + in[i]) {
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), in[i]) == "http/1.1") {
      report->offeredHttp11 = true;
      *out = in + i + 1;
      *outLen = in[i];
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Appends what one SSL_read returns; false on close or error.
bool readMore(SSL* ssl, std::vector<uint8_t>& in) {
  uint8_t buf[64 * 1024];
  int n = SSL_read(ssl, buf, sizeof(buf));
  if (n <= 0) return false;
  in.insert(in.end(), buf, buf + n);
  return true;
}

// The length of the first whole frame in `in`, or 0 when there is none yet.
size_t wholeFrameLen(const std::vector<uint8_t>& in) {
  std::optional<derp::FrameHeader> h = derp::decodeFrameHeader(in);
  if (!h.has_value() || in.size() < derp::kFrameHeaderLen + h->length) return 0;
  return derp::kFrameHeaderLen + h->length;
}

bool writeFrame(SSL* ssl, derp::FrameType type, std::span<const uint8_t> a,
                std::span<const uint8_t> b = {}) {
  std::vector<uint8_t> f(derp::kFrameHeaderLen);
  derp::writeFrameHeader(f.data(), type, static_cast<uint32_t>(a.size() + b.size()));
  f.insert(f.end(), a.begin(), a.end());
  f.insert(f.end(), b.begin(), b.end());
  return SSL_write(ssl, f.data(), static_cast<int>(f.size())) == static_cast<int>(f.size());
}

}  // namespace

TestTlsServer::TestTlsServer(TestTlsServerConfig config) : config_(std::move(config)) {
  listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listenFd_ < 0 || ::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listenFd_, 1) != 0 ||
      ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    report_.error = absl::StrCat("listen: ", strerror(errno));
    return;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { serve(); });
}

TestTlsServer::~TestTlsServer() { finish(); }

TestTlsServerReport TestTlsServer::finish() {
  if (thread_.joinable()) thread_.join();
  if (listenFd_ >= 0) {
    ::close(listenFd_);
    listenFd_ = -1;
  }
  return report_;
}

void TestTlsServer::serve() {
  pollfd p{listenFd_, POLLIN, 0};
  if (::poll(&p, 1, kTimeoutMs) != 1) {
    report_.error = "no connection within 10 s";
    return;
  }
  int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    report_.error = absl::StrCat("accept: ", strerror(errno));
    return;
  }
  // Blocking I/O with timeouts, so a silent client cannot hang the test.
  timeval tv{kTimeoutMs / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  // 101, ServerKey and ServerInfo go out as separate records.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  serveConnection(fd);
  ::close(fd);
}

void TestTlsServer::serveConnection(int fd) {
  TestTlsServerReport& r = report_;
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), config_.maxVersion);
  SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, &r);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), config_.certChainFile.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), config_.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
    r.error = absl::StrCat("loading certificate: ", sslError());
    return;
  }
  if (!config_.extraChainCertDer.empty()) {
    const uint8_t* p = config_.extraChainCertDer.data();
    bssl::UniquePtr<X509> extra(
        d2i_X509(nullptr, &p, static_cast<long>(config_.extraChainCertDer.size())));
    if (!extra || SSL_CTX_add1_chain_cert(ctx.get(), extra.get()) != 1) {
      r.error = absl::StrCat("adding the extra chain certificate: ", sslError());
      return;
    }
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  if (SSL_accept(ssl.get()) != 1) {
    r.error = absl::StrCat("TLS handshake: ", sslError());
    return;
  }
  r.handshakeDone = true;
  r.version = SSL_get_version(ssl.get());
  if (const char* sni = SSL_get_servername(ssl.get(), TLSEXT_NAMETYPE_host_name)) r.sni = sni;

  std::vector<uint8_t> in;
  size_t headEnd;
  for (;;) {
    std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
    if (size_t end = text.find(kHeadEnd); end != std::string_view::npos) {
      headEnd = end + kHeadEnd.size();
      break;
    }
    if (!readMore(ssl.get(), in)) {
      r.error = "connection ended before the request head";
      return;
    }
  }
  r.requestHead.assign(reinterpret_cast<const char*>(in.data()), headEnd);
  in.erase(in.begin(), in.begin() + static_cast<long>(headEnd));
  r.fastStartHeader = r.requestHead.find("\r\nDerp-Fast-Start: 1\r\n") != std::string::npos;
  r.clientInfoBehindHead = wholeFrameLen(in) > 0 && in[0] == 0x02;

  const derp::NodeKey serverPub = config_.serverKey.publicKey();
  if (!r.fastStartHeader) {
    std::string response = absl::StrCat(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
        "Derp-Version: 2\r\nDerp-Public-Key: ",
        serverPub.hex(), "\r\n\r\n");
    SSL_write(ssl.get(), response.data(), static_cast<int>(response.size()));
  }
  if (!writeFrame(ssl.get(), derp::FrameType::kServerKey, derp::kMagic, serverPub.bytes)) {
    r.error = "writing ServerKey";
    return;
  }

  while (wholeFrameLen(in) == 0) {
    if (!readMore(ssl.get(), in)) {
      r.error = "connection ended before ClientInfo";
      return;
    }
  }
  size_t infoLen = wholeFrameLen(in);
  if (in[0] != 0x02 || infoLen < derp::kFrameHeaderLen + derp::kKeyLen) {
    r.error = "first frame is not a ClientInfo";
    return;
  }
  std::span<const uint8_t> body(in.data() + derp::kFrameHeaderLen, infoLen - derp::kFrameHeaderLen);
  derp::NodeKey clientKey = derp::NodeKey::fromSpan(body.first(derp::kKeyLen));
  if (!derp::openClientInfo(config_.serverKey, clientKey, body.subspan(derp::kKeyLen)).ok()) {
    r.error = "ClientInfo box does not open";
    return;
  }
  r.clientInfoOpened = true;
  r.clientKey = clientKey;
  in.erase(in.begin(), in.begin() + static_cast<long>(infoLen));

  std::string json = derp::serverInfoJson(derp::ServerInfo{});
  std::vector<uint8_t> sealed = derp::sealBox(
      config_.serverKey, clientKey,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
  if (!writeFrame(ssl.get(), derp::FrameType::kServerInfo, sealed)) {
    r.error = "writing ServerInfo";
    return;
  }

  for (;;) {
    while (size_t len = wholeFrameLen(in)) {
      if (in[0] == static_cast<uint8_t>(derp::FrameType::kSendPacket) &&
          len >= derp::kFrameHeaderLen + derp::kKeyLen) {
        std::span<const uint8_t> packet(in.data() + derp::kFrameHeaderLen + derp::kKeyLen,
                                        len - derp::kFrameHeaderLen - derp::kKeyLen);
        if (!writeFrame(ssl.get(), derp::FrameType::kRecvPacket, clientKey.bytes, packet)) {
          r.error = "writing RecvPacket";
          return;
        }
        ++r.packetsEchoed;
      }
      in.erase(in.begin(), in.begin() + static_cast<long>(len));
    }
    if (!readMore(ssl.get(), in)) return;  // the client closed: done
  }
}

}  // namespace derpd::testing
