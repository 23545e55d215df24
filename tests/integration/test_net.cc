#include "integration/test_net.h"

#include <sched.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "derp/handshake.h"

namespace derpd::testing {
namespace {

constexpr size_t kMaxResponseHead = 64 * 1024;

Nanos now() {
  static const RealClock clock;
  return clock.now();
}

std::string errnoText(int err) { return std::string(strerror(err)); }

absl::Status waitFor(int fd, short events, Nanos deadline) {
  for (;;) {
    Nanos left = deadline - now();
    if (left <= 0) return absl::DeadlineExceededError("timed out");
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>((left + kMillisecond - 1) / kMillisecond));
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR)
      return absl::InternalError(absl::StrCat("poll: ", errnoText(errno)));
  }
}

absl::string_view absl_view(std::string_view s) { return {s.data(), s.size()}; }

bool isReset(const absl::Status& st) { return absl::IsUnavailable(st); }

// Reads a chunked body from conn's buffer onwards.
absl::StatusOr<std::string> readChunked(TcpConn& conn, Nanos deadline) {
  std::string body;
  for (;;) {
    size_t eol;
    while ((eol = conn.buffered().find("\r\n")) == std::string::npos) {
      if (absl::Status st = conn.fill(deadline); !st.ok()) return st;
    }
    std::string sizeText = conn.buffered().substr(0, conn.buffered().find_first_of(";\r"));
    size_t size = 0;
    if (!absl::SimpleHexAtoi(sizeText, &size)) {
      return absl::DataLossError(absl::StrCat("bad chunk size: ", sizeText));
    }
    conn.consume(eol + 2);
    if (size == 0) {
      // Trailers end with an empty line.
      for (;;) {
        while ((eol = conn.buffered().find("\r\n")) == std::string::npos) {
          if (absl::Status st = conn.fill(deadline); !st.ok()) return st;
        }
        conn.consume(eol + 2);
        if (eol == 0) return body;
      }
    }
    while (conn.buffered().size() < size + 2) {
      if (absl::Status st = conn.fill(deadline); !st.ok()) return st;
    }
    body.append(conn.buffered(), 0, size);
    conn.consume(size + 2);
  }
}

}  // namespace

std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

absl::StatusOr<TcpConn> TcpConn::connect(uint16_t port, int receiveBufferBytes,
                                         const char* sourceIp) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: ", errnoText(errno)));
  if (receiveBufferBytes > 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receiveBufferBytes, sizeof(receiveBufferBytes));
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (sourceIp != nullptr) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (::inet_pton(AF_INET, sourceIp, &src.sin_addr) != 1 ||
        ::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
      return absl::InternalError(absl::StrCat("bind ", sourceIp, ": ", errnoText(errno)));
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(absl::StrCat("connect: ", errnoText(errno)));
    }
    if (absl::Status st = waitFor(fd.get(), POLLOUT, now() + kIoTimeout); !st.ok()) {
      return absl::UnavailableError("connect: timed out");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return absl::UnavailableError(absl::StrCat("connect: ", errnoText(err)));
  }
  return TcpConn(std::move(fd));
}

absl::Status TcpConn::writeAll(std::string_view bytes, Nanos timeout) {
  return writeAll(asBytes(bytes), timeout);
}

absl::Status TcpConn::writeAll(std::span<const uint8_t> bytes, Nanos timeout) {
  Nanos deadline = now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("send: ", errnoText(errno)));
    }
    if (absl::Status st = waitFor(fd_.get(), POLLOUT, deadline); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status TcpConn::fill(Nanos deadline) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      buffered_.append(buf, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n == 0) return absl::UnavailableError("connection closed by peer");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("recv: ", errnoText(errno)));
    }
    if (absl::Status st = waitFor(fd_.get(), POLLIN, deadline); !st.ok()) return st;
  }
}

absl::StatusOr<std::string> TcpConn::readExact(size_t n, Nanos timeout) {
  Nanos deadline = now() + timeout;
  while (buffered_.size() < n) {
    if (absl::Status st = fill(deadline); !st.ok()) return st;
  }
  std::string out = buffered_.substr(0, n);
  consume(n);
  return out;
}

