// CPU pinning for derp-bench: taskset-style CPU lists ("0", "1-3,6"), the
// harness's own threads (set once on the main thread before any other thread
// starts, so every thread inherits it) and every thread of the server process
// (sched_setaffinity on each tid in /proc/PID/task). Linux only.
#pragma once

#include <dirent.h>
#include <sched.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace derpd::bench {

// Parses "0,2-3" into {0, 2, 3}; nullopt when malformed or empty.
inline std::optional<std::vector<int>> parseCpuList(const std::string& list) {
  std::vector<int> cpus;
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string item = list.substr(pos, comma - pos);
    char* end = nullptr;
    const long lo = std::strtol(item.c_str(), &end, 10);
    long hi = lo;
    if (end == item.c_str()) return std::nullopt;
    if (*end == '-') {
      const char* start = end + 1;
      hi = std::strtol(start, &end, 10);
      if (end == start) return std::nullopt;
    }
    if (*end != '\0' || lo < 0 || hi < lo || hi >= CPU_SETSIZE) return std::nullopt;
    for (long c = lo; c <= hi; c++) cpus.push_back(static_cast<int>(c));
    pos = comma + 1;
  }
  if (cpus.empty()) return std::nullopt;
  return cpus;
}

inline cpu_set_t toCpuSet(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  return set;
}

// Pins thread `tid` (0: the calling thread); an errno message on failure.
inline std::string pinThread(pid_t tid, const std::vector<int>& cpus) {
  const cpu_set_t set = toCpuSet(cpus);
  if (sched_setaffinity(tid, sizeof(set), &set) != 0) return std::strerror(errno);
  return "";
}

// Pins every thread of `pid` now (threads started later inherit from the
// thread that creates them, which is pinned too). Returns the number of
// threads pinned, or a negative errno.
inline int pinProcess(pid_t pid, const std::vector<int>& cpus) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -errno;
  int pinned = 0, error = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pinThread(tid, cpus).empty()) pinned++;
    else error = errno;
  }
  closedir(d);
  return pinned > 0 ? pinned : -(error ? error : ESRCH);
}

// How many CPUs the calling thread may run on.
inline int allowedCpuCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

}  // namespace derpd::bench
