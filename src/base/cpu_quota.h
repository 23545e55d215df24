// How many CPUs this process's cgroups let it use: the CPU quota a container
// runtime sets (Kubernetes' CPU limit, `docker run --cpus`, systemd's
// CPUQuota=), which the affinity mask does not show. derpd starts one shard
// per CPU it may use, not per CPU it can see.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace derpd {

struct CpuQuota {
  double cpus = 0;   // quota / period of the most restrictive cgroup
  std::string file;  // where it was found (cpu.max or cpu.cfs_quota_us)
};

// Reads a file's contents; nullopt when it cannot be read.
using FileReader = std::function<std::optional<std::string>(const std::string& path)>;

// The tightest CPU quota on the way from this process's cgroup up to the root
// of its hierarchy, for cgroup v2 (cpu.max: "QUOTA PERIOD" or "max PERIOD")
// and v1's cpu controller (cpu.cfs_quota_us, -1 for none, and
// cpu.cfs_period_us). mountinfo and cgroup are /proc/self/mountinfo and
// /proc/self/cgroup; the mount's root is honoured, as in a cgroup namespace.
// nullopt: no quota anywhere (or no cgroup file system).
std::optional<CpuQuota> cgroupCpuQuota(absl::string_view mountinfo, absl::string_view cgroup,
                                       const FileReader& read);

// The same for this process, reading /proc and /sys.
std::optional<CpuQuota> cgroupCpuQuota();

// Shards for a quota: ceil(cpus), at least 1.
size_t cpusForQuota(double cpus);

}  // namespace derpd
