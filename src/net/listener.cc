#include "net/listener.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace derpd::net {
namespace {

absl::StatusOr<UniqueFd> bindOne(const SocketAddress& addr, int type, int backlog) {
  UniqueFd fd(::socket(addr.family(), type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return absl::InternalError(absl::StrCat("SO_REUSEPORT: ", strerror(errno)));
  }
  if (addr.family() == AF_INET6) {
    int zero = 0;  // dual-stack for "[::]" / ":port"
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (::bind(fd.get(), addr.get(), addr.length) != 0) {
    return absl::UnavailableError(
        absl::StrCat("bind ", addr.toString(), ": ", strerror(errno)));
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), backlog) != 0) {
    return absl::UnavailableError(
        absl::StrCat("listen ", addr.toString(), ": ", strerror(errno)));
  }
  return fd;
}

// SO_REUSEPORT would let a second server (another derpd, a stale one, derper)
// bind the same port without an error and take a share of the connections, so
// a fixed port is first claimed by a socket without it: that bind fails if
// anything holds the port. It is released just before the shards' sockets bind.
absl::Status checkPortFree(const SocketAddress& addr, int type) {
  UniqueFd fd(::socket(addr.family(), type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  // A TCP port whose only users are TIME_WAIT leftovers of our own last run is free.
  if (type == SOCK_STREAM) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (addr.family() == AF_INET6) {
    int zero = 0;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (::bind(fd.get(), addr.get(), addr.length) != 0) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat(
        "bind ", addr.toString(), ": ", strerror(err),
        err == EADDRINUSE ? " (is another derpd or derper running?)" : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ListenerSet> bindSet(const SocketAddress& addr, size_t count, int type,
                                    int backlog) {
  if (addr.port() != 0) {
    if (absl::Status st = checkPortFree(addr, type); !st.ok()) return st;
  }
  ListenerSet set;
  SocketAddress want = addr;
  for (size_t i = 0; i < count; i++) {
    auto fd = bindOne(want, type, backlog);
    if (!fd.ok()) return fd.status();
    if (i == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      getsockname(fd->get(), reinterpret_cast<sockaddr*>(&ss), &len);
      set.bound = SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      want.setPort(set.bound.port());
    }
    set.fds.push_back(std::move(*fd));
  }
  return set;
}

}  // namespace

absl::StatusOr<ListenerSet> listenTcp(const SocketAddress& addr, size_t count, int backlog) {
  return bindSet(addr, count, SOCK_STREAM, backlog);
}

absl::StatusOr<ListenerSet> listenUdp(const SocketAddress& addr, size_t count) {
  return bindSet(addr, count, SOCK_DGRAM, 0);
}

void applyTcpOptions(int fd, const TcpOptions& opts) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (opts.keepAliveSeconds > 0) {
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    int idle = opts.keepAliveSeconds;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    // Go uses the same period between probes as before the first one.
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
  }
  if (opts.userTimeoutMs > 0) {
    unsigned ms = static_cast<unsigned>(opts.userTimeoutMs);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
  }
}

}  // namespace derpd::net
