// Listening sockets for the shards: one SO_REUSEPORT socket per shard on the
// same address, so the kernel spreads new connections across shards.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "net/socket_address.h"

namespace derpd::net {

// Binds `count` TCP listeners. The first binds the requested port (0 picks
// one); the rest bind the port it got. Returns the sockets and the bound
// address (with the real port).
struct ListenerSet {
  std::vector<UniqueFd> fds;
  SocketAddress bound;
};
absl::StatusOr<ListenerSet> listenTcp(const SocketAddress& addr, size_t count, int backlog = 4096);

// Binds `count` UDP sockets with SO_REUSEPORT on the same address, like
// listenTcp: the kernel spreads datagrams across them by source.
absl::StatusOr<ListenerSet> listenUdp(const SocketAddress& addr, size_t count);

struct TcpOptions {
  int keepAliveSeconds = 600;   // TCP_KEEPIDLE; 0 disables keep-alive
  int userTimeoutMs = 15000;    // TCP_USER_TIMEOUT; 0 leaves the kernel default
};
// TCP_NODELAY, keep-alive and user timeout as derper's flags say. Failures are
// ignored: the connection still works without them. Applied to the listening
// sockets, from which Linux copies all five into every accepted socket, and
// to dialled sockets.
void applyTcpOptions(int fd, const TcpOptions& opts);

}  // namespace derpd::net
