#include "acme/renewal.h"

#include <algorithm>

namespace derpd::acme {

int64_t renewalTime(int64_t notBeforeUnix, int64_t notAfterUnix, double jitter01) {
  const int64_t lifetime = std::max<int64_t>(notAfterUnix - notBeforeUnix, 0);
  const int64_t spread = static_cast<int64_t>(static_cast<double>(lifetime / 30) * jitter01);
  return notAfterUnix - lifetime / 3 - spread;
}

int64_t retryDelaySeconds(int failures, double jitter01) {
  constexpr int64_t kFirst = 60;
  constexpr int64_t kMost = 3 * 3600;
  int64_t delay = kFirst;
  for (int i = 1; i < failures && delay < kMost; ++i) delay *= 2;
  delay = std::min(delay, kMost);
  return delay + static_cast<int64_t>(static_cast<double>(delay) * 0.4 * (jitter01 - 0.5));
}

}  // namespace derpd::acme
