// Helper processes a test starts and stops (pebble, the verification
// stand-ins): started with their output appended to a log file, stopped with
// SIGTERM, then SIGKILL after 5 s.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "integration/derpd_process.h"

namespace derpd::testing {

// Starts argv (argv[0] a path) with `env` added to the environment.
absl::StatusOr<pid_t> launchLogged(const std::vector<std::string>& argv, const EnvVars& env,
                                   const std::string& logPath);
void stopChild(pid_t pid);

}  // namespace derpd::testing
