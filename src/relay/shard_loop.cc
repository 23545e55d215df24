#include "relay/shard_loop.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>

#include "base/log.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

constexpr uint16_t kBufferGroup = 1;
// Receive memory per shard: 8 MiB. Consumed incrementally where the kernel
// can (a receive takes only its bytes), 16 KiB buffers, so a bulk reader gets
// a TLS record per receive; else smaller buffers, so that more receives can
// wait at once before the ring runs dry (ENOBUFS, counted).
constexpr uint16_t kRecvBuffers = 512;
constexpr uint32_t kRecvBufferSize = 16 * 1024;
constexpr uint16_t kRecvBuffersWhole = 2048;
constexpr uint32_t kRecvBufferSizeWhole = 4 * 1024;
// Completions handled per loop turn before queued writes are submitted: small
// enough that a receive flood cannot starve the writers, large enough to batch.
constexpr size_t kCompletionsPerTurn = 32;

// Submission entries per shard's ring (its completion queue holds four times
// as many): 4096 up to 16 shards, then fewer as shards are added, down to 512
// at 128, so that the rings' memory (about 130 bytes per entry, pinned by the
// kernel) stays near 64Ki entries per process instead of growing with the
// shard count. More shards means fewer connections, so fewer completions per
// turn, on each; a full submission queue is submitted early, never refused.
unsigned ringEntries(size_t shards) {
  const size_t share = std::bit_floor(size_t{65536} / std::max<size_t>(shards, 1));
  return static_cast<unsigned>(std::clamp<size_t>(share, 512, 4096));
}

}  // namespace

ShardLoop::ShardLoop(uint16_t id, SharedState& shared, const Clock& clock, size_t timerSlots)
    : id_(id), shared_(shared), clock_(clock), timers_(clock, kTimerTick, timerSlots) {
  signalOp_.loop = this;
}

absl::Status ShardLoop::init() {
  auto ring = IoRing::create(ringEntries(shared_.ringFds.size()));
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  auto buffers =
      BufferRing::create(ring_->raw(), kBufferGroup, kRecvBuffers, kRecvBufferSize, true);
  if (buffers.ok() && !(*buffers)->incremental()) {
    buffers->reset();  // unregisters the group
    buffers =
        BufferRing::create(ring_->raw(), kBufferGroup, kRecvBuffersWhole, kRecvBufferSizeWhole);
  }
  if (!buffers.ok()) return buffers.status();
  buffers_ = std::move(*buffers);
  if (id_ == 0) {
    logInfo("receive buffers: %s, %u x %u KiB per shard",
            buffers_->incremental() ? "incremental" : "whole (no incremental consumption here)",
            buffers_->count(), buffers_->bufferSize() / 1024);
  }
  if (id_ == 0 && shared_.config.batchWait > 0) {
    if (ring_->features().minWait) {
      logInfo("batch wait: %dus (io_uring min_wait)", shared_.config.batchWait / kMicrosecond);
    } else {
      logWarn("--batch-wait is ignored: this kernel has no io_uring min_wait (Linux 6.13)");
    }
  }
  shared_.ringFds[id_].store(ring_->fd(), std::memory_order_release);
  return absl::OkStatus();
}

void ShardLoop::signal(const SharedState& shared, size_t to) {
  uint64_t one = 1;
  ssize_t unused = ::write(shared.wakeFds[to], &one, sizeof(one));
  (void)unused;
}

// The sending half of the eventcount: the mail is in the ring (pushed with
// release), then a full fence, then the flag. Either this load sees the
// flag the sleeper raised, or the sleeper's check after raising it (behind
// its own fence) sees the mail: no wake-up is lost, and a shard that is
// awake, busy with its turn, gets no MSG_RING it would only have to reap.
// Of several senders only the one whose exchange lowers the flag wakes it.
// The sleeper looks only for mail, so a wake-up for anything else (room in a
// ring that was full) is sent whatever the flag says.
void ShardLoop::wakeShard(size_t to, bool onlyIfAsleep) {
  if (onlyIfAsleep) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::atomic<bool>& asleep = shared_.sleeping[to].asleep;
    if (!asleep.load(std::memory_order_relaxed) || !asleep.exchange(false)) {
      wakesSkipped_++;
      return;
    }
  }
  wakesSent_++;
  if (ring_->features().msgRing) {
    ring_->wake(shared_.ringFds[to].load(std::memory_order_acquire));
  } else {
    signal(shared_, to);
  }
}

void ShardLoop::armSignalRead() {
  io_uring_sqe* s = ring_->sqe();
  io_uring_prep_read(s, shared_.wakeFds[id_], &signalOp_.value, sizeof(signalOp_.value), 0);
  IoRing::setCompletion(s, &signalOp_);
}

void ShardLoop::SignalOp::complete(int res, uint32_t) {
  if (res < 0 && res != -EINTR && res != -EAGAIN) return;
  if (services->onSignal()) loop->armSignalRead();
}

void ShardLoop::run(Services& services) {
  logDebug("shard %d: ring %s", id_, ring_->features().describe());
  signalOp_.services = &services;
  armSignalRead();
  for (;;) {
    Nanos timeout = -1;
    if (auto next = timers_.nextDeadline()) {
      timeout = std::max<Nanos>(0, *next - clock_.now());
    }
    services.beforeWait();
    if (services.hasWork() || ring_->ready() > 0) timeout = 0;
    if (Nanos most = services.maxWait(); most >= 0 && (timeout < 0 || timeout > most)) {
      timeout = most;
    }
    // The sleeping half of the eventcount (see wakeShard): raise the flag,
    // fence, then look for mail once more; with some, do not sleep.
    std::atomic<bool>& asleep = shared_.sleeping[id_].asleep;
    const bool raised = timeout != 0;
    if (raised) {
      asleep.store(true, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (services.mailWaiting()) timeout = 0;
    }
    ring_->runOnce(timeout, kCompletionsPerTurn, shared_.config.batchWait);
    if (raised) asleep.store(false, std::memory_order_relaxed);
    services.afterCompletions();
    timers_.expire();
    buffers_->commit();
    if (!services.endOfTurn()) break;
  }
}

}  // namespace derpd::relay
