// The blocking HTTP client: URLs, the response reader on every framing, and
// whole requests over real loopback TCP and unix sockets to a scripted server
// thread. (HTTPS and certificate verification are tested against pebble, a
// real ACME server, in tests/integration/acme_test.cc.)
#include "client/http_fetch.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace derpd::client {
namespace {

TEST(HttpUrl, ParsesHostPortAndTarget) {
  auto u = parseHttpUrl("https://acme.example.com/directory");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "acme.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/directory");
  EXPECT_EQ(u->hostHeader(), "acme.example.com");

  u = parseHttpUrl("http://127.0.0.1:14000?x=1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->port, 14000);
  EXPECT_EQ(u->target, "/?x=1");
  EXPECT_EQ(u->hostHeader(), "127.0.0.1:14000");

  u = parseHttpUrl("https://[::1]:8443");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->target, "/");
  EXPECT_EQ(u->hostHeader(), "[::1]:8443");
}

TEST(HttpUrl, RefusesWhatItCannotUse) {
  for (const char* bad : {"ftp://x/", "https://", "https://:443/", "https://u@h/", "https://h:0/",
                          "https://h:65536/", "https://h:12a/", "https://h/#frag", "https://::1/",
                          "https://[127.0.0.1]/", "https://h/a b", "https://h o/", "acme"}) {
    EXPECT_FALSE(parseHttpUrl(bad).ok()) << bad;
  }
}

// Feeds the text one byte at a time, then in one piece: both must agree.
HttpResponse parseAll(const std::string& text, bool head = false, bool close = false,
                      size_t limit = 1 << 20) {
  HttpResponse whole;
  for (int pass = 0; pass < 2; ++pass) {
    HttpResponseParser p(head, limit);
    if (pass == 0) {
      for (char c : text) EXPECT_TRUE(p.feed(std::string(1, c)).ok());
    } else {
      EXPECT_TRUE(p.feed(text).ok());
    }
    if (close) {
      EXPECT_TRUE(p.finish().ok());
    }
    EXPECT_TRUE(p.done());
    if (pass == 1) {
      EXPECT_EQ(p.response().body, whole.body);
    }
    whole = std::move(p.response());
  }
  return whole;
}

TEST(HttpResponseParser, ContentLength) {
  HttpResponse r = parseAll(
      "HTTP/1.1 201 Created\r\nLocation: https://ca/acct/1\r\nReplay-Nonce:  abc \r\n"
      "Content-Length: 5\r\n\r\nhello");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "hello");
  ASSERT_NE(r.header("replay-nonce"), nullptr);
  EXPECT_EQ(*r.header("replay-nonce"), "abc");
  EXPECT_EQ(*r.header("location"), "https://ca/acct/1");
  EXPECT_EQ(r.header("retry-after"), nullptr);
}

TEST(HttpResponseParser, ChunkedWithExtensionsAndTrailers) {
  HttpResponse r = parseAll(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLink: <a>;rel=\"up\"\r\nLink: <b>\r\n\r\n"
      "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n");
  EXPECT_EQ(r.body, "helloabcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(r.headerValues("link"), (std::vector<std::string>{"<a>;rel=\"up\"", "<b>"}));
}

