// derpd run from a --config file, logging JSON, and its periodic stats line:
// every line it prints is one JSON object, the listening line is among them,
// and a stats line reports the packets a client relayed.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"
#include "nlohmann/json.hpp"

namespace derpd::testing {
namespace {

constexpr Nanos kWait = 5 * kSecond;
constexpr int kPackets = 5;
constexpr size_t kPayload = 100;

// The key=value fields of a "stats ..." message.
std::map<std::string, uint64_t> statsFields(const std::string& msg) {
  std::map<std::string, uint64_t> fields;
  for (absl::string_view word : absl::StrSplit(msg, ' ')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(word, absl::MaxSplits('=', 1));
    uint64_t v = 0;
    if (absl::SimpleAtoi(kv.second, &v)) fields[kv.first] = v;
  }
  return fields;
}

// Relays kPackets from one client to another, both ways checked by receipt.
void relayPackets(uint16_t port) {
  ASSERT_OK_AND_ASSIGN(auto a, connectClient(port));
  ASSERT_OK_AND_ASSIGN(auto b, connectClient(port));
  for (int i = 0; i < kPackets; ++i) {
    ASSERT_OK(a->sendPacket(b->publicKey(), taggedPayload(i, 1, kPayload)));
    ASSERT_OK(b->recvPacket(kWait).status());
  }
}

// The stats messages so far (msg of each, whatever the log format), summed:
// counters are per interval, so the packets may be split over two lines.
struct StatsSeen {
  int lines = 0;
  std::map<std::string, uint64_t> sums;
};

StatsSeen statsSeen(const DerpdProcess& derpd, bool json) {
  StatsSeen seen;
  for (const std::string& line : derpd.logLines()) {
    std::string msg = line;
    if (json) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("msg")) continue;
      msg = j["msg"].get<std::string>();
    }
    size_t at = msg.find("stats interval=");
    if (at == std::string::npos) continue;
    seen.lines++;
    for (const auto& [k, v] : statsFields(msg.substr(at))) seen.sums[k] += v;
  }
  return seen;
}

// Waits (polling the collected log) until stats lines have counted every
// packet relayed, and returns what they said.
StatsSeen waitForRelayedInStats(const DerpdProcess& derpd, bool json) {
  RealClock clock;
  const Nanos deadline = clock.now() + kWait;
  StatsSeen seen = statsSeen(derpd, json);
  while (seen.sums["packets_relayed"] < kPackets && clock.now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen = statsSeen(derpd, json);
  }
  return seen;
}

void expectRelayCounted(StatsSeen& seen) {
  EXPECT_GE(seen.lines, 1);
  EXPECT_EQ(seen.sums["packets_relayed"], static_cast<uint64_t>(kPackets));
  EXPECT_EQ(seen.sums["packets_received"], static_cast<uint64_t>(kPackets));
  EXPECT_EQ(seen.sums["bytes_received"], static_cast<uint64_t>(kPackets * kPayload));
  EXPECT_GE(seen.sums["accepts"], 2u);
  EXPECT_GE(seen.sums["derp_handshakes"], 2u);
}

TEST(ConfigLogTest, ConfigFileJsonLogsAndStats) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  const std::string path = dir + "/derpd.toml";
  // log-format = "text" in the file loses to --log-format json on the command line.
  std::ofstream(path) << "# derpd test config\n"
                         "a = \"127.0.0.1:0\"\n"
                         "http-port = -1\n"
                         "stun-port = 0\n"
                         "shards = 2\n"
                         "c = \""
                      << dir << "/derper.key\"\n"
                         "log-format = \"text\"\n"
                         "stats-interval = \"1s\"\n";
  DerpdOptions opts;
  opts.defaultArgs = false;
  opts.extraArgs = {"--config", path, "--log-format", "json"};
  absl::StatusOr<std::unique_ptr<DerpdProcess>> started = DerpdProcess::start(opts);
  removeTree(dir);  // read at startup: no longer needed
  ASSERT_OK(started.status());
  std::unique_ptr<DerpdProcess> derpd = std::move(*started);

  relayPackets(derpd->port());
  StatsSeen seen = waitForRelayedInStats(*derpd, true);
  expectRelayCounted(seen);

  ASSERT_OK(derpd->sendSignal(SIGINT));
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  EXPECT_EQ(code, 0);
  ASSERT_TRUE(derpd->waitForOutputEnd(kWait));

  bool listening = false;
  const std::vector<std::string> lines = derpd->logLines();
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    ASSERT_TRUE(j.is_object()) << line;
    ASSERT_TRUE(j.contains("time") && j["time"].is_string()) << line;
    ASSERT_TRUE(j.contains("level") && j["level"].is_string()) << line;
    ASSERT_TRUE(j.contains("msg") && j["msg"].is_string()) << line;
    const std::string time = j["time"];
    // RFC 3339 UTC with milliseconds: 2026-11-26T02:03:04.567Z
    EXPECT_EQ(time.size(), 24u) << time;
    EXPECT_EQ(time.back(), 'Z') << time;
    EXPECT_EQ(time[10], 'T') << time;
    const std::string msg = j["msg"];
    if (msg.find("listening on http://127.0.0.1:" + std::to_string(derpd->port())) !=
        std::string::npos) {
      listening = true;
      EXPECT_EQ(j["level"], "info");
    }
  }
  EXPECT_TRUE(listening) << derpd->logText();
}

