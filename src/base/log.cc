#include "base/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>

namespace derpd {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

}  // namespace

void setLogLevel(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

void logLine(LogLevel level, std::string_view msg) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  std::string line = absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s\n",
                                     t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
                                     t.tm_min, t.tm_sec, static_cast<int>(ts.tv_nsec / 1000000),
                                     levelName(level), msg);
  // One write per line keeps lines whole; a failed log write has nowhere to go.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace derpd
