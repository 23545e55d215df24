// What one address, or everyone together, may open: the process-wide accept
// rate (-accept-connection-limit/-burst, derper's token bucket) and the count
// of connections per source address (--max-conns-per-ip). Shared by every
// shard; any thread. Internal to src/relay (admission.cc uses them).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "base/clock.h"

namespace derpd::relay {

// A token bucket of `burst` tokens refilled at `perSecond`, as Go's
// rate.Limiter.Allow (derper's), kept as one atomic: the time at which the
// bucket would be full again (GCRA). Lock-free; accepts on every shard take
// from it.
class AcceptRate {
 public:
  // perSecond infinite (derper's default): unlimited.
  void configure(double perSecond, int64_t burst) {
    if (!(perSecond < std::numeric_limits<double>::infinity())) {
      interval_ = 0;
      return;
    }
    const double interval = 1e9 / perSecond;
    interval_ = interval >= static_cast<double>(kCap)
                    ? kCap
                    : std::max<int64_t>(1, static_cast<int64_t>(interval));
    if (burst <= 0) {
      tolerance_ = -1;  // nothing ever (Go: a zero burst allows no event)
    } else if (burst - 1 >= kCap / interval_) {
      tolerance_ = kCap;
    } else {
      tolerance_ = (burst - 1) * interval_;
    }
  }
  bool limited() const { return interval_ != 0; }
  // Takes a token if one is there.
  bool allow(Nanos now) {
    if (interval_ == 0) return true;
    int64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t base = tat > now ? tat : now;
      if (base - now > tolerance_) return false;
      if (tat_.compare_exchange_weak(tat, base + interval_, std::memory_order_relaxed)) return true;
    }
  }

 private:
  static constexpr int64_t kCap = std::numeric_limits<int64_t>::max() / 4;
  int64_t interval_ = 0;   // ns a token takes to come back; 0: unlimited
  int64_t tolerance_ = 0;  // how far ahead of now the full time may run: (burst-1) tokens
  std::atomic<int64_t> tat_{std::numeric_limits<int64_t>::min() / 4};
};

// Open connections per source address (IPv4 mapped into IPv6), in 16
// stripes, each its own lock: taken once at accept and once at reap.
class PerIpCounts {
 public:
  using Ip = std::array<uint8_t, 16>;
  // False (and nothing counted) when ip already has `max` open.
  bool acquire(const Ip& ip, uint32_t max) {
    Stripe& s = stripe(ip);
    std::lock_guard lock(s.mu);
    uint32_t& n = s.counts[ip];
    if (n >= max) {
      if (n == 0) s.counts.erase(ip);
      return false;
    }
    n++;
    return true;
  }
  void release(const Ip& ip) {
    Stripe& s = stripe(ip);
    std::lock_guard lock(s.mu);
    auto it = s.counts.find(ip);
    if (it == s.counts.end()) return;
    if (--it->second == 0) s.counts.erase(it);
  }

 private:
  struct Stripe {
    std::mutex mu;
    absl::flat_hash_map<Ip, uint32_t> counts;
  };
  Stripe& stripe(const Ip& ip) { return stripes_[(ip[15] ^ ip[14] ^ ip[13]) & 15]; }
  std::array<Stripe, 16> stripes_;
};

}  // namespace derpd::relay
