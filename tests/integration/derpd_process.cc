#include "integration/derpd_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace derpd::testing {
namespace {

constexpr std::string_view kListeningMarker = "listening on http";
constexpr Nanos kStopGrace = 3 * kSecond;
constexpr int kCollectorPollMs = 100;

Nanos now() {
  static const RealClock clock;
  return clock.now();
}

std::string errnoText(int err) { return std::string(strerror(err)); }

// environ with env's entries replacing or added to it.
std::vector<std::string> buildEnvironment(const EnvVars& env) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry = *e;
    bool replaced = false;
    for (const auto& [name, value] : env) {
      if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
        replaced = true;
      }
    }
    if (!replaced) out.emplace_back(entry);
  }
  for (const auto& [name, value] : env) out.push_back(absl::StrCat(name, "=", value));
  return out;
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Spawns argv with stdout -> outFd and stderr -> errFd (both may be the same).
absl::StatusOr<pid_t> spawnProcess(std::vector<std::string> argv, const EnvVars& env, int outFd,
                                   int errFd) {
  std::vector<std::string> envStrings = buildEnvironment(env);
  std::vector<char*> cArgv = cStrings(argv);
  std::vector<char*> cEnv = cStrings(envStrings);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devNull >= 0) posix_spawn_file_actions_adddup2(&actions, devNull, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, outFd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, errFd, STDERR_FILENO);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, cArgv[0], &actions, nullptr, cArgv.data(), cEnv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (devNull >= 0) ::close(devNull);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", argv[0], ": ", errnoText(rc)));
  return pid;
}

int decodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Port from a line containing "listening on http://127.0.0.1:PORT" (or https,
// or [::1]).
std::optional<uint16_t> portFromLine(std::string_view line) {
  size_t at = line.find(kListeningMarker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(at + kListeningMarker.size());
  if (rest.starts_with("s")) rest.remove_prefix(1);
  if (!rest.starts_with("://")) return std::nullopt;
  rest.remove_prefix(3);
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(close + 1);
  } else {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon);
  }
  if (!rest.starts_with(":")) return std::nullopt;
  rest.remove_prefix(1);
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  uint32_t port = 0;
  if (!absl::SimpleAtoi(std::string(rest.substr(0, digits)), &port) || port == 0 || port > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

std::string afterMarker(const std::optional<std::string>& line, std::string_view marker) {
  if (!line.has_value()) return "";
  return line->substr(line->find(marker) + marker.size());
}

}  // namespace

absl::StatusOr<uint16_t> metricsPortOf(const DerpdProcess& d) {
  constexpr std::string_view kMarker = "/metrics and /debug/ on http://127.0.0.1:";
  uint32_t port = 0;
  if (!absl::SimpleAtoi(afterMarker(d.findLog(kMarker), kMarker), &port) || port == 0 ||
      port > 65535) {
    return absl::NotFoundError(absl::StrCat("derpd did not log '", std::string(kMarker), "PORT'"));
  }
  return static_cast<uint16_t>(port);
}

absl::StatusOr<derp::NodeKey> serverKeyOf(const DerpdProcess& d) {
  constexpr std::string_view kMarker = "public key ";
  std::optional<derp::NodeKey> key =
      derp::NodeKey::parse(afterMarker(d.findLog(kMarker), kMarker).substr(0, 8 + 64));
  if (!key.has_value()) return absl::NotFoundError("derpd did not log 'public key nodekey:<hex>'");
  return *key;
}

absl::StatusOr<MetricsNode> startWithMetrics(DerpdOptions opts) {
  absl::StatusOr<std::unique_ptr<DerpdProcess>> p = DerpdProcess::start(std::move(opts));
  if (!p.ok()) return p.status();
  MetricsNode node;
  node.process = *std::move(p);
  absl::StatusOr<uint16_t> metrics = metricsPortOf(*node.process);
  if (!metrics.ok()) return metrics.status();
  node.metricsPort = *metrics;
  return node;
}

absl::StatusOr<std::string> binaryFromEnv(const char* var) {
  const char* path = std::getenv(var);
  if (path == nullptr || *path == '\0') {
    return absl::FailedPreconditionError(
        absl::StrCat("$", var, " is not set (run the tests with meson test)"));
  }
  if (::access(path, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("$", var, "=", path, " is not executable: ", errnoText(errno)));
  }
  return std::string(path);
}

absl::StatusOr<std::string> makeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/derpd-test-XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", errnoText(errno)));
  }
  return tmpl;
}

void removeTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

absl::StatusOr<std::unique_ptr<DerpdProcess>> DerpdProcess::spawn(DerpdOptions opts) {
  std::unique_ptr<DerpdProcess> p(new DerpdProcess());
  absl::Status st = p->launch(opts);
  if (!st.ok()) return st;
  return p;
}

absl::StatusOr<std::unique_ptr<DerpdProcess>> DerpdProcess::start(DerpdOptions opts,
                                                                  Nanos timeout) {
  absl::StatusOr<std::unique_ptr<DerpdProcess>> p = spawn(std::move(opts));
  if (!p.ok()) return p.status();
  absl::Status st = (*p)->waitListening(timeout);
  if (!st.ok()) return st;
  return p;
}

absl::Status DerpdProcess::launch(const DerpdOptions& opts) {
  absl::StatusOr<std::string> binary = binaryFromEnv("DERPD_BINARY");
  if (!binary.ok()) return binary.status();
  absl::StatusOr<std::string> dir = makeTempDir();
  if (!dir.ok()) return dir.status();
  tempDir_ = *dir;
  keyPath_ = opts.keyPath.empty() ? tempDir_ + "/derper.key" : opts.keyPath;

  std::vector<std::string> argv;
  if (opts.openFileLimit > 0) {
    argv = {"/usr/bin/prlimit", absl::StrCat("--nofile=", opts.openFileLimit, ":", opts.openFileLimit),
            "--"};
  }
  argv.push_back(*binary);
  if (opts.defaultArgs) {
    // STUN on a free port: tests run side by side and must not share 3478.
    argv.insert(argv.end(), {"-a", "127.0.0.1:0", "-http-port", "-1", "-stun-port", "0", "-c",
                             keyPath_, "--shards", std::to_string(opts.shards)});
  }
  argv.insert(argv.end(), opts.extraArgs.begin(), opts.extraArgs.end());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", errnoText(errno)));
  }
  absl::StatusOr<pid_t> pid = spawnProcess(argv, opts.env, fds[1], fds[1]);
  ::close(fds[1]);
  if (!pid.ok()) {
    ::close(fds[0]);
    return pid.status();
  }
  pid_ = *pid;
  outFd_ = fds[0];
  std::fprintf(stderr, "[test] started derpd pid %d: %s\n", pid_, absl::StrJoin(argv, " ").c_str());
  collector_ = std::thread([this] { collect(); });
  return absl::OkStatus();
}

DerpdProcess::~DerpdProcess() {
  if (pid_ > 0 && running()) {
    // SIGINT closes everything at once; SIGTERM would drain (graceful restart).
    ::kill(pid_, SIGINT);
    if (!waitExit(kStopGrace).ok()) {
      ::kill(pid_, SIGKILL);
      (void)waitExit(kStopGrace);
    }
  }
  if (collector_.joinable()) collector_.join();
  if (outFd_ >= 0) ::close(outFd_);
  if (!tempDir_.empty()) removeTree(tempDir_);
}

