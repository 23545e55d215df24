#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>

namespace derpd {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<LogFormat> g_format{LogFormat::kText};

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

// A JSON string literal. Messages can carry bytes from peers (host names,
// paths); invalid UTF-8 is replaced rather than breaking the line.
std::string jsonString(std::string_view s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void setLogLevel(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
void setLogFormat(LogFormat format) { g_format.store(format, std::memory_order_relaxed); }

std::string formatLogLine(LogFormat format, LogLevel level, const timespec& wallTime,
                          std::string_view msg) {
  tm t;
  gmtime_r(&wallTime.tv_sec, &t);
  std::string time = absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                                     t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                                     static_cast<int>(wallTime.tv_nsec / 1000000));
  if (format == LogFormat::kJson) {
    return absl::StrFormat("{\"time\":\"%s\",\"level\":\"%s\",\"msg\":%s}\n", time,
                           levelName(level), jsonString(msg));
  }
  return absl::StrFormat("%s %s %s\n", time, levelName(level), msg);
}

void logLine(LogLevel level, std::string_view msg) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::string line = formatLogLine(g_format.load(std::memory_order_relaxed), level, ts, msg);
  // One write per line keeps lines whole; a failed log write has nowhere to go.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace derpd
