// TempDirTest: a gtest fixture with a fresh directory under $TMPDIR (or /tmp)
// for the test's files, removed with them afterwards.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace derpd::testing {

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/derpd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Writes text to a new file in the directory, named with `suffix`; returns its path.
  std::string writeFile(const std::string& text, const std::string& suffix) {
    std::string path = dir_ + "/file-" + std::to_string(files_++) + suffix;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
  int files_ = 0;
};

}  // namespace derpd::testing