absl::StatusOr<std::string> TcpConn::readUntilClose(Nanos timeout) {
  Nanos deadline = now() + timeout;
  for (;;) {
    absl::Status st = fill(deadline);
    if (isReset(st)) return std::exchange(buffered_, {});
    if (!st.ok()) return st;
  }
}

absl::Status TcpConn::expectClosed(Nanos timeout) {
  Nanos deadline = now() + timeout;
  for (;;) {
    buffered_.clear();
    absl::Status st = fill(deadline);
    if (isReset(st)) return absl::OkStatus();
    if (!st.ok()) return absl::DeadlineExceededError("connection still open");
  }
}

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, absl_view(name))) return v;
  }
  return "";
}

bool HttpResponse::hasHeader(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) {
    return absl::EqualsIgnoreCase(h.first, absl_view(name));
  });
}

absl::StatusOr<HttpResponse> parseResponseHead(const std::string& head) {
  HttpResponse r;
  size_t lineEnd = head.find("\r\n");
  r.statusLine = head.substr(0, lineEnd);
  if (!r.statusLine.starts_with("HTTP/1.") || r.statusLine.size() < 12 ||
      !absl::SimpleAtoi(r.statusLine.substr(9, 3), &r.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", r.statusLine));
  }
  while (lineEnd != std::string::npos) {
    size_t start = lineEnd + 2;
    lineEnd = head.find("\r\n", start);
    std::string line =
        head.substr(start, lineEnd == std::string::npos ? std::string::npos : lineEnd - start);
    size_t colon = line.find(':');
    if (colon == std::string::npos) return absl::DataLossError(absl::StrCat("bad header: ", line));
    r.headers.emplace_back(line.substr(0, colon),
                           std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return r;
}

absl::StatusOr<HttpResponse> readHttpResponse(TcpConn& conn, bool noBody, Nanos timeout) {
  Nanos deadline = now() + timeout;
  size_t end;
  while ((end = conn.buffered().find("\r\n\r\n")) == std::string::npos) {
    if (conn.buffered().size() > kMaxResponseHead) {
      return absl::DataLossError("response head too large");
    }
    if (absl::Status st = conn.fill(deadline); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("reading response head: ", st.message(),
                                                  "; got: ", conn.buffered()));
    }
  }
  absl::StatusOr<HttpResponse> parsed = parseResponseHead(conn.buffered().substr(0, end));
  conn.consume(end + 4);
  if (!parsed.ok()) return parsed.status();
  HttpResponse r = *std::move(parsed);
  if (noBody || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
  if (std::string cl = r.header("Content-Length"); !cl.empty()) {
    size_t len = 0;
    if (!absl::SimpleAtoi(cl, &len)) return absl::DataLossError("bad Content-Length");
    absl::StatusOr<std::string> body = conn.readExact(len, std::max<Nanos>(deadline - now(), 0));
    if (!body.ok()) return body.status();
    r.body = *std::move(body);
    return r;
  }
  if (absl::EqualsIgnoreCase(r.header("Transfer-Encoding"), "chunked")) {
    absl::StatusOr<std::string> body = readChunked(conn, deadline);
    if (!body.ok()) return body.status();
    r.body = *std::move(body);
    return r;
  }
  absl::StatusOr<std::string> rest = conn.readUntilClose(std::max<Nanos>(deadline - now(), 0));
  if (!rest.ok()) return rest.status();
  r.body = *std::move(rest);
  return r;
}

absl::StatusOr<HttpResponse> httpExchange(uint16_t port, std::string_view rawRequest,
                                          Nanos timeout) {
  absl::StatusOr<TcpConn> conn = TcpConn::connect(port);
  if (!conn.ok()) return conn.status();
  if (absl::Status st = conn->writeAll(rawRequest, timeout); !st.ok()) return st;
  return readHttpResponse(*conn, rawRequest.starts_with("HEAD "), timeout);
}

absl::StatusOr<HttpResponse> httpGet(uint16_t port, std::string_view path,
                                     std::string_view extraHeaders, Nanos timeout) {
  std::string request =
      absl::StrCat("GET ", std::string(path), " HTTP/1.1\r\nHost: 127.0.0.1:", port, "\r\n",
                   std::string(extraHeaders), "Connection: close\r\n\r\n");
  return httpExchange(port, request, timeout);
}

std::string derpUpgradeRequest(uint16_t port, bool fastStart) {
  return absl::StrCat("GET /derp HTTP/1.1\r\nHost: 127.0.0.1:", port,
                      "\r\nUser-Agent: derpd-test\r\nConnection: Upgrade\r\n",
                      fastStart ? "Derp-Fast-Start: 1\r\n" : "", "Upgrade: DERP\r\n\r\n");
}

absl::StatusOr<derp::NodeKey> rawUpgrade(TcpConn& conn, uint16_t port, Nanos timeout,
                                         std::span<const uint8_t> pipelined) {
  Nanos deadline = now() + timeout;
  std::string request = derpUpgradeRequest(port);
  request.append(reinterpret_cast<const char*>(pipelined.data()), pipelined.size());
  if (absl::Status st = conn.writeAll(request, timeout); !st.ok()) return st;
  absl::StatusOr<HttpResponse> resp = readHttpResponse(conn, true, timeout);
  if (!resp.ok()) return resp.status();
  if (resp->status != 101) {
    return absl::FailedPreconditionError(absl::StrCat("upgrade refused: ", resp->statusLine));
  }
  absl::StatusOr<RawFrame> f = readRawFrame(conn, std::max<Nanos>(deadline - now(), 0));
  if (!f.ok()) return f.status();
  if (f->type != static_cast<uint8_t>(derp::FrameType::kServerKey)) {
    return absl::DataLossError(
        absl::StrCat("first frame has type ", static_cast<int>(f->type), ", not ServerKey"));
  }
  std::span<const uint8_t> body = asBytes(f->body);
  if (body.size() < derp::kMagic.size() + derp::kKeyLen ||
      !std::equal(derp::kMagic.begin(), derp::kMagic.end(), body.begin())) {
    return absl::DataLossError("ServerKey magic mismatch or frame too short");
  }
  return derp::NodeKey::fromSpan(body.subspan(derp::kMagic.size(), derp::kKeyLen));
}

absl::StatusOr<RawFrame> readRawFrame(TcpConn& conn, Nanos timeout) {
  Nanos deadline = now() + timeout;
  while (conn.buffered().size() < derp::kFrameHeaderLen) {
    if (absl::Status st = conn.fill(deadline); !st.ok()) return st;
  }
  std::optional<derp::FrameHeader> h = derp::decodeFrameHeader(asBytes(conn.buffered()));
  size_t total = derp::kFrameHeaderLen + h->length;
  while (conn.buffered().size() < total) {
    if (absl::Status st = conn.fill(deadline); !st.ok()) return st;
  }
  RawFrame f;
  f.type = h->type;
  f.body = conn.buffered().substr(derp::kFrameHeaderLen, h->length);
  conn.consume(total);
  return f;
}

std::vector<uint8_t> frameHeaderBytes(uint8_t type, uint32_t length) {
  return {type, static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
}

std::vector<uint8_t> frameBytes(uint8_t type, std::span<const uint8_t> body) {
  std::vector<uint8_t> out = frameHeaderBytes(type, static_cast<uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> clientInfoFrameBytes(const derp::PrivateKey& key,
                                          const derp::NodeKey& serverKey,
                                          std::string_view plaintext) {
  derp::NodeKey pub = key.publicKey();
  std::vector<uint8_t> body(pub.bytes.begin(), pub.bytes.end());
  std::vector<uint8_t> sealed = derp::sealBox(key, serverKey, asBytes(plaintext));
  body.insert(body.end(), sealed.begin(), sealed.end());
  return frameBytes(static_cast<uint8_t>(derp::FrameType::kClientInfo), body);
}

std::string enterOwnNetworkNamespace() {
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::StrCat("cannot make a network namespace here (unshare: ", strerror(errno), ")");
  }
  if (std::system("ip link set lo up >/dev/null 2>&1") != 0) {
    return "cannot bring up loopback in the new namespace (ip link set lo up)";
  }
  return {};
}

}  // namespace derpd::testing
