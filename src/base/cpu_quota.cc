#include "base/cpu_quota.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/files.h"

namespace derpd {
namespace {

struct Hierarchy {
  std::string mountRoot;   // the cgroup path the mount shows at its mount point
  std::string mountPoint;  // where it is mounted
};

bool hasWord(absl::string_view list, absl::string_view word) {
  for (absl::string_view w : absl::StrSplit(list, ',')) {
    if (w == word) return true;
  }
  return false;
}

// mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
// Finds the cgroup2 mount (v2) or the v1 mount whose super options name `cpu`.
std::optional<Hierarchy> findMount(absl::string_view mountinfo, bool v2) {
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") dash++;
    if (dash < 5 || dash + 3 > f.size()) continue;
    const absl::string_view fstype = f[dash + 1];
    if (v2 ? fstype != "cgroup2" : (fstype != "cgroup" || !hasWord(f[dash + 3], "cpu"))) continue;
    return Hierarchy{std::string(f[3]), std::string(f[4])};
  }
  return std::nullopt;
}

// /proc/self/cgroup: "ID:CONTROLLERS:PATH"; v2's line is "0::PATH".
std::optional<std::string> findPath(absl::string_view cgroup, bool v2) {
  for (absl::string_view line : absl::StrSplit(cgroup, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (v2 ? (f[0] == "0" && f[1].empty()) : hasWord(f[1], "cpu")) return std::string(f[2]);
  }
  return std::nullopt;
}

// quota / period from their texts; nullopt for "max", -1 or anything else
// that is not two positive numbers.
std::optional<double> ratio(absl::string_view quotaText, absl::string_view periodText) {
  double quota = 0, period = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(quotaText), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(periodText), &period) || quota <= 0 ||
      period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

// Quota / period read from one directory, or nullopt for none there: v2 has
// both in cpu.max ("QUOTA PERIOD"), v1 one per file.
std::optional<double> quotaIn(const std::string& dir, bool v2, const FileReader& read,
                              std::string& file) {
  if (v2) {
    file = dir + "/cpu.max";
    std::optional<std::string> text = read(file);
    if (!text) return std::nullopt;
    std::vector<absl::string_view> f = absl::StrSplit(*text, ' ', absl::SkipEmpty());
    if (f.size() != 2) return std::nullopt;
    return ratio(f[0], f[1]);
  }
  file = dir + "/cpu.cfs_quota_us";
  std::optional<std::string> q = read(file);
  std::optional<std::string> p = read(dir + "/cpu.cfs_period_us");
  if (!q || !p) return std::nullopt;
  return ratio(*q, *p);
}

std::optional<CpuQuota> tightest(absl::string_view mountinfo, absl::string_view cgroup, bool v2,
                                 const FileReader& read) {
  std::optional<Hierarchy> h = findMount(mountinfo, v2);
  std::optional<std::string> path = findPath(cgroup, v2);
  if (!h || !path) return std::nullopt;
  // The process's path is relative to the hierarchy's root; the mount shows
  // mountRoot at its mount point (a cgroup namespace or a bind mount).
  absl::string_view rel = *path;
  if (h->mountRoot != "/" && !absl::ConsumePrefix(&rel, h->mountRoot)) return std::nullopt;
  std::string dir = h->mountPoint;
  if (!rel.empty() && rel != "/") dir += std::string(rel);
  std::optional<CpuQuota> best;
  for (;;) {
    std::string file;
    if (std::optional<double> cpus = quotaIn(dir, v2, read, file)) {
      if (!best || *cpus < best->cpus) best = CpuQuota{*cpus, file};
    }
    if (dir.size() <= h->mountPoint.size()) break;
    dir.resize(dir.rfind('/'));
    if (dir.size() < h->mountPoint.size()) break;
  }
  return best;
}

}  // namespace

std::optional<CpuQuota> cgroupCpuQuota(absl::string_view mountinfo, absl::string_view cgroup,
                                       const FileReader& read) {
  std::optional<CpuQuota> v2 = tightest(mountinfo, cgroup, true, read);
  std::optional<CpuQuota> v1 = tightest(mountinfo, cgroup, false, read);
  if (v2 && v1) return v2->cpus <= v1->cpus ? v2 : v1;
  return v2 ? v2 : v1;
}

std::optional<CpuQuota> cgroupCpuQuota() {
  FileReader read = [](const std::string& path) -> std::optional<std::string> {
    absl::StatusOr<std::string> text = readSmallFile(path, 1 << 20, "cgroup");
    if (!text.ok()) return std::nullopt;
    return *std::move(text);
  };
  std::optional<std::string> mountinfo = read("/proc/self/mountinfo");
  std::optional<std::string> cgroup = read("/proc/self/cgroup");
  if (!mountinfo || !cgroup) return std::nullopt;
  return cgroupCpuQuota(*mountinfo, *cgroup, read);
}

size_t cpusForQuota(double cpus) {
  const double up = std::ceil(cpus - 1e-9);
  return up < 1 ? 1 : static_cast<size_t>(up);
}

}  // namespace derpd
