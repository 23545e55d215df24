#include "bench_context.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

namespace derpd::bench {

std::string parseServerUrl(const std::string& url, Target& target) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    target.tls = true;
    target.port = 443;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    target.tls = false;
    target.port = 80;
    rest = url.substr(7);
  } else {
    return "the URL must start with http:// or https://";
  }
  rest = rest.substr(0, rest.find('/'));
  size_t colon = rest.rfind(':');
  if (!rest.empty() && rest[0] == '[') {  // [v6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos) return "unterminated [ in the URL";
    target.host = rest.substr(1, close - 1);
    colon = rest.find(':', close);
  } else {
    target.host = rest.substr(0, colon);
  }
  if (colon != std::string::npos) {
    const long p = std::strtol(rest.c_str() + colon + 1, nullptr, 10);
    if (p <= 0 || p > 65535) return "bad port in the URL";
    target.port = static_cast<uint16_t>(p);
  }
  if (target.host.empty()) return "no host in the URL";
  target.url = url;
  return "";
}

void addCpu(BenchContext& ctx, const CpuMeter::Usage& u, JsonLine& j, TableRow& row) {
  j.add("seconds", u.wall, 3);
  if (u.haveServer()) {
    j.add("server_cpu_s", u.serverCpu, 3).add("server_cpu_pct", u.serverPct(), 1);
    row.serverCpu = format("%.0f%%", u.serverPct());
  }
  j.add("gen_cpu_s", u.genCpu, 3).add("gen_cpu_pct", u.genPct(), 1);
  row.genCpu = format("%.0f%%", u.genPct());
  if (u.loadBusyPct >= 0) {
    j.add("load_cpus_busy_pct", u.loadBusyPct, 1);
    // Others' work on the harness's CPUs shows as busy beyond ours.
    if (u.loadBusyPct - u.genPct() / ctx.loadCores > 15) {
      row.genCpu += format(" (busy %.0f%%)", u.loadBusyPct);
    }
  }
  const bool saturated = generatorSaturated(ctx, u);
  j.add("gen_saturated", saturated);
  if (saturated) {
    row.genCpu += "*";
    row.note += row.note.empty() ? "" : "; ";
    row.note += "GENERATOR SATURATED";
    ctx.progress.clear();
    std::fprintf(stderr,
                 "warning: the load generator used %.0f%% of its %d CPU(s) (%.0f%% busy in all) "
                 "in %s %s: the figure is (at least partly) the generator's limit\n",
                 u.genPct(), ctx.loadCores, u.loadBusyPct, row.scenario.c_str(),
                 row.what.c_str());
  }
}

Connected connectMany(const BenchContext& ctx, int n, int threads, double seconds,
                      const std::vector<derp::PrivateKey>* keys) {
  Connected out;
  out.clients.resize(static_cast<size_t>(n));
  std::vector<std::vector<double>> times(static_cast<size_t>(threads));
  std::vector<std::string> errors(static_cast<size_t>(threads));
  std::atomic<int> next{0}, failures{0};
  const auto limit = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      const size_t me = static_cast<size_t>(t);
      for (;;) {
        const int i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= n || std::chrono::steady_clock::now() >= limit) return;
        client::ClientOptions o = ctx.target.clientOptions();
        o.timeout = 10 * kSecond;
        if (keys != nullptr) o.key = (*keys)[static_cast<size_t>(i)];
        const auto t0 = std::chrono::steady_clock::now();
        auto c = client::DerpClient::connect(o);
        if (!c.ok()) {
          failures.fetch_add(1, std::memory_order_relaxed);
          if (errors[me].empty()) errors[me] = std::string(c.status().message());
          continue;
        }
        times[me].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
        (*c)->releaseBuffers();
        out.clients[static_cast<size_t>(i)] = std::move(*c);
      }
    });
  }
  for (auto& th : pool) th.join();
  for (size_t t = 0; t < times.size(); t++) {
    out.connectMs.insert(out.connectMs.end(), times[t].begin(), times[t].end());
    if (out.firstError.empty()) out.firstError = errors[t];
  }
  out.ok = static_cast<int>(out.connectMs.size());
  out.failures = failures.load();
  return out;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

std::string checkFileLimits(const BenchContext& ctx, int fds) {
  const rlim_t want = static_cast<rlim_t>(fds) + 256;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t have = raiseFileLimit(want);
  if (have < want) {
    return format("needs %llu file descriptors but RLIMIT_NOFILE can only be raised to %llu "
                  "(hard limit %llu); raise the hard limit (ulimit -Hn as root, or "
                  "/etc/security/limits.conf) to run it",
                  static_cast<unsigned long long>(want), static_cast<unsigned long long>(have),
                  static_cast<unsigned long long>(rl.rlim_max));
  }
  if (ctx.target.serverPid) {
    const long server = processFileLimit(ctx.target.serverPid);
    if (server > 0 && server < fds + 64) {
      return format("the server's RLIMIT_NOFILE is %ld, below the %d connections; start it "
                    "with a higher ulimit -n",
                    server, fds);
    }
  }
  return "";
}

}  // namespace derpd::bench
