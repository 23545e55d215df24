// The cgroup CPU quota reader over the files a container runtime leaves:
// cgroup v2 (cpu.max) and v1 (cpu.cfs_quota_us), nested limits, a cgroup
// namespace's mount root, and no limit at all. The same reader runs against a
// real v1 cgroup in tests/integration/cgroup_shards_test.sh.
#include "base/cpu_quota.h"

#include <gtest/gtest.h>

#include <map>

namespace derpd {
namespace {

struct Files {
  std::map<std::string, std::string> files;
  FileReader reader() {
    return [this](const std::string& p) -> std::optional<std::string> {
      auto it = files.find(p);
      if (it == files.end()) return std::nullopt;
      return it->second;
    };
  }
};

constexpr const char* kV2Mount =
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate\n";
constexpr const char* kV1Mounts =
    "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:8 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "26 24 0:23 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n";

TEST(CpuQuotaTest, V2PodLimitIsTheTightestOnThePath) {
  Files fs;
  fs.files["/sys/fs/cgroup/kubepods.slice/cpu.max"] = "max 100000\n";
  fs.files["/sys/fs/cgroup/kubepods.slice/pod1/cpu.max"] = "150000 100000\n";
  fs.files["/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max"] = "max 100000\n";
  auto q = cgroupCpuQuota(kV2Mount, "0::/kubepods.slice/pod1/ctr\n", fs.reader());
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus, 1.5);
  EXPECT_EQ(q->file, "/sys/fs/cgroup/kubepods.slice/pod1/cpu.max");
  EXPECT_EQ(cpusForQuota(q->cpus), 2u);
}

TEST(CpuQuotaTest, V2NoLimitAnywhere) {
  Files fs;
  fs.files["/sys/fs/cgroup/a/cpu.max"] = "max 100000\n";
  EXPECT_FALSE(cgroupCpuQuota(kV2Mount, "0::/a\n", fs.reader()).has_value());
  EXPECT_FALSE(cgroupCpuQuota("", "0::/a\n", fs.reader()).has_value());  // nothing mounted
}

// Inside a cgroup namespace the process sees "/" as its cgroup and the mount's
// root is its own cgroup; with a bind-mounted subtree the mount root is a path.
TEST(CpuQuotaTest, NamespaceAndMountRoot) {
  Files fs;
  fs.files["/sys/fs/cgroup/cpu.max"] = "200000 100000";
  auto q = cgroupCpuQuota(kV2Mount, "0::/\n", fs.reader());
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus, 2.0);

  Files bind;
  bind.files["/sys/fs/cgroup/ctr/cpu.max"] = "50000 100000";
  const char* mount = "30 23 0:26 /pod7 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  q = cgroupCpuQuota(mount, "0::/pod7/ctr\n", bind.reader());
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus, 0.5);
  EXPECT_EQ(cpusForQuota(q->cpus), 1u);
  // A path outside the mount's root cannot be reached through it.
  EXPECT_FALSE(cgroupCpuQuota(mount, "0::/other/ctr\n", bind.reader()).has_value());
}

TEST(CpuQuotaTest, V1CfsQuota) {
  Files fs;
  fs.files["/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us"] = "300000\n";
  fs.files["/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us"] = "100000\n";
  fs.files["/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us"] = "-1\n";
  fs.files["/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us"] = "100000\n";
  const char* cgroup = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
  auto q = cgroupCpuQuota(kV1Mounts, cgroup, fs.reader());
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus, 3.0);
  EXPECT_EQ(q->file, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us");
}

// Hybrid hosts mount both; the tighter limit wins.
TEST(CpuQuotaTest, HybridTakesTheTighter) {
  Files fs;
  fs.files["/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us"] = "400000";
  fs.files["/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us"] = "100000";
  fs.files["/sys/fs/cgroup/x/cpu.max"] = "250000 100000";
  auto q =
      cgroupCpuQuota(std::string(kV1Mounts) + kV2Mount, "4:cpu,cpuacct:/x\n0::/x\n", fs.reader());
  ASSERT_TRUE(q.has_value());
  EXPECT_DOUBLE_EQ(q->cpus, 2.5);
  EXPECT_EQ(cpusForQuota(q->cpus), 3u);
}

TEST(CpuQuotaTest, GarbageIsNoLimit) {
  Files fs;
  fs.files["/sys/fs/cgroup/a/cpu.max"] = "lots 100000";
  fs.files["/sys/fs/cgroup/b/cpu.max"] = "100000";
  fs.files["/sys/fs/cgroup/c/cpu.max"] = "0 100000";
  for (const char* c : {"0::/a", "0::/b", "0::/c", "garbage", "0:/a"}) {
    EXPECT_FALSE(cgroupCpuQuota(kV2Mount, c, fs.reader()).has_value()) << c;
  }
  EXPECT_FALSE(cgroupCpuQuota("30 23 0:26 / /x rw -", "0::/a", fs.reader()).has_value());
}

TEST(CpuQuotaTest, CpusForQuotaRoundsUp) {
  EXPECT_EQ(cpusForQuota(0.1), 1u);
  EXPECT_EQ(cpusForQuota(1.0), 1u);
  EXPECT_EQ(cpusForQuota(1.01), 2u);
  EXPECT_EQ(cpusForQuota(96.0), 96u);
}

}  // namespace
}  // namespace derpd
