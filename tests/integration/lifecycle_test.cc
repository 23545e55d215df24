// derpd's life: clean shutdown on SIGTERM/SIGINT, key file handling, flag
// errors, and derpctl against a live server.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/unique_fd.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr Nanos kWait = 5 * kSecond;
constexpr Nanos kStartupFailureWait = 10 * kSecond;

class ShutdownTest : public ::testing::TestWithParam<int> {};

TEST_P(ShutdownTest, ExitsZeroPromptlyAndClosesEveryClient) {
  const int sig = GetParam();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
    clients.push_back(std::move(c));
  }
  // Everyone is being served right up to the signal.
  ASSERT_OK(clients[0]->sendPacket(clients[9]->publicKey(), taggedPayload(1, 1, 40)));
  ASSERT_OK(clients[9]->recvPacket(kWait).status());

  RealClock clock;
  Nanos start = clock.now();
  ASSERT_OK(derpd->sendSignal(sig));
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  Nanos took = clock.now() - start;
  std::printf("derpd exited %d after %.3f s\n", code, static_cast<double>(took) / kSecond);
  EXPECT_EQ(code, 0) << derpd->logText();
  for (size_t i = 0; i < clients.size(); ++i) {
    absl::StatusOr<client::OwnedFrame> f;
    do {
      f = clients[i]->recv(kWait);
    } while (f.ok());
    EXPECT_TRUE(absl::IsUnavailable(f.status())) << "client " << i << ": " << f.status();
  }
}

// SIGTERM is a graceful restart: every client gets Restarting (reconnect hint
// 1.5 s, try for the drain time + 10 s), keeps being served, and derpd exits 0
// as soon as the last one has left. No new connection is accepted meanwhile.
TEST(GracefulRestartTest, SigtermSendsRestartingAndExitsWhenClientsLeave) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
    clients.push_back(std::move(c));
  }
  ASSERT_OK(derpd->sendSignal(SIGTERM));
  for (size_t i = 0; i < clients.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(client::OwnedFrame f, clients[i]->recv(kWait));
    ASSERT_EQ(f.frameType(), derp::FrameType::kRestarting) << "client " << i;
    ASSERT_OK_AND_ASSIGN(derp::Frame parsed, f.parse());
    const auto& r = std::get<derp::RestartingFrame>(parsed);
    EXPECT_EQ(r.reconnectInMs, 1500u);
    EXPECT_EQ(r.tryForMs, 20000u);  // default drain time 10 s + 10 s
  }
  // Still relaying while draining.
  ASSERT_OK(clients[0]->sendPacket(clients[9]->publicKey(), taggedPayload(2, 1, 40)));
  ASSERT_OK(clients[9]->recvPacket(kWait).status());
  // No new clients.
  EXPECT_FALSE(connectClient(derpd->port()).ok());
  ASSERT_TRUE(derpd->running());
  RealClock clock;
  clients.clear();  // every client leaves, as Tailscale clients do on Restarting
  Nanos start = clock.now();
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  EXPECT_EQ(code, 0) << derpd->logText();
  std::printf("derpd exited %.3f s after the last client left\n",
              static_cast<double>(clock.now() - start) / kSecond);
  // The log says how the drain went.
  ASSERT_TRUE(derpd->waitForOutputEnd(kWait));
  EXPECT_TRUE(
      derpd->findLog("drain: 10 clients told to reconnect elsewhere, all left on their own in ")
          .has_value())
      << derpd->logText();
}

// A client that ignores Restarting is closed when the drain time is up.
TEST(GracefulRestartTest, SigtermClosesStayingClientsAfterDrainTimeout) {
  DerpdOptions opts;
  opts.extraArgs = {"--drain-timeout", "1s"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
  ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
  RealClock clock;
  Nanos start = clock.now();
  ASSERT_OK(derpd->sendSignal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(client::OwnedFrame f, c->recv(kWait));
  EXPECT_EQ(f.frameType(), derp::FrameType::kRestarting);
  absl::StatusOr<client::OwnedFrame> next = c->recv(kWait);
  EXPECT_TRUE(absl::IsUnavailable(next.status())) << next.status();
  Nanos took = clock.now() - start;
  EXPECT_GE(took, 900 * kMillisecond);
  EXPECT_LE(took, 4 * kSecond);
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  EXPECT_EQ(code, 0) << derpd->logText();
  ASSERT_TRUE(derpd->waitForOutputEnd(kWait));
  EXPECT_TRUE(derpd
                  ->findLog("drain: 1 clients told to reconnect elsewhere, 0 left on their own; "
                            "the drain timeout (1.0s) closed the 1 still connected")
                  .has_value())
      << derpd->logText();
}

INSTANTIATE_TEST_SUITE_P(Signals, ShutdownTest, ::testing::Values(SIGINT),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGINT ? "SIGINT" : "other");
                         });

// Runs derpd with extra args and expects it to stop by itself.
absl::StatusOr<int> runToExit(DerpdOptions opts, std::string* log) {
  absl::StatusOr<std::unique_ptr<DerpdProcess>> p = DerpdProcess::spawn(std::move(opts));
  if (!p.ok()) return p.status();
  absl::StatusOr<int> code = (*p)->waitExit(kStartupFailureWait);
  (*p)->waitForOutputEnd(kWait);
  *log = (*p)->logText();
  return code;
}

