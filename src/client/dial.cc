#include "client/dial.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"

namespace derpd::client {
namespace {

// connect() on a non-blocking socket, waiting for the answer until deadline.
absl::Status connectWithin(int fd, const sockaddr* addr, socklen_t len, Nanos deadline) {
  if (::connect(fd, addr, len) == 0) return absl::OkStatus();
  if (errno != EINPROGRESS && errno != EAGAIN) {
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
  }
  if (absl::Status st = waitForFd(fd, POLLOUT, deadline, "connecting"); !st.ok()) return st;
  int err = 0;
  socklen_t errLen = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errLen);
  if (err != 0) return absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> dialTcp(const std::string& host, uint16_t port, Nanos deadline,
                            int receiveBufferBytes) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0)
    return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
  absl::Status last = absl::UnavailableError(absl::StrCat("resolve ", host, ": no address"));
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
      continue;
    }
    if (receiveBufferBytes > 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBufferBytes, sizeof(receiveBufferBytes));
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    absl::Status st = connectWithin(fd, ai->ai_addr, ai->ai_addrlen, deadline);
    if (st.ok()) {
      ::freeaddrinfo(res);
      return fd;
    }
    ::close(fd);
    last = st;
  }
  ::freeaddrinfo(res);
  return absl::Status(last.code(),
                      absl::StrCat("connect to ", host, ":", port, ": ", last.message()));
}

absl::StatusOr<int> dialUnix(const std::string& path, Nanos deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path \"", path, "\" is ", path.empty() ? "empty" : "too long"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  absl::Status st =
      connectWithin(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), deadline);
  if (!st.ok()) {
    ::close(fd);
    return absl::Status(st.code(), absl::StrCat("connect to ", path, ": ", st.message()));
  }
  return fd;
}

}  // namespace derpd::client
