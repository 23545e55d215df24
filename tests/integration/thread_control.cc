#include "integration/thread_control.h"

#include <sys/ptrace.h>
#include <sys/wait.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace derpd::testing {

absl::StatusOr<std::unique_ptr<StoppedThread>> StoppedThread::stop(pid_t tid) {
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
    return absl::UnavailableError(absl::StrCat("PTRACE_SEIZE: errno ", errno));
  }
  std::unique_ptr<StoppedThread> t(new StoppedThread(tid));
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
    return absl::InternalError(absl::StrCat("PTRACE_INTERRUPT: errno ", errno));
  }
  int status = 0;
  if (::waitpid(tid, &status, __WALL) != tid || !WIFSTOPPED(status)) {
    return absl::InternalError("the thread did not stop");
  }
  return t;
}

void StoppedThread::resume() {
  if (attached_) ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
  attached_ = false;
}

pid_t threadNamed(pid_t pid, std::string_view name) {
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream comm(e.path() / "comm");
    std::string line;
    std::getline(comm, line);
    pid_t tid = 0;
    if (line == name && absl::SimpleAtoi(e.path().filename().string(), &tid)) return tid;
  }
  return -1;
}

long threadCpuTicks(pid_t pid, pid_t tid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/task/", tid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 > text.size()) return -1;
  // The fields after the command name (which may hold spaces): state is the
  // first, utime and stime the 12th and 13th.
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ');
  long utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime)) {
    return -1;
  }
  return utime + stime;
}

}  // namespace derpd::testing