void DerpdProcess::collect() {
  std::array<char, 4096> buf;
  for (;;) {
    pollfd p{outFd_, POLLIN, 0};
    int n = ::poll(&p, 1, kCollectorPollMs);
    if (n == 0) {
      // The pipe stays open only while derpd (or a child of it) runs; once it
      // has been reaped, stop waiting for an EOF that may never come.
      std::lock_guard<std::mutex> lock(mu_);
      if (exitCode_.has_value()) break;
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ssize_t r = ::read(outFd_, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    appendOutput(std::string_view(buf.data(), static_cast<size_t>(r)));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!partial_.empty()) lines_.push_back(std::exchange(partial_, {}));
  eof_ = true;
  cv_.notify_all();
}

void DerpdProcess::appendOutput(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (char c : bytes) {
    if (c != '\n') {
      partial_.push_back(c);
      continue;
    }
    std::fprintf(stderr, "[derpd %d] %s\n", pid_, partial_.c_str());
    lines_.push_back(std::exchange(partial_, {}));
  }
  cv_.notify_all();
}

absl::Status DerpdProcess::waitListening(Nanos timeout) {
  Nanos deadline = now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  size_t checked = 0;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      if (std::optional<uint16_t> port = portFromLine(lines_[checked]); port.has_value()) {
        port_ = *port;
        return absl::OkStatus();
      }
    }
    if (eof_) {
      return absl::UnavailableError(
          absl::StrCat("derpd ended its output before logging 'listening on'; it printed:\n",
                       absl::StrJoin(lines_, "\n")));
    }
    Nanos left = deadline - now();
    if (left <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("derpd did not log 'listening on http://HOST:PORT' within ",
                       timeout / kMillisecond, " ms; it printed:\n", absl::StrJoin(lines_, "\n")));
    }
    cv_.wait_for(lock, std::chrono::nanoseconds(left));
  }
}

std::vector<std::string> DerpdProcess::logLines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

std::string DerpdProcess::logText() const { return absl::StrJoin(logLines(), "\n"); }

std::optional<std::string> DerpdProcess::findLog(std::string_view needle) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& line : lines_) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return std::nullopt;
}

bool DerpdProcess::waitForLog(std::string_view needle, Nanos timeout) const {
  Nanos deadline = now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  size_t checked = 0;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      if (lines_[checked].find(needle) != std::string::npos) return true;
    }
    Nanos left = deadline - now();
    if (left <= 0 || eof_) return false;
    cv_.wait_for(lock, std::chrono::nanoseconds(left));
  }
}

bool DerpdProcess::waitForOutputEnd(Nanos timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::nanoseconds(timeout), [this] { return eof_; });
}

absl::Status DerpdProcess::sendSignal(int sig) {
  if (!running()) return absl::FailedPreconditionError("derpd is not running");
  if (::kill(pid_, sig) != 0) return absl::InternalError(absl::StrCat("kill: ", errnoText(errno)));
  return absl::OkStatus();
}

bool DerpdProcess::running() {
  if (exitCode_.has_value()) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    std::lock_guard<std::mutex> lock(mu_);
    exitCode_ = decodeWaitStatus(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> DerpdProcess::waitExit(Nanos timeout) {
  Nanos deadline = now() + timeout;
  while (running()) {
    if (now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("derpd still running after ", timeout / kMillisecond, " ms"));
    }
    ::usleep(5000);
  }
  return *exitCode_;
}

absl::StatusOr<CommandResult> runCommand(const std::vector<std::string>& argv, const EnvVars& env,
                                         Nanos timeout) {
  int outPipe[2];
  int errPipe[2];
  if (::pipe2(outPipe, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  if (::pipe2(errPipe, O_CLOEXEC) != 0) {
    ::close(outPipe[0]);
    ::close(outPipe[1]);
    return absl::InternalError("pipe");
  }
  absl::StatusOr<pid_t> pid = spawnProcess(argv, env, outPipe[1], errPipe[1]);
  ::close(outPipe[1]);
  ::close(errPipe[1]);
  CommandResult result;
  std::array<pollfd, 2> fds = {pollfd{outPipe[0], POLLIN, 0}, pollfd{errPipe[0], POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&result.out, &result.err};
  Nanos deadline = now() + timeout;
  bool timedOut = false;
  while (pid.ok() && (fds[0].fd >= 0 || fds[1].fd >= 0)) {
    Nanos left = deadline - now();
    if (left <= 0) {
      timedOut = true;
      break;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left / kMillisecond) + 1);
    if (n < 0 && errno != EINTR) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (!pid.ok()) return pid.status();
  if (timedOut) ::kill(*pid, SIGKILL);
  int status = 0;
  // Both pipes closed (or the child was killed): it ends momentarily.
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timedOut) {
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish within ",
                                                    timeout / kMillisecond, " ms; stdout:\n",
                                                    result.out, "\nstderr:\n", result.err));
  }
  result.exitCode = decodeWaitStatus(status);
  return result;
}

}  // namespace derpd::testing
