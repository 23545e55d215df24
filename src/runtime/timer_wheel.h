// TimerWheel: a shard's hashed timing wheel of intrusive timers.
//
// Every shard owns one wheel and drives it from its event loop: expire() once per loop turn,
// nextDeadline() to bound how long the loop may sleep. Keep-alives, handshake deadlines, write
// and header timeouts are Timers embedded in the objects they belong to, so arming, re-arming
// and cancelling are O(1) and never allocate. The wheel and its timers belong to one shard:
// only that shard's thread may touch them.
//
// Time is cut into ticks of `tick` nanoseconds; a timer lives in the slot of its deadline tick
// modulo the slot count. Deadlines more than one revolution away share a slot with nearer ones
// and are skipped until their revolution comes round, so there is no range limit. A timer fires
// on the first expire() whose clock reading is at or after its deadline, never earlier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/clock.h"

namespace derpd {

class TimerWheel;

namespace detail {
// Links of a circular doubly-linked list. Slots and the expiry batch use bare links as list
// heads, which lets a Timer unlink itself without knowing which list holds it.
// Not copyable: an empty list points at itself, so a copy would point at the original.
struct TimerLink {
  TimerLink() = default;
  TimerLink(const TimerLink&) = delete;
  TimerLink& operator=(const TimerLink&) = delete;

  TimerLink* prev = this;
  TimerLink* next = this;
};
}  // namespace detail

// A deadline and a callback, embedded in the object that owns it. The owner must keep the
// Timer alive and in place (it cannot be copied or moved) while it is armed; destroying an
// armed Timer cancels it. The callback runs on the shard thread from TimerWheel::expire() with
// the timer already disarmed, so it may re-arm it, cancel others, or destroy the owner.
class Timer : private detail::TimerLink {
 public:
  using Callback = void (*)(Timer*, void* ctx);

  Timer(Callback cb, void* ctx) : cb_(cb), ctx_(ctx) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool armed() const { return wheel_ != nullptr; }
  // The deadline most recently armed; meaningful while armed().
  Nanos deadline() const { return deadline_; }

 private:
  friend class TimerWheel;

  Callback cb_;
  void* ctx_;
  TimerWheel* wheel_ = nullptr;  // set while armed, so the destructor can cancel
  Nanos deadline_ = 0;
  int64_t tick_ = 0;   // the tick whose slot holds the timer (never before the wheel's)
  uint32_t slot_ = 0;  // kExpiring while in expire()'s batch of due timers
};

class TimerWheel {
 public:
  // `slots` must be a power of two. The wheel reads `clock` on construction, in arm() and in
  // expire(); it borrows the clock, which must outlive it.
  explicit TimerWheel(const Clock& clock, Nanos tick = 10 * kMillisecond, size_t slots = 4096);
  // Armed timers are disarmed (not fired), so their owners may outlive the wheel.
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `t` to fire at `deadline`; an armed timer is moved. A deadline in the past fires on
  // the next expire(). A timer may belong to only one wheel at a time.
  void arm(Timer& t, Nanos deadline);
  // Disarms `t`; a no-op if it is not armed.
  void cancel(Timer& t);
  // Fires every timer whose deadline <= clock.now() and returns how many fired. Timers armed
  // by callbacks during this call fire no earlier than the next expire(), even if already due,
  // so a callback that re-arms itself for "now" cannot keep the loop spinning.
  size_t expire();
  // The earliest pending deadline (exact), or nullopt if no timer is armed. Cached: it costs
  // a scan only after the earliest timer fired or was cancelled, and that scan skips empty
  // slots 64 at a time.
  std::optional<Nanos> nextDeadline() const;
  size_t size() const { return size_; }

 private:
  using Link = detail::TimerLink;
  static constexpr uint32_t kExpiring = UINT32_MAX;

  int64_t tickOf(Nanos t) const { return t <= 0 ? 0 : t / tick_; }
  size_t slotOf(int64_t tick) const { return static_cast<size_t>(tick) & mask_; }
  void insert(Timer& t);
  void unlink(Timer& t);
  void markSlot(size_t slot);
  void clearSlotIfEmpty(size_t slot);
  // Index of the first non-empty slot at or after `from` (no wrap), or slots_.size().
  size_t findOccupied(size_t from) const;
  void forgetIfEarliest(Nanos deadline);
  Nanos scanEarliest() const;

  const Clock& clock_;
  const Nanos tick_;
  const size_t mask_;
  // Every armed timer has tick_ >= currentTick_; slots for ticks before it hold only timers of
  // later revolutions. expire() leaves it at the current tick, whose slot may hold timers due
  // later within that tick.
  int64_t currentTick_;
  size_t size_ = 0;
  std::vector<Link> slots_;
  // One bit per slot, set while the slot is non-empty, so finding the next timer skips 64 empty
  // slots per word.
  std::vector<uint64_t> occupied_;
  // Lazily maintained minimum deadline: valid while earliestKnown_; arm() lowers it, and
  // removing the timer that holds it only clears the flag.
  mutable Nanos earliest_ = 0;
  mutable bool earliestKnown_ = false;
};

}  // namespace derpd
