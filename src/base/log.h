// Minimal line logger: one line per event that matters, never per packet.
//
// Thread-safe: each line is formatted into a local buffer and written with a
// single write(2), so lines from different shards never interleave. The level
// and format are set once at startup, before the shards run.
#pragma once

#include <time.h>

#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace derpd {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// kText: "2026-01-02T03:04:05.678Z info message".
// kJson: {"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"message"},
// one object per line (--log-format json), for log collectors.
enum class LogFormat { kText, kJson };

void setLogLevel(LogLevel level);
void setLogFormat(LogFormat format);
void logLine(LogLevel level, std::string_view msg);

// The line logLine writes (newline included) for a message logged at
// wallTime (CLOCK_REALTIME). Time is RFC 3339 UTC with milliseconds. In JSON
// the message is escaped; bytes that are not UTF-8 become U+FFFD.
std::string formatLogLine(LogFormat format, LogLevel level, const timespec& wallTime,
                          std::string_view msg);

template <typename... Args>
void logInfo(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  logLine(LogLevel::kInfo, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void logWarn(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  logLine(LogLevel::kWarn, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void logError(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  logLine(LogLevel::kError, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void logDebug(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  logLine(LogLevel::kDebug, absl::StrFormat(fmt, args...));
}

}  // namespace derpd
