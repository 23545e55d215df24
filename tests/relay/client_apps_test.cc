#include "relay/client_apps.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace derpd::relay {
namespace {

TEST(ClientAppsTest, CountsByNameMostFirst) {
  ClientApps apps;
  apps.count("tailscaled");
  apps.count("tsnet");
  apps.count("tailscaled");
  apps.count("");
  auto s = apps.snapshot();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], (std::pair<std::string, uint64_t>{"tailscaled", 2}));
  EXPECT_EQ(s[1].first, "tsnet");
  EXPECT_EQ(s[2].first, "(none)");
  EXPECT_NE(apps.debugText().find("2 tailscaled\n"), std::string::npos) << apps.debugText();
}

// A client chooses the text: the table never grows past its bound, and odd
// names never reach the page as they are.
TEST(ClientAppsTest, BoundedAndSanitised) {
  ClientApps apps;
  apps.count(std::string(65, 'a'));
  apps.count("evil\nname");
  apps.count("caf\xc3\xa9");
  for (int i = 0; i < 1000; i++) apps.count("app" + std::to_string(i));
  auto s = apps.snapshot();
  EXPECT_EQ(s.size(), ClientApps::kMaxNames + 1);  // + "(other)"
  uint64_t total = 0;
  bool other = false;
  for (const auto& [name, n] : s) {
    total += n;
    EXPECT_LE(name.size(), ClientApps::kMaxNameLen);
    EXPECT_EQ(name.find('\n'), std::string::npos);
    if (name == "(other)") {
      other = true;
      EXPECT_EQ(n, 1000u - (ClientApps::kMaxNames - 1));  // "(invalid)" took one place
    }
    if (name == "(invalid)") {
      EXPECT_EQ(n, 3u);
    }
  }
  EXPECT_TRUE(other);
  EXPECT_EQ(total, 1003u);
}

TEST(ClientAppsTest, ShardsCountAtOnce) {
  ClientApps apps;
  std::vector<std::thread> shards;
  for (int t = 0; t < 4; t++) {
    shards.emplace_back([&] {
      for (int i = 0; i < 10000; i++) apps.count(i % 2 ? "a" : "b");
    });
  }
  for (std::thread& t : shards) t.join();
  auto s = apps.snapshot();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].second + s[1].second, 40000u);
}

}  // namespace
}  // namespace derpd::relay