TEST(StartupTest, MalformedKeyFileStopsStartupNamingThePath) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  std::string path = dir + "/broken.key";
  std::ofstream(path) << "{\"PrivateKey\": \"privkey:nothex\"}";
  DerpdOptions opts;
  opts.keyPath = path;
  std::string log;
  absl::StatusOr<int> code = runToExit(opts, &log);
  removeTree(dir);
  ASSERT_OK(code.status());
  EXPECT_EQ(*code, 1) << log;
  EXPECT_NE(log.find(path), std::string::npos) << "message does not name " << path << ":\n" << log;
}

// SO_REUSEPORT must not let a second server silently share the port (and take
// half of the clients): the second one fails, naming the address.
TEST(StartupTest, SecondServerOnTheSamePortIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> first, DerpdProcess::start({}));
  DerpdOptions opts;
  opts.extraArgs = {"-a", absl::StrCat("127.0.0.1:", first->port())};
  std::string log;
  ASSERT_OK_AND_ASSIGN(int code, runToExit(opts, &log));
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find(absl::StrCat("127.0.0.1:", first->port())), std::string::npos) << log;
  EXPECT_NE(log.find("in use"), std::string::npos) << log;
  EXPECT_TRUE(first->running());
}

TEST(StartupTest, MissingKeyFileIsCreatedPrivateAndMatchesDerpctl) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  struct stat st {};
  ASSERT_EQ(::stat(derpd->keyPath().c_str(), &st), 0) << "no key file at " << derpd->keyPath();
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "mode " << std::oct << (st.st_mode & 0777);

  std::optional<std::string> line = derpd->findLog("public key nodekey:");
  ASSERT_TRUE(line.has_value()) << derpd->logText();
  std::string logged = line->substr(line->find("nodekey:"), 8 + 64);

  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       runCommand({derpctl, "key", "-c", derpd->keyPath()}, {}, kWait));
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(r.out)), logged);

  // A client sees the same key in the handshake.
  ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
  EXPECT_EQ(c->serverKey().toString(), logged);
}

TEST(StartupTest, RestartKeepsTheKey) {
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  DerpdOptions opts;
  opts.keyPath = dir + "/derper.key";
  std::string first;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
    ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
    first = c->serverKey().toString();
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
  ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd->port()));
  EXPECT_EQ(c->serverKey().toString(), first);
  removeTree(dir);
}

struct RejectedArgs {
  std::vector<std::string> args;
  std::string named;  // the message must contain this
};

class RejectedFlagTest : public ::testing::TestWithParam<RejectedArgs> {};

TEST_P(RejectedFlagTest, ExitsTwoNamingTheFlag) {
  DerpdOptions opts;
  opts.extraArgs = GetParam().args;
  std::string log;
  ASSERT_OK_AND_ASSIGN(int code, runToExit(opts, &log));
  EXPECT_EQ(code, 2) << log;
  EXPECT_NE(log.find(GetParam().named), std::string::npos)
      << "message does not name " << GetParam().named << ":\n"
      << log;
}

INSTANTIATE_TEST_SUITE_P(
    Flags, RejectedFlagTest,
    ::testing::Values(RejectedArgs{{"-no-such-flag"}, "no-such-flag"},
                      RejectedArgs{{"--no-such-flag=3"}, "no-such-flag"},
                      RejectedArgs{{"-mesh-with", "derp2.example.com"}, "mesh-with"},
                      RejectedArgs{{"-verify-client-url", "http://[::1"}, "verify-client-url"}));

TEST(DerpctlTest, ProbeSucceedsAgainstDerpd) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start({}));
  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  for (const std::string& url : {absl::StrCat("http://127.0.0.1:", derpd->port()),
                                 absl::StrCat("http://127.0.0.1:", derpd->port(), "/derp")}) {
    ASSERT_OK_AND_ASSIGN(CommandResult r, runCommand({derpctl, "probe", url}, {}, 3 * kWait));
    std::printf("%s%s", r.out.c_str(), r.err.c_str());
    EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("relay A -> B"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("ping"), std::string::npos) << r.out;
  }
}

TEST(DerpctlTest, ProbeFailsCleanlyWithNothingListening) {
  // A port that was just free: connecting to it is refused.
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  s.reset();

  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  ASSERT_OK_AND_ASSIGN(CommandResult r, runCommand({derpctl, "probe", "--timeout", "2s",
                                                    absl::StrCat("http://127.0.0.1:", port)},
                                                   {}, 3 * kWait));
  EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("connect"), std::string::npos) << r.err;
}

TEST(DerpctlTest, ProbeRefusesTlsFlagsWithPlainUrls) {
  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       runCommand({derpctl, "probe", "--insecure", "http://127.0.0.1:1"}, {}, kWait));
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("https://"), std::string::npos) << r.err;
}

TEST(DerpctlTest, KeyFailsOnMissingFile) {
  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       runCommand({derpctl, "key", "-c", "/nonexistent/derper.key"}, {}, kWait));
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("/nonexistent/derper.key"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace derpd::testing
