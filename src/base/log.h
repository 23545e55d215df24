// Minimal line logger: one line per event that matters, never per packet.
//
// Thread-safe: each line is formatted into a local buffer and written with a
// single write(2), so lines from different shards never interleave.
#pragma once

#include "absl/strings/str_format.h"

namespace derpd {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void setLogLevel(LogLevel level);
void logLine(LogLevel level, std::string_view msg);

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
