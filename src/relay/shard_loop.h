// ShardLoop: one shard's event loop, apart from what the shard serves. It owns
// the shard's io_uring ring (created on the shard's thread: the ring is
// SINGLE_ISSUER) with its provided receive buffers, the timer wheel, the
// eventfd other threads write to reach this shard, the way this shard wakes
// others, and the order of a turn:
//
//   wait for completions (no longer than the next timer, not at all when the
//   services have work) -> handle up to kCompletionsPerTurn of them ->
//   services.afterCompletions (mail) -> expire timers -> return receive
//   buffers -> services.endOfTurn (writes, reaping, stats; false: leave).
//
// ShardServer is its Services. Only the shard's thread may call it, except
// signal().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "base/clock.h"
#include "runtime/buffer_ring.h"
#include "runtime/io_ring.h"
#include "runtime/timer_wheel.h"

namespace derpd::relay {

struct SharedState;

class ShardLoop {
 public:
  static constexpr Nanos kTimerTick = 10 * kMillisecond;

  class Services {
   public:
    // Work that must not wait for a completion (writes queued this turn).
    virtual bool hasWork() = 0;
    // Mail from another shard not taken yet (looked at just before sleeping).
    virtual bool mailWaiting() = 0;
    // The longest the loop may sleep (-1: until a completion or timer).
    virtual Nanos maxWait() = 0;
    // Before the wait: anything the services must look at every turn.
    virtual void beforeWait() = 0;
    // The eventfd was written: a stop, a drain, new mesh targets, or (without
    // MSG_RING) mail. Returns whether to keep listening.
    virtual bool onSignal() = 0;
    virtual void afterCompletions() = 0;
    // The rest of the turn; false: leave the loop.
    virtual bool endOfTurn() = 0;

   protected:
    ~Services() = default;
  };

  ShardLoop(uint16_t id, SharedState& shared, const Clock& clock, size_t timerSlots);
  ShardLoop(const ShardLoop&) = delete;
  ShardLoop& operator=(const ShardLoop&) = delete;

  // On the shard's thread: the ring and its receive buffers; publishes the
  // ring fd in shared.ringFds (for MSG_RING).
  absl::Status init();
  // Turns until services.endOfTurn() says to leave.
  void run(Services& services);

  // Wakes shard `to` from its wait (mail for it, or room for its mail):
  // MSG_RING where the kernel has it, else its eventfd. For mail, only if it
  // sleeps (the eventcount in run()); room for its mail: onlyIfAsleep false,
  // since a sender about to sleep looks for mail, not for room.
  void wakeShard(size_t to, bool onlyIfAsleep = true);
  // wakeShard calls that woke a sleeping shard, and those that found it awake.
  uint64_t wakesSent() const { return wakesSent_; }
  uint64_t wakesSkipped() const { return wakesSkipped_; }
  // Any thread: writes shard `to`'s eventfd.
  static void signal(const SharedState& shared, size_t to);

  IoRing& ring() { return *ring_; }
  BufferRing& buffers() { return *buffers_; }
  TimerWheel& timers() { return timers_; }
  const Clock& clock() const { return clock_; }

 private:
  struct SignalOp final : Completion {
    void complete(int res, uint32_t flags) override;
    ShardLoop* loop = nullptr;
    Services* services = nullptr;
    uint64_t value = 0;
  };
  void armSignalRead();

  uint16_t id_;
  uint64_t wakesSent_ = 0;
  uint64_t wakesSkipped_ = 0;
  SharedState& shared_;
  const Clock& clock_;
  std::unique_ptr<IoRing> ring_;
  std::unique_ptr<BufferRing> buffers_;
  TimerWheel timers_;
  SignalOp signalOp_;
};

}  // namespace derpd::relay
