// /debug/varz: the shards' counters under the names derper exports through
// expvar (derp_*, stun_*, ...), in the Prometheus text format derper's
// /debug/varz serves, so dashboards built for derper keep working. Counters
// derpd does not have are left out rather than faked. Any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "relay/counters.h"

namespace derpd::relay {

std::string renderVarz(std::span<ShardCounters* const> shards, int64_t startUnixSeconds,
                       int64_t nowUnixSeconds);

}  // namespace derpd::relay
