// sd_notify for real: derpd started with NOTIFY_SOCKET pointing at a unix
// datagram socket this test owns, as systemd would for a Type=notify unit.
// READY=1 once it listens, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1
// then READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/unique_fd.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

constexpr Nanos kWait = 5 * kSecond;

// The service manager's end: a unix datagram socket in a fresh directory.
class NotifySocket {
 public:
  static absl::StatusOr<std::unique_ptr<NotifySocket>> create() {
    auto dir = makeTempDir();
    if (!dir.ok()) return dir.status();
    std::unique_ptr<NotifySocket> s(new NotifySocket());
    s->dir_ = *dir;
    s->path_ = *dir + "/notify";
    s->fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (!s->fd_.valid() || s->path_.size() >= sizeof(sun.sun_path)) {
      return absl::InternalError("notify socket: " + s->path_);
    }
    std::memcpy(sun.sun_path, s->path_.data(), s->path_.size());
    if (::bind(s->fd_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      return absl::InternalError(absl::StrCat("bind ", s->path_, ": ", std::strerror(errno)));
    }
    return s;
  }
  ~NotifySocket() { removeTree(dir_); }

  const std::string& path() const { return path_; }

  // The next datagram, or nullopt after timeout.
  std::optional<std::string> recv(Nanos timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout / kMillisecond)) != 1) return std::nullopt;
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

  // The next datagram that is not a watchdog keep-alive.
  std::optional<std::string> recvState(Nanos timeout) {
    RealClock clock;
    Nanos deadline = clock.now() + timeout;
    for (;;) {
      Nanos left = deadline - clock.now();
      if (left <= 0) return std::nullopt;
      std::optional<std::string> m = recv(left);
      if (!m || *m != "WATCHDOG=1") return m;
    }
  }

 private:
  NotifySocket() = default;
  std::string dir_;
  std::string path_;
  UniqueFd fd_;
};

// The port in "STATUS=listening on http://127.0.0.1:PORT ...".
std::optional<uint16_t> statusPort(std::string_view msg) {
  constexpr std::string_view kPrefix = "listening on http://127.0.0.1:";
  size_t at = msg.find(kPrefix);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = msg.substr(at + kPrefix.size());
  uint16_t port = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
  if (ec != std::errc() || port == 0) return std::nullopt;
  return port;
}

DerpdOptions notifiedDerpd(const NotifySocket& sock, std::string watchdogUsec) {
  DerpdOptions o;
  // An empty WATCHDOG_USEC is no watchdog.
  o.env = {{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", std::move(watchdogUsec)}};
  return o;
}

TEST(ServiceNotifyTest, ReadyWatchdogReloadStopping) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<NotifySocket> sock, NotifySocket::create());
  // Not start(): READY=1 itself is what says derpd is listening.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd,
                       DerpdProcess::spawn(notifiedDerpd(*sock, "200000")));

  std::optional<std::string> ready = sock->recv(kWait);
  ASSERT_TRUE(ready.has_value()) << "no READY=1\n" << derpd->logText();
  EXPECT_TRUE(absl::StartsWith(*ready, "READY=1\n")) << *ready;
  std::optional<uint16_t> port = statusPort(*ready);
  ASSERT_TRUE(port.has_value()) << *ready;
  // Ready means serving: a client gets through at once, and the log has said so.
  ASSERT_OK_AND_ASSIGN(auto client, connectClient(*port));
  EXPECT_TRUE(derpd->waitForLog(absl::StrCat("listening on http://127.0.0.1:", *port), kWait))
      << derpd->logText();

  // WATCHDOG_USEC=200000: a keep-alive every 100 ms, from an otherwise idle loop.
  RealClock clock;
  Nanos start = clock.now();
  int keepAlives = 0;
  while (clock.now() - start < kSecond) {
    std::optional<std::string> m = sock->recv(kSecond);
    ASSERT_TRUE(m.has_value()) << "no keep-alive within 1 s";
    EXPECT_EQ(*m, "WATCHDOG=1");
    keepAlives++;
  }
  std::printf("%d keep-alives in 1 s\n", keepAlives);
  EXPECT_GE(keepAlives, 5);
  EXPECT_LE(keepAlives, 30) << "the loop spins";

  ASSERT_OK(derpd->sendSignal(SIGHUP));
  std::optional<std::string> reloading = sock->recvState(kWait);
  ASSERT_TRUE(reloading.has_value());
  EXPECT_TRUE(absl::StartsWith(*reloading, "RELOADING=1\n")) << *reloading;
  EXPECT_TRUE(absl::StrContains(*reloading, "\nMONOTONIC_USEC=")) << *reloading;
  std::optional<std::string> readyAgain = sock->recvState(kWait);
  ASSERT_TRUE(readyAgain.has_value());
  EXPECT_EQ(*readyAgain, *ready);
  // Reloading dropped no one, and derpd serves newcomers.
  ASSERT_OK_AND_ASSIGN(auto newcomer, connectClient(*port));
  ASSERT_OK(client->sendPacket(newcomer->publicKey(), taggedPayload(1, 1, 40)));
  ASSERT_OK(newcomer->recvPacket(kWait).status());

  ASSERT_OK(derpd->sendSignal(SIGTERM));
  std::optional<std::string> stopping = sock->recvState(kWait);
  ASSERT_TRUE(stopping.has_value());
  EXPECT_TRUE(absl::StartsWith(*stopping, "STOPPING=1\n")) << *stopping;
  client.reset();  // the clients leave: the drain ends
  newcomer.reset();
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  EXPECT_EQ(code, 0) << derpd->logText();
  // STOPPING=1 once, however the loop ends.
  while (std::optional<std::string> m = sock->recv(100 * kMillisecond)) {
    EXPECT_EQ(*m, "WATCHDOG=1");
  }
}

TEST(ServiceNotifyTest, SigintSendsStoppingToo) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<NotifySocket> sock, NotifySocket::create());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd,
                       DerpdProcess::spawn(notifiedDerpd(*sock, "")));
  std::optional<std::string> ready = sock->recv(kWait);
  ASSERT_TRUE(ready.has_value()) << derpd->logText();
  EXPECT_TRUE(absl::StartsWith(*ready, "READY=1\n")) << *ready;
  // No WATCHDOG_USEC: no keep-alives.
  EXPECT_EQ(sock->recv(500 * kMillisecond), std::nullopt);
  ASSERT_OK(derpd->sendSignal(SIGINT));
  std::optional<std::string> stopping = sock->recv(kWait);
  ASSERT_TRUE(stopping.has_value());
  EXPECT_TRUE(absl::StartsWith(*stopping, "STOPPING=1\n")) << *stopping;
  ASSERT_OK_AND_ASSIGN(int code, derpd->waitExit(kWait));
  EXPECT_EQ(code, 0);
  EXPECT_EQ(sock->recv(100 * kMillisecond), std::nullopt);
}

}  // namespace
}  // namespace derpd::testing
