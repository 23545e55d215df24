// -rate-config: derper's per-client receive limit. A token bucket per client
// (mesh peers exempt) charged by each frame's length before its body is read;
// a client that runs out is not read from (TCP pushes back) until its tokens
// are back. The limit is set at start and on SIGHUP and taken up by every
// client, connected ones included, at its next frame. Internal to src/relay.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "derp/frame.h"
#include "derp/key.h"

namespace derpd::relay {

// derper's minRateLimitTokenBucketSize: the largest SendPacket frame. A
// smaller burst is raised to it and no frame is charged more.
inline constexpr uint64_t kMinRateBurst = derp::kMaxPacketSize + derp::kKeyLen;

struct RateConfig {
  uint64_t bytesPerSecond = 0;  // 0: no limit
  uint64_t burst = 0;
  bool operator==(const RateConfig&) const = default;
};

// derper's RateConfig JSON ({"PerClientRateLimitBytesPerSec": N,
// "PerClientRateBurstBytes": N}; names in any case, other fields ignored), as
// applied: a zero rate turns the limit off, a burst is at least kMinRateBurst.
absl::StatusOr<RateConfig> parseRateConfig(absl::string_view json);
absl::StatusOr<RateConfig> loadRateConfig(const std::string& path);

// The current limit, shared by the shards: set from the main thread, read by
// a shard when the generation it saw last has changed.
class RateLimitSetting {
 public:
  void set(const RateConfig& c) {
    {
      std::lock_guard lock(mu_);
      current_ = c;
    }
    gen_.fetch_add(1, std::memory_order_release);
  }
  uint32_t generation() const { return gen_.load(std::memory_order_acquire); }
  RateConfig get() const {
    std::lock_guard lock(mu_);
    return current_;
  }

 private:
  mutable std::mutex mu_;
  RateConfig current_;
  std::atomic<uint32_t> gen_{0};
};

// One client's bucket (Go's rate.Limiter, ReserveN then wait): a charge may
// take it below zero; the wait is until it is back at zero.
struct TokenBucket {
  RateConfig config;
  double tokens = 0;
  Nanos last = 0;

  void reset(const RateConfig& c, Nanos now) {
    config = c;
    tokens = static_cast<double>(c.burst);
    last = now;
  }
  // Charges n bytes; returns how long to wait before reading on (0: none).
  Nanos take(uint64_t n, Nanos now) {
    if (config.bytesPerSecond == 0) return 0;
    const double rate = static_cast<double>(config.bytesPerSecond);
    tokens += rate * static_cast<double>(now - last) / kSecond;
    if (tokens > static_cast<double>(config.burst)) tokens = static_cast<double>(config.burst);
    last = now;
    tokens -= static_cast<double>(n < kMinRateBurst ? n : kMinRateBurst);
    if (tokens >= 0) return 0;
    return static_cast<Nanos>(-tokens / rate * kSecond) + 1;
  }
};

}  // namespace derpd::relay
