#include "client/http_fetch.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "client/client_tls.h"
#include "client/derp_client.h"
#include "client/dial.h"
#include "client/fd_wait.h"
#include "derpd_config.h"

namespace derpd::client {
namespace {

constexpr const char* kUserAgent = "derpd/" DERPD_VERSION;

// A byte stream to the server: the socket itself, or TLS over it.
class Stream {
 public:
  Stream(int fd, std::unique_ptr<ClientTls> tls) : fd_(fd), tls_(std::move(tls)) {}

  absl::Status writeAll(absl::string_view bytes, Nanos deadline) {
    if (tls_) {
      return tls_->write({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, deadline);
    }
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (absl::Status st = waitForFd(fd_.get(), POLLOUT, deadline, "sending the request");
            !st.ok()) {
          return st;
        }
        continue;
      }
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  // 0 when the server has closed the connection.
  absl::StatusOr<size_t> read(char* buf, size_t len, Nanos deadline) {
    if (tls_) {
      absl::StatusOr<size_t> n = tls_->read({reinterpret_cast<uint8_t*>(buf), len}, deadline);
      if (!n.ok() && absl::IsUnavailable(n.status()) &&
          n.status().message() == "connection closed by server") {
        return 0;
      }
      return n;
    }
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, len, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
      }
      if (absl::Status st = waitForFd(fd_.get(), POLLIN, deadline, "waiting for the response");
          !st.ok()) {
        return st;
      }
    }
  }

 private:
  UniqueFd fd_;
  std::unique_ptr<ClientTls> tls_;  // declared after fd_: destroyed first
};

}  // namespace

TrustStore TrustStore::fromEnvironment() {
  TrustStore t;
  const char* file = std::getenv("SSL_CERT_FILE");
  const char* dir = std::getenv("SSL_CERT_DIR");
  if (file != nullptr && *file != '\0') t.caFile = file;
  if (dir != nullptr && *dir != '\0') t.caDir = dir;
  if (t.caFile.empty() && t.caDir.empty()) t.caFile = kDefaultCaFile;
  return t;
}

absl::StatusOr<HttpResponse> fetch(const HttpRequest& request, const TrustStore& trust) {
  absl::StatusOr<HttpUrl> url = parseHttpUrl(request.url);
  if (!url.ok()) return url.status();
  if (!request.unixSocket.empty() && url->tls) {
    return absl::InvalidArgumentError("an https URL over a unix socket");
  }
  const Nanos deadline = monotonicNow() + request.timeout;
  auto where = [&](const absl::Status& st) {
    return absl::Status(st.code(),
                        absl::StrCat(request.method, " ", request.url, ": ", st.message()));
  };
  absl::StatusOr<int> fd = request.unixSocket.empty() ? dialTcp(url->host, url->port, deadline)
                                                      : dialUnix(request.unixSocket, deadline);
  if (!fd.ok()) return where(fd.status());
  std::unique_ptr<ClientTls> tls;
  if (url->tls) {
    ClientOptions opts;
    opts.host = url->host;
    opts.port = url->port;
    opts.tls = true;
    opts.caFile = trust.caFile;
    opts.caDir = trust.caDir;
    opts.fastStartFromMetaCert = false;
    absl::StatusOr<std::unique_ptr<ClientTls>> t = ClientTls::handshake(*fd, opts, deadline);
    if (!t.ok()) {
      ::close(*fd);
      return where(t.status());
    }
    tls = std::move(*t);
  }
  Stream stream(*fd, std::move(tls));
  std::string head =
      absl::StrCat(request.method, " ", url->target, " HTTP/1.1\r\nHost: ", url->hostHeader(),
                   "\r\nUser-Agent: ", kUserAgent, "\r\n");
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    absl::StrAppend(&head, "Content-Length: ", request.body.size(), "\r\n");
  }
  for (const auto& [name, value] : request.headers)
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  absl::StrAppend(&head, "Connection: close\r\n\r\n");
  if (absl::Status st = stream.writeAll(head, deadline); !st.ok()) return where(st);
  if (absl::Status st = stream.writeAll(request.body, deadline); !st.ok()) return where(st);

  HttpResponseParser parser(request.method == "HEAD", request.maxBodyBytes, request.truncateBody);
  char buf[16 * 1024];
  while (!parser.done()) {
    absl::StatusOr<size_t> n = stream.read(buf, sizeof(buf), deadline);
    if (!n.ok()) return where(n.status());
    absl::Status st = *n == 0 ? parser.finish() : parser.feed(absl::string_view(buf, *n));
    if (!st.ok()) return where(st);
  }
  return std::move(parser.response());
}

}  // namespace derpd::client