// An operator whose settings come from DERP_* variables sees which ones took
// effect (an empty one is unset), and whether TLS is on.
TEST(ConfigLogTest, StartupSaysWhichVariablesAndWhetherTls) {
  DerpdOptions opts;
  opts.defaultArgs = false;
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  opts.extraArgs = {"-c", dir + "/derper.key", "--shards", "1"};
  opts.env = {{"DERP_ADDR", "127.0.0.1:0"}, {"DERP_HTTP_PORT", ""}, {"DERP_STUN_PORT", "0"}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
  EXPECT_TRUE(
      derpd->findLog("settings from the environment: DERP_ADDR=127.0.0.1:0, DERP_STUN_PORT=0")
          .has_value())
      << derpd->logText();
  EXPECT_TRUE(derpd->findLog("no TLS: plain HTTP on 127.0.0.1:0").has_value()) << derpd->logText();
  derpd.reset();
  removeTree(dir);
}

// A bad variable is named as a variable, in the log's one style.
TEST(ConfigLogTest, BadVariableIsNamedAndStopsStartup) {
  DerpdOptions opts;
  opts.env = {{"DERP_ADDR", "443"}};
  opts.defaultArgs = false;
  ASSERT_OK_AND_ASSIGN(auto p, DerpdProcess::spawn(opts));
  ASSERT_OK_AND_ASSIGN(int code, p->waitExit(kWait));
  EXPECT_EQ(code, 2);
  ASSERT_TRUE(p->waitForOutputEnd(kWait));
  EXPECT_TRUE(p->findLog("error environment variable DERP_ADDR=443 (for -a)").has_value())
      << p->logText();
}

TEST(ConfigLogTest, TextStatsLineCountsRelayedPackets) {
  DerpdOptions opts;
  opts.extraArgs = {"--stats-interval", "1s"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
  relayPackets(derpd->port());
  StatsSeen seen = waitForRelayedInStats(*derpd, false);
  expectRelayCounted(seen);
  // The clients have left: the next line shows no connections and their closes.
  ASSERT_TRUE(derpd->waitForLog("connections=0", kWait)) << derpd->logText();
}

TEST(ConfigLogTest, BadConfigFileStopsStartupNamingFileAndKey) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  const std::string path = dir + "/derpd.toml";
  std::ofstream(path) << "a = \"127.0.0.1:0\"\nstun-port = \"high\"\n";
  DerpdOptions opts;
  opts.defaultArgs = false;
  opts.extraArgs = {"--config", path};
  absl::StatusOr<std::unique_ptr<DerpdProcess>> p = DerpdProcess::spawn(opts);
  ASSERT_OK(p.status());
  absl::StatusOr<int> code = (*p)->waitExit(kWait);
  (*p)->waitForOutputEnd(kWait);
  removeTree(dir);
  ASSERT_OK(code.status());
  EXPECT_EQ(*code, 2);
  const std::string log = (*p)->logText();
  EXPECT_NE(log.find(path), std::string::npos) << log;
  EXPECT_NE(log.find("line 2"), std::string::npos) << log;
  EXPECT_NE(log.find("stun-port"), std::string::npos) << log;
}

}  // namespace
}  // namespace derpd::testing
