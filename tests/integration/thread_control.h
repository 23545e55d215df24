// Holding one thread of derpd still while the rest of it runs (a shard
// descheduled or stuck, which SIGSTOP, stopping the whole process, cannot
// show), and reading a thread's CPU time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"

namespace derpd::testing {

// A thread of another process stopped through ptrace (PTRACE_SEIZE, then
// PTRACE_INTERRUPT) until resume() or destruction. stop() fails with
// Unavailable when this machine does not allow ptrace (the test then skips).
class StoppedThread {
 public:
  static absl::StatusOr<std::unique_ptr<StoppedThread>> stop(pid_t tid);
  ~StoppedThread() { resume(); }
  StoppedThread(const StoppedThread&) = delete;
  StoppedThread& operator=(const StoppedThread&) = delete;
  void resume();

 private:
  explicit StoppedThread(pid_t tid) : tid_(tid) {}
  pid_t tid_;
  bool attached_ = true;
};

// The thread of process pid named `name` (/proc/PID/task/TID/comm), or -1.
pid_t threadNamed(pid_t pid, std::string_view name);

// CPU time (user + system, in clock ticks) thread tid of process pid has
// used, or -1 if unreadable.
long threadCpuTicks(pid_t pid, pid_t tid);

}  // namespace derpd::testing
