// IoRing: one io_uring instance, owned by one shard thread.
//
// Every SQE's user_data is a Completion*; the loop peeks a batch of CQEs,
// calls complete() on each and advances once. Two reserved user_data values:
// 0 (no completion wanted) and kWakeUserData (a MSG_RING wake-up from another
// shard; the loop drains its mailbox every turn, so the CQE itself carries no
// work). Only the owning thread may call any method (SINGLE_ISSUER).
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/clock.h"

namespace derpd {

class Completion {
 public:
  virtual void complete(int res, uint32_t flags) = 0;

 protected:
  ~Completion() = default;
};

constexpr uint64_t kWakeUserData = 1;

struct RingFeatures {
  bool singleIssuer = false;
  bool deferTaskrun = false;
  bool coopTaskrun = false;
  bool msgRing = false;
  bool cqeSkipSuccess = false;
  bool minWait = false;  // io_uring_enter's min_wait_usec (IORING_FEAT_MIN_TIMEOUT, 6.13)
  std::string describe() const;
};

// DERPD_IO_URING, a comma-separated list of features to do without, as on
// older kernels: "plain" (no COOP/DEFER_TASKRUN ring flags), "whole" (no
// incremental consumption of receive buffers). A diagnostic switch, and how
// the tests reach those modes on a newer kernel.
bool ioUringOption(std::string_view name);

class IoRing {
 public:
  // Tries SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN, then plain setup.
  static absl::StatusOr<std::unique_ptr<IoRing>> create(unsigned entries);
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // A free SQE; submits pending ones first when the queue is full.
  io_uring_sqe* sqe();
  static void setCompletion(io_uring_sqe* sqe, Completion* c) {
    io_uring_sqe_set_data(sqe, c);
  }

  // Submits pending SQEs and waits until at least one CQE is ready or the
  // timeout passes (timeout < 0: wait indefinitely; 0: do not wait). Then
  // dispatches ready CQEs, at most maxCompletions of them (the rest stay for
  // the next turn, so a flood of receives cannot starve the writes that the
  // end of a turn submits). Returns the number dispatched.
  //
  // batchWait > 0 (and the kernel has min_wait): a wait that would sleep
  // first lets completions gather: it returns once maxCompletions are ready,
  // or batchWait after it began with at least one ready, or at the timeout.
  // A completion arriving after batchWait has passed wakes it at once, so an
  // idle ring adds no latency; a busy one (timeout 0) never waits.
  size_t runOnce(Nanos timeout, size_t maxCompletions = SIZE_MAX, Nanos batchWait = 0);
  // Submits queued SQEs now (normally runOnce does).
  void submit() { io_uring_submit(&ring_); }
  // CQEs ready now (without entering the kernel).
  unsigned ready() { return io_uring_cq_ready(&ring_); }
  // Completions the kernel had to drop for want of CQ room (its overflow count).
  unsigned cqOverflow() const { return IO_URING_READ_ONCE(*ring_.cq.koverflow); }

  // Queues a MSG_RING wake-up to another ring (no CQE for us on success).
  void wake(int targetRingFd);

  int fd() const { return ring_.ring_fd; }
  io_uring* raw() { return &ring_; }
  const RingFeatures& features() const { return features_; }

 private:
  IoRing() = default;
  size_t dispatchReady(size_t max);
  bool waitForValgrind(Nanos timeout);
  void waitBatched(Nanos timeout, unsigned waitNr, Nanos batchWait);

  io_uring ring_{};
  RingFeatures features_;
};

}  // namespace derpd
