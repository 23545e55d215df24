#include "runtime/io_ring.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "derpd_config.h"

#if DERPD_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

namespace derpd {
namespace {

// Newer than liburing 2.3's headers (Linux 6.13): the feature bit, and the
// extended wait argument with its min_wait_usec where 2.3 has a pad.
constexpr uint32_t kFeatMinTimeout = 1U << 15;
struct GeteventsArg {
  uint64_t sigmask;
  uint32_t sigmaskSz;
  uint32_t minWaitUsec;
  uint64_t ts;
};
static_assert(sizeof(GeteventsArg) == sizeof(io_uring_getevents_arg));

bool underValgrind() {
#if DERPD_HAVE_VALGRIND_H
  return RUNNING_ON_VALGRIND;
#else
  return false;
#endif
}

}  // namespace

std::string RingFeatures::describe() const {
  return absl::StrCat(singleIssuer ? "single_issuer " : "", deferTaskrun ? "defer_taskrun " : "",
                      coopTaskrun ? "coop_taskrun " : "", msgRing ? "msg_ring " : "no_msg_ring ",
                      cqeSkipSuccess ? "cqe_skip " : "", minWait ? "min_wait" : "");
}

bool ioUringOption(std::string_view name) {
  const char* env = std::getenv("DERPD_IO_URING");
  if (env == nullptr) return false;
  for (std::string_view rest = env; !rest.empty();) {
    size_t comma = rest.find(',');
    if (rest.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

absl::StatusOr<std::unique_ptr<IoRing>> IoRing::create(unsigned entries) {
  std::unique_ptr<IoRing> r(new IoRing());
  struct Attempt {
    unsigned flags;
    bool single, defer, coop;
  };
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, true, true, false},
      {IORING_SETUP_COOP_TASKRUN, false, false, true},
      {0, false, false, false},
  };
  int err = 0;
  const bool plainOnly = ioUringOption("plain");
  for (const Attempt& a : attempts) {
    // Under valgrind the ring is waited on with poll(2) (see waitForValgrind):
    // only a plain ring, whose task work interrupts that wait, wakes it.
    if (underValgrind() && a.flags != 0) continue;
    if (plainOnly && a.flags != 0) continue;
    io_uring_params p{};
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    err = io_uring_queue_init_params(entries, &r->ring_, &p);
    if (err == 0) {
      r->features_.singleIssuer = a.single;
      r->features_.deferTaskrun = a.defer;
      r->features_.coopTaskrun = a.coop;
      r->features_.cqeSkipSuccess = (p.features & IORING_FEAT_CQE_SKIP) != 0;
      r->features_.minWait = (p.features & kFeatMinTimeout) != 0 &&
                             (p.features & IORING_FEAT_EXT_ARG) != 0 &&
                             !ioUringOption("no_min_wait");
      break;
    }
  }
  if (err != 0) {
    return absl::UnavailableError(absl::StrCat("io_uring_queue_init: ", strerror(-err)));
  }
  if (io_uring_probe* probe = io_uring_get_probe_ring(&r->ring_)) {
    r->features_.msgRing = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    bool ok = io_uring_opcode_supported(probe, IORING_OP_ACCEPT) &&
              io_uring_opcode_supported(probe, IORING_OP_RECV) &&
              io_uring_opcode_supported(probe, IORING_OP_SENDMSG);
    io_uring_free_probe(probe);
    if (!ok) return absl::UnavailableError("io_uring lacks accept/recv/sendmsg");
  }
  return r;
}

IoRing::~IoRing() { io_uring_queue_exit(&ring_); }

io_uring_sqe* IoRing::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void IoRing::wake(int targetRingFd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_msg_ring(s, targetRingFd, 0, kWakeUserData, 0);
  io_uring_sqe_set_data64(s, 0);
  if (features_.cqeSkipSuccess) s->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

// Valgrind runs one thread at a time and does not know that io_uring_enter
// blocks, so a thread waiting in it would stop every other thread (derpd's
// main thread never gets past start-up). Under valgrind only, the wait is a
// poll(2) on the ring fd, which valgrind does know blocks. This is what makes
// instruction counts with callgrind possible (bench/callgrind.sh).
bool IoRing::waitForValgrind(Nanos timeout) {
  if (!underValgrind()) return false;
  io_uring_submit(&ring_);
  if (io_uring_cq_ready(&ring_) == 0) {
    pollfd p{ring_.ring_fd, POLLIN, 0};
    ::poll(&p, 1, timeout < 0 ? -1 : static_cast<int>((timeout + kMillisecond - 1) / kMillisecond));
  }
  io_uring_get_events(&ring_);
  return true;
}

// One io_uring_enter that submits what is queued and waits with min_wait
// (liburing 2.3 has no call for it). The SQ tail is published as liburing's
// own submit does (__io_uring_flush_sq: a plain store, no SQPOLL here); the
// ring fd is not registered, so the enter uses it directly.
void IoRing::waitBatched(Nanos timeout, unsigned waitNr, Nanos batchWait) {
  io_uring_sq& sq = ring_.sq;
  const unsigned tail = sq.sqe_tail;
  if (sq.sqe_head != tail) {
    sq.sqe_head = tail;
    __atomic_store_n(sq.ktail, tail, __ATOMIC_RELEASE);
  }
  const unsigned toSubmit = tail - __atomic_load_n(sq.khead, __ATOMIC_RELAXED);
  __kernel_timespec ts{};
  GeteventsArg arg{};
  arg.minWaitUsec = static_cast<uint32_t>(std::max<Nanos>(1, batchWait / 1000));
  if (timeout > 0) {
    ts.tv_sec = timeout / kSecond;
    ts.tv_nsec = timeout % kSecond;
    arg.ts = reinterpret_cast<uint64_t>(&ts);
  }
  ::syscall(__NR_io_uring_enter, ring_.ring_fd, toSubmit, waitNr,
            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
}

size_t IoRing::runOnce(Nanos timeout, size_t maxCompletions, Nanos batchWait) {
  if (timeout != 0 && waitForValgrind(timeout)) return dispatchReady(maxCompletions);
  io_uring_cqe* cqe = nullptr;
  if (timeout != 0 && batchWait > 0 && features_.minWait) {
    waitBatched(timeout, static_cast<unsigned>(std::min<size_t>(maxCompletions, 64)), batchWait);
  } else if (timeout == 0) {
    io_uring_submit(&ring_);
    // With DEFER_TASKRUN completions are only posted when we enter the kernel
    // asking for events; a zero-wait GETEVENTS does that without blocking.
    io_uring_get_events(&ring_);
  } else if (timeout < 0) {
    io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts{};
    ts.tv_sec = timeout / kSecond;
    ts.tv_nsec = timeout % kSecond;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  return dispatchReady(maxCompletions);
}

size_t IoRing::dispatchReady(size_t max) {
  size_t total = 0;
  while (total < max) {
    io_uring_cqe* cqes[64];
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes,
                                         static_cast<unsigned>(std::min<size_t>(64, max - total)));
    if (n == 0) break;
    for (unsigned i = 0; i < n; i++) {
      uint64_t ud = cqes[i]->user_data;
      if (ud > kWakeUserData) {
        reinterpret_cast<Completion*>(ud)->complete(cqes[i]->res, cqes[i]->flags);
      }
    }
    io_uring_cq_advance(&ring_, n);
    total += n;
  }
  return total;
}

}  // namespace derpd
