// CPU time and memory of a process, as the load generators report them
// (PERFORMANCE.md: the server's CPU from /proc/PID/stat before and after the
// measured interval; the generator's own CPU so that a saturated generator is
// visible). Linux only; header-only like aead_rate.h.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace derpd::bench {

// utime + stime of every thread of `pid`, in seconds (clock-tick resolution);
// negative when the process cannot be read.
inline double processCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  // The command name may contain spaces and parentheses: fields start after
  // the last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th
  // after the state (field 3).
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string skip;
  for (int i = 3; i < 14; i++) fields >> skip;
  unsigned long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS of `pid` in KiB; negative when it cannot be read.
inline long processRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU seconds (user + system) of this process, all threads.
inline double selfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Busy and total jiffies of the given CPUs (all CPUs when empty) from
// /proc/stat: busy counts everything but idle and iowait, whoever ran.
struct CpuJiffies {
  unsigned long long busy = 0;
  unsigned long long total = 0;
};
inline CpuJiffies cpuJiffies(const std::vector<int>& cpus) {
  std::ifstream in("/proc/stat");
  std::string line;
  CpuJiffies j;
  while (std::getline(in, line)) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || line[3] < '0' || line[3] > '9') continue;
    std::istringstream fields(line.substr(3));
    int cpu = -1;
    fields >> cpu;
    bool wanted = cpus.empty();
    for (int c : cpus) wanted = wanted || c == cpu;
    if (!wanted) continue;
    unsigned long long v[8] = {};
    for (auto& x : v) fields >> x;
    const unsigned long long total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    j.total += total;
    j.busy += total - v[3] - v[4];
  }
  return j;
}

// CPU seconds of the calling thread.
inline double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The soft RLIMIT_NOFILE of `pid` from /proc/PID/limits; -1 when unknown,
// 0 when unlimited.
inline long processFileLimit(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    std::string soft;
    fields >> soft;
    if (soft == "unlimited") return 0;
    try {
      return std::stol(soft);
    } catch (...) {
      return -1;
    }
  }
  return -1;
}

// Raises RLIMIT_NOFILE to `want` (or as close as the hard limit allows);
// returns the soft limit now in force.
inline rlim_t raiseFileLimit(rlim_t want) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur >= want) return rl.rlim_cur;
  rlimit raised{want, rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? rl.rlim_max : want};
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    // Not allowed above the hard limit: take what there is.
    raised = {rl.rlim_max, rl.rlim_max};
    setrlimit(RLIMIT_NOFILE, &raised);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

}  // namespace derpd::bench
