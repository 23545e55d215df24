#include "base/clock.h"

#include <ctime>

#include "absl/time/time.h"

#include <time.h>

namespace derpd {

Nanos RealClock::now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kSecond + ts.tv_nsec;
}

int64_t unixNow() { return static_cast<int64_t>(std::time(nullptr)); }

std::string formatUtc(int64_t unixSeconds) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(unixSeconds),
                          absl::UTCTimeZone());
}

}  // namespace derpd
