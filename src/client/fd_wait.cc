#include "client/fd_wait.h"

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace derpd::client {

Nanos monotonicNow() {
  static const RealClock clock;
  return clock.now();
}

absl::Status waitForFd(int fd, short events, Nanos deadline, std::string_view what) {
  for (;;) {
    Nanos left = deadline - monotonicNow();
    if (left <= 0)
      return absl::DeadlineExceededError(absl::StrCat("timed out ", std::string(what)));
    pollfd p{fd, events, 0};
    int ms = static_cast<int>((left + kMillisecond - 1) / kMillisecond);
    int n = ::poll(&p, 1, ms);
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR)
      return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
  }
}

}  // namespace derpd::client
