// DerpdProcess: a real derpd binary started for one integration test.
//
// The binary comes from $DERPD_BINARY (set by tests/integration/meson.build).
// Its stdout and stderr go to one pipe; start() reads lines until derpd logs
// "listening on http://HOST:PORT" and returns with the port, then a background
// thread keeps collecting lines so a test can look for log messages. The
// destructor stops the process (SIGTERM, then SIGKILL after a grace period) and
// removes its temporary directory. Methods are for the test's thread; log
// accessors may be called while the collector runs.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "derp/key.h"

namespace derpd::testing {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

struct DerpdOptions {
  // When true the command line starts with
  // "-a 127.0.0.1:0 -http-port -1 -c <keyPath> --shards <shards>".
  bool defaultArgs = true;
  int shards = 2;
  // Empty: <fresh temporary directory>/derper.key.
  std::string keyPath;
  std::vector<std::string> extraArgs;  // appended after the defaults
  // > 0: derpd runs with this open-file limit, soft and hard (through
  // util-linux's prlimit, which then execs derpd: the pid is derpd's).
  int openFileLimit = 0;
  EnvVars env;                         // added to (or replacing in) the inherited environment
};

class DerpdProcess {
 public:
  // Starts derpd and waits (up to timeout) for its "listening on" line. On
  // failure the message includes what derpd printed.
  static absl::StatusOr<std::unique_ptr<DerpdProcess>> start(DerpdOptions opts,
                                                             Nanos timeout = 10 * kSecond);
  // Starts derpd without waiting for anything (for tests of startup failures).
  static absl::StatusOr<std::unique_ptr<DerpdProcess>> spawn(DerpdOptions opts);
  ~DerpdProcess();

  DerpdProcess(const DerpdProcess&) = delete;
  DerpdProcess& operator=(const DerpdProcess&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& keyPath() const { return keyPath_; }
  const std::string& tempDir() const { return tempDir_; }

  // Lines printed so far (stdout and stderr, without newlines).
  std::vector<std::string> logLines() const;
  std::string logText() const;  // all lines joined with '\n'
  // First line so far containing needle.
  std::optional<std::string> findLog(std::string_view needle) const;
  // Waits until a line containing needle has been printed.
  bool waitForLog(std::string_view needle, Nanos timeout) const;

  // Waits until derpd's output has ended (it closed the pipe, normally by
  // exiting) so that logLines() holds everything it printed.
  bool waitForOutputEnd(Nanos timeout) const;

  absl::Status sendSignal(int sig);
  // Waits for the process to end. Returns its exit code, or 128 + signal when
  // a signal ended it; DeadlineExceeded if it is still running at the timeout.
  absl::StatusOr<int> waitExit(Nanos timeout);
  bool running();

 private:
  DerpdProcess() = default;
  absl::Status launch(const DerpdOptions& opts);
  absl::Status waitListening(Nanos timeout);
  void collect();  // background thread: read lines until EOF
  void appendOutput(std::string_view bytes);

  pid_t pid_ = -1;
  std::optional<int> exitCode_;
  int outFd_ = -1;
  uint16_t port_ = 0;
  std::string tempDir_;
  std::string keyPath_;
  std::thread collector_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;  // guarded by mu_
  std::string partial_;             // guarded by mu_: an unterminated last line
  bool eof_ = false;                // guarded by mu_
};

// Result of running a short-lived command to completion.
struct CommandResult {
  int exitCode = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
};

// Runs argv (argv[0] is a path) with extra environment, capturing stdout and
// stderr. Kills it and fails if it runs longer than timeout.
absl::StatusOr<CommandResult> runCommand(const std::vector<std::string>& argv, const EnvVars& env,
                                         Nanos timeout);

// Path of a binary named by an environment variable (DERPD_BINARY, ...).
absl::StatusOr<std::string> binaryFromEnv(const char* var);

// A fresh directory under $TMPDIR (or /tmp) and its removal with its files.
absl::StatusOr<std::string> makeTempDir();
void removeTree(const std::string& dir);

// A derpd started with --metrics-addr, and the port that listener got.
struct MetricsNode {
  std::unique_ptr<DerpdProcess> process;
  uint16_t metricsPort = 0;
};
// Starts derpd (waiting for its listening line) and reads its metrics port.
absl::StatusOr<MetricsNode> startWithMetrics(DerpdOptions opts);

// The port from derpd's "/metrics and /debug/ on http://127.0.0.1:PORT" line.
absl::StatusOr<uint16_t> metricsPortOf(const DerpdProcess& d);
// The key from derpd's "public key nodekey:<hex>" line.
absl::StatusOr<derp::NodeKey> serverKeyOf(const DerpdProcess& d);

}  // namespace derpd::testing