TEST(HttpResponseParser, BodyToCloseHeadAndNoContent) {
  EXPECT_EQ(parseAll("HTTP/1.0 200 OK\r\n\r\nuntil the end", false, true).body, "until the end");
  EXPECT_EQ(parseAll("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true).body, "");
  EXPECT_EQ(parseAll("HTTP/1.1 204 No Content\r\n\r\n").status, 204);
  // An interim response is skipped.
  EXPECT_EQ(
      parseAll("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").body,
      "ok");
}

TEST(HttpResponseParser, RefusesMalformedAndOversized) {
  for (const char* bad :
       {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"}) {
    HttpResponseParser p(false, 1 << 20);
    EXPECT_FALSE(p.feed(bad).ok()) << bad;
  }
  HttpResponseParser big(false, 4);
  EXPECT_EQ(big.feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").code(),
            absl::StatusCode::kResourceExhausted);
  HttpResponseParser bigChunks(false, 4);
  EXPECT_EQ(bigChunks.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n")
                .code(),
            absl::StatusCode::kResourceExhausted);
  HttpResponseParser bigClose(false, 4);
  EXPECT_EQ(bigClose.feed("HTTP/1.1 200 OK\r\n\r\n12345").code(),
            absl::StatusCode::kResourceExhausted);
  HttpResponseParser head(false, 1 << 20);
  EXPECT_TRUE(head.feed(std::string(70 * 1024, 'a')).code() == absl::StatusCode::kDataLoss);
}

// truncate: the first maxBodyBytes of any longer body, whatever frames it,
// and done at once (the rest is never read).
TEST(HttpResponseParser, TruncatingKeepsTheFirstBytes) {
  for (const std::string& text :
       {std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n0123"),
        std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n01\r\n"
                    "FFFFFF\r\n23456"),
        std::string("HTTP/1.0 200 OK\r\n\r\n0123456789")}) {
    for (bool bytewise : {false, true}) {
      HttpResponseParser p(false, 4, /*truncate=*/true);
      if (bytewise) {
        for (char c : text) ASSERT_TRUE(p.feed(std::string(1, c)).ok()) << text;
      } else {
        ASSERT_TRUE(p.feed(text).ok()) << text;
      }
      EXPECT_TRUE(p.done()) << text;
      EXPECT_EQ(p.response().body, "0123") << text;
      EXPECT_TRUE(p.response().truncated) << text;
    }
  }
  HttpResponseParser exact(false, 4, true);
  ASSERT_TRUE(exact.feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc").ok());
  EXPECT_TRUE(exact.done());
  EXPECT_FALSE(exact.response().truncated);
}

TEST(HttpResponseParser, TruncatedResponseIsAnError) {
  HttpResponseParser p(false, 1 << 20);
  ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").ok());
  EXPECT_FALSE(p.done());
  EXPECT_FALSE(p.finish().ok());
  HttpResponseParser q(false, 1 << 20);
  ASSERT_TRUE(q.feed("HTTP/1.1 200 OK\r\n").ok());
  EXPECT_FALSE(q.finish().ok());
}

// Accepts one connection on `listenFd`, reads the request head (and a body
// of the Content-Length it names), stores it in *request, writes `reply`
// in two pieces and closes.
std::thread serveOnce(int listenFd, std::string reply, std::string* request) {
  return std::thread([listenFd, reply = std::move(reply), request] {
    int fd = ::accept(listenFd, nullptr, nullptr);
    if (fd < 0) return;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      request->append(buf, static_cast<size_t>(n));
      size_t end = request->find("\r\n\r\n");
      if (end == std::string::npos) continue;
      size_t cl = request->find("Content-Length: ");
      size_t want =
          cl == std::string::npos ? 0 : std::strtoul(request->c_str() + cl + 16, nullptr, 10);
      if (request->size() >= end + 4 + want) break;
    }
    size_t half = reply.size() / 2;
    ::send(fd, reply.data(), half, MSG_NOSIGNAL);
    ::usleep(20000);
    ::send(fd, reply.data() + half, reply.size() - half, MSG_NOSIGNAL);
    ::close(fd);
  });
}

int listenTcp(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::listen(fd, 4) != 0) {
    return -1;
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

TEST(Fetch, PostOverTcpSendsHeadersAndBody) {
  uint16_t port = 0;
  int lfd = listenTcp(&port);
  ASSERT_GE(lfd, 0);
  std::string request;
  std::thread server = serveOnce(
      lfd,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
      &request);
  HttpRequest req;
  req.method = "POST";
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/new-acct?x";
  req.headers = {{"Content-Type", "application/jose+json"}};
  req.body = "{\"k\":1}";
  auto r = fetch(req);
  server.join();
  ::close(lfd);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"a\":1}");
  EXPECT_EQ(request.rfind(
                "POST /new-acct?x HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n", 0),
            0u)
      << request;
  EXPECT_NE(request.find("\r\nContent-Length: 7\r\n"), std::string::npos) << request;
  EXPECT_NE(request.find("\r\nContent-Type: application/jose+json\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nConnection: close\r\n\r\n{\"k\":1}"), std::string::npos) << request;
}

TEST(Fetch, OverAUnixSocket) {
  std::string path = ::testing::TempDir() + "/fetch-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(lfd, 1), 0);
  std::string request;
  std::thread server =
      serveOnce(lfd, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", &request);
  HttpRequest req;
  req.url = "http://local-tailscaled.sock/localapi/v0/whois?addr=nodekey:00";
  req.unixSocket = path;
  auto r = fetch(req);
  server.join();
  ::close(lfd);
  ::unlink(path.c_str());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "no");
  EXPECT_EQ(request.rfind("GET /localapi/v0/whois?addr=nodekey:00 HTTP/1.1\r\n"
                          "Host: local-tailscaled.sock\r\n",
                          0),
            0u)
      << request;
}

TEST(Fetch, ErrorsSayWhatFailed) {
  uint16_t port = 0;
  int lfd = listenTcp(&port);
  ASSERT_GE(lfd, 0);
  ::close(lfd);  // nothing listens there now
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  auto r = fetch(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("connect"), std::string::npos) << r.status();

  // A server that accepts and never answers: the deadline ends it.
  lfd = listenTcp(&port);
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.timeout = 200 * kMillisecond;
  r = fetch(req);
  ::close(lfd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();

  // Truncated: the server closes inside the body.
  lfd = listenTcp(&port);
  std::string request;
  std::thread server =
      serveOnce(lfd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", &request);
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.timeout = 5 * kSecond;
  r = fetch(req);
  server.join();
  ::close(lfd);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("before the body ended"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace derpd::client
