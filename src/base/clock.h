// Clock: the source of time for every component (STYLE.md rule 4).
//
// Components take a Clock& and never read the system time themselves, so tests
// can drive them with a ManualClock and never sleep. Times are nanoseconds on a
// monotonic scale; only differences are meaningful.
#pragma once

#include <cstdint>
#include <string>

namespace derpd {

using Nanos = int64_t;

constexpr Nanos kMicrosecond = 1000;
constexpr Nanos kMillisecond = 1000 * kMicrosecond;
constexpr Nanos kSecond = 1000 * kMillisecond;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos now() const = 0;
};

// CLOCK_MONOTONIC. Thread-safe.
class RealClock final : public Clock {
 public:
  Nanos now() const override;
};

// Time that moves only when a test says so. Not thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = kSecond) : now_(start) {}
  Nanos now() const override { return now_; }
  void advance(Nanos d) { now_ += d; }
  void set(Nanos t) { now_ = t; }

 private:
  Nanos now_;
};

// The wall clock in seconds since the epoch (certificate validity, ACME
// schedules); the Clock above is monotonic.
int64_t unixNow();

// "2026-12-07 14:03:05 UTC": how log lines and errors give a wall-clock time
// (certificate validity, the next ACME attempt).
std::string formatUtc(int64_t unixSeconds);

}  // namespace derpd
