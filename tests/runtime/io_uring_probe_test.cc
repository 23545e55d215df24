// The start-up probe: on this machine io_uring works and so does the probe;
// for each way a host refuses io_uring the advice names the cause and the fix.
// (The EPERM and ENOSYS paths run for real under a seccomp filter in
// tests/tools/io_uring_refused_test.sh.)
#include "runtime/io_uring_probe.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace derpd {
namespace {

TEST(IoUringProbeTest, PassesWhereIoUringWorks) { EXPECT_TRUE(probeIoUring().ok()); }

TEST(IoUringProbeTest, DisabledSysctlNamesTheSysctl) {
  const std::string a = ioUringSetupAdvice(EPERM, "6.8.0", 2);
  EXPECT_NE(a.find("kernel.io_uring_disabled=2"), std::string::npos) << a;
  EXPECT_NE(a.find("sysctl -w kernel.io_uring_disabled=0"), std::string::npos) << a;
  const std::string g = ioUringSetupAdvice(EPERM, "6.8.0", 1);
  EXPECT_NE(g.find("kernel.io_uring_group"), std::string::npos) << g;
}

TEST(IoUringProbeTest, SeccompNamesTheShippedProfile) {
  for (std::optional<int> sysctl : {std::optional<int>(), std::optional<int>(0)}) {
    const std::string a = ioUringSetupAdvice(EPERM, "6.1.0", sysctl);
    EXPECT_NE(a.find("seccomp filter refuses it"), std::string::npos) << a;
    EXPECT_NE(a.find("k8s/seccomp/derpd.json"), std::string::npos) << a;
  }
  const std::string n = ioUringSetupAdvice(ENOSYS, "5.4.0", std::nullopt);
  EXPECT_NE(n.find("CONFIG_IO_URING"), std::string::npos) << n;
  EXPECT_NE(n.find("k8s/seccomp/derpd.json"), std::string::npos) << n;
  EXPECT_NE(n.find(std::string("Linux ") + kMinimumKernel), std::string::npos) << n;
}

TEST(IoUringProbeTest, MemlockAndOldKernels) {
  const std::string m = ioUringSetupAdvice(ENOMEM, "5.10.0", std::nullopt);
  EXPECT_NE(m.find("LimitMEMLOCK"), std::string::npos) << m;
  const std::string e = ioUringSetupAdvice(EINVAL, "5.4.0", std::nullopt);
  EXPECT_NE(e.find("(5.4.0)"), std::string::npos) << e;
  EXPECT_NE(e.find(kMinimumKernel), std::string::npos) << e;
}

}  // namespace
}  // namespace derpd
