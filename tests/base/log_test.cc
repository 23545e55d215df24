// Log line formats: text as before, and --log-format json with one parseable
// object per line whatever the message holds.
#include "base/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace derpd {
namespace {

// 2026-11-26T02:03:04.567Z
constexpr timespec kWhen = {1795658584, 567890123};

TEST(LogTest, TextLine) {
  EXPECT_EQ(formatLogLine(LogFormat::kText, LogLevel::kInfo, kWhen, "derpd started"),
            "2026-11-26T02:03:04.567Z info derpd started\n");
  EXPECT_EQ(formatLogLine(LogFormat::kText, LogLevel::kWarn, kWhen, "x"),
            "2026-11-26T02:03:04.567Z warn x\n");
}

TEST(LogTest, JsonLineHasTimeLevelAndMessage) {
  std::string line = formatLogLine(LogFormat::kJson, LogLevel::kError, kWhen, "start: failed");
  EXPECT_EQ(line,
            "{\"time\":\"2026-11-26T02:03:04.567Z\",\"level\":\"error\",\"msg\":\"start: "
            "failed\"}\n");
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2026-11-26T02:03:04.567Z");
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["msg"], "start: failed");
}

TEST(LogTest, JsonEscapesWhatWouldBreakTheLine) {
  const std::string messages[] = {
      "a \"quoted\" name",
      "two\nlines\r\n",
      "back\\slash and \t tab",
      std::string("nul\0byte", 8),
      "\x01\x1f control",
      "caf\xc3\xa9 \xe2\x9c\x93",  // UTF-8 stays as it is
  };
  for (const std::string& msg : messages) {
    std::string line = formatLogLine(LogFormat::kJson, LogLevel::kInfo, kWhen, msg);
    ASSERT_EQ(line.back(), '\n');
    // Exactly one line: every newline inside the message was escaped.
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["msg"].get<std::string>(), msg);
    EXPECT_EQ(j["level"], "info");
  }
}

TEST(LogTest, JsonReplacesInvalidUtf8) {
  std::string line =
      formatLogLine(LogFormat::kJson, LogLevel::kInfo, kWhen, "bad \xff\xfe bytes");
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"].get<std::string>(), "bad \xef\xbf\xbd\xef\xbf\xbd bytes");
}

}  // namespace
}  // namespace derpd
