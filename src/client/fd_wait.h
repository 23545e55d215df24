// Deadline-bounded readiness waits for the blocking client's non-blocking
// sockets. Any thread.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "base/clock.h"

namespace derpd::client {

// CLOCK_MONOTONIC, the scale every client deadline is on.
Nanos monotonicNow();

// Waits until fd is ready for `events` (POLLIN/POLLOUT) or the deadline
// passes; DeadlineExceeded then, with "timed out <what>".
absl::Status waitForFd(int fd, short events, Nanos deadline, std::string_view what);

}  // namespace derpd::client
