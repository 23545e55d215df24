// When the certificate manager acts: renewal a third of the lifetime before
// expiry (so 90-day certificates renew with 30 days left, 6-day ones with 2),
// spread by jitter so that a fleet started together does not renew together,
// and exponential backoff after failures. Pure functions; the caller draws
// the jitter (uniform in [0, 1)).
#pragma once

#include <cstdint>

namespace derpd::acme {

// notAfter - lifetime/3, earlier by up to lifetime/30 * jitter01.
int64_t renewalTime(int64_t notBeforeUnix, int64_t notAfterUnix, double jitter01);

// The wait after the n-th failure in a row (n >= 1): 1 minute, doubling, at
// most 3 hours, each within +-20% by jitter01.
int64_t retryDelaySeconds(int failures, double jitter01);

}  // namespace derpd::acme
