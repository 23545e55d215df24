// Whether this process may use io_uring the way derpd does, asked once at
// start-up before anything is bound: a ring can be set up (seccomp filters,
// kernel.io_uring_disabled and old kernels refuse it), and the features every
// shard relies on work: provided buffer rings (Linux 5.19), multishot receive
// on a stream and multishot recvmsg on a datagram socket (6.0), accept, send.
// A refusal comes back as one message naming the cause and what to do.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace derpd {

// The oldest kernel with everything derpd needs (README: "Requirements").
inline constexpr const char* kMinimumKernel = "6.0";

// What io_uring_setup's errno (positive) means here, and the fix, given the
// kernel's release and kernel.io_uring_disabled (nullopt: the sysctl does not
// exist, kernels before 6.6). Pure, for the unit tests.
std::string ioUringSetupAdvice(int err, absl::string_view kernelRelease,
                               std::optional<int> disabledSysctl);

// The probe: OK, or FailedPrecondition with the advice.
absl::Status probeIoUring();

}  // namespace derpd
