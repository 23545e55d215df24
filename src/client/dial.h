// Connecting the blocking clients' sockets: TCP to a name or address (every
// address the resolver gives, in its order, until one answers) and unix
// sockets, each bounded by a deadline. The sockets are non-blocking and
// close-on-exec; the caller owns them. Any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "base/clock.h"

namespace derpd::client {

// receiveBufferBytes > 0: SO_RCVBUF is set before connecting, so the window
// the server sees is small from the start. TCP_NODELAY is on.
absl::StatusOr<int> dialTcp(const std::string& host, uint16_t port, Nanos deadline,
                            int receiveBufferBytes = 0);

absl::StatusOr<int> dialUnix(const std::string& path, Nanos deadline);

}  // namespace derpd::client
