// tls_handshake_storm: how many TLS 1.3 + DERP handshakes a running server
// completes per CPU-second (PERFORMANCE.md "connect storm").
//
// Storm mode: K threads each connect (TCP, TLS with the certificate not
// checked, HTTP upgrade, ServerKey/ClientInfo/ServerInfo) and close, N
// connections in all, as fast as they can. Hold mode (--hold K): K clients
// connect at once from the threads and stay; reports the time until the last
// one is registered (its ServerInfo received). With --server-pid, the server's
// CPU time over the interval gives handshakes per server CPU-second. Every
// loop is bounded by --count and by --seconds. JSON on stdout, a readable
// line on stderr.
//
//   tls_handshake_storm --port P [--host 127.0.0.1] [--threads 4] [--count 2000]
//                       [--seconds 30] [--server-pid PID] [--hold K] [--plain]
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/derp_client.h"
#include "proc_stats.h"

namespace {

using namespace derpd;
using SteadyClock = std::chrono::steady_clock;

struct Args {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int threads = 4;
  int count = 2000;
  double seconds = 30;  // bound on the whole run
  pid_t serverPid = 0;
  int hold = 0;  // > 0: hold mode with this many clients
  bool tls = true;
};

bool parseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "--plain") {
      a.tls = false;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--host") a.host = v;
    else if (k == "--port") a.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--count") a.count = std::stoi(v);
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--server-pid") a.serverPid = static_cast<pid_t>(std::stoi(v));
    else if (k == "--hold") a.hold = std::stoi(v);
    else return false;
  }
  return a.port != 0 && a.threads > 0 && a.threads <= 256 && a.count > 0 && a.seconds > 0 &&
         a.seconds <= 600 && a.hold >= 0 && a.hold <= 100000;
}

// One thread's share of the work: connect times and failures.
struct Tally {
  std::vector<double> connectMs;
  int failures = 0;
  std::string firstError;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parseArgs(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: tls_handshake_storm --port P [--host H] [--threads K] [--count N] "
                 "[--seconds S] [--server-pid PID] [--hold K] [--plain]\n");
    return 2;
  }
  const int total = a.hold > 0 ? a.hold : a.count;
  if (a.hold > 0) {
    const rlim_t have = bench::raiseFileLimit(static_cast<rlim_t>(total) + 1000);
    if (have < static_cast<rlim_t>(total) + 100) {
      std::fprintf(stderr, "RLIMIT_NOFILE is %llu: too low to hold %d connections\n",
                   static_cast<unsigned long long>(have), total);
      return 1;
    }
  }
  // Keys up front, so the timed loop does only what a connecting client does.
  std::vector<derp::PrivateKey> keys;
  keys.reserve(static_cast<size_t>(total));
  for (int i = 0; i < total; i++) keys.push_back(derp::PrivateKey::generate());

  std::atomic<int> next{0};
  std::vector<Tally> tallies(static_cast<size_t>(a.threads));
  std::vector<std::unique_ptr<client::DerpClient>> held(a.hold > 0 ? total : 0);
  const auto start = SteadyClock::now();
  const auto limit = start + std::chrono::duration<double>(a.seconds);
  const double serverCpu0 = a.serverPid ? bench::processCpuSeconds(a.serverPid) : 0;
  const double genCpu0 = bench::selfCpuSeconds();
  std::vector<std::thread> threads;
  for (int t = 0; t < a.threads; t++) {
    threads.emplace_back([&, t] {
      Tally& tally = tallies[static_cast<size_t>(t)];
      for (;;) {
        const int i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= total || SteadyClock::now() >= limit) return;
        client::ClientOptions o;
        o.host = a.host;
        o.port = a.port;
        o.tls = a.tls;
        o.insecure = true;
        o.key = keys[static_cast<size_t>(i)];
        const auto t0 = SteadyClock::now();
        auto c = client::DerpClient::connect(o);
        const double ms =
            std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
        if (!c.ok()) {
          if (tally.failures++ == 0) tally.firstError = std::string(c.status().message());
          continue;
        }
        tally.connectMs.push_back(ms);
        if (a.hold > 0) {
          (*c)->releaseBuffers();
          held[static_cast<size_t>(i)] = std::move(*c);
        }
        // Storm mode: the client closes here (close_notify, then close).
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double genCpu = bench::selfCpuSeconds() - genCpu0;
  const double serverCpu = a.serverPid ? bench::processCpuSeconds(a.serverPid) - serverCpu0 : 0;

  std::vector<double> all;
  int failures = 0;
  std::string firstError;
  for (auto& t : tallies) {
    all.insert(all.end(), t.connectMs.begin(), t.connectMs.end());
    failures += t.failures;
    if (firstError.empty()) firstError = t.firstError;
  }
  const size_t ok = all.size();
  const double p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  const double maxMs = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  held.clear();

  std::printf("{\"mode\":\"%s\",\"tls\":%s,\"threads\":%d,\"attempted\":%d,\"ok\":%zu,"
              "\"failures\":%d,\"seconds\":%.3f,\"per_s\":%.0f,\"connect_ms_p50\":%.2f,"
              "\"connect_ms_p99\":%.2f,\"connect_ms_max\":%.2f,\"gen_cpu_s\":%.2f,"
              "\"gen_cpu_pct\":%.0f",
              a.hold > 0 ? "hold" : "storm", a.tls ? "true" : "false", a.threads,
              std::min(next.load(), total), ok, failures, secs,
              static_cast<double>(ok) / secs, p50, p99, maxMs, genCpu, 100 * genCpu / secs);
  if (a.hold > 0) std::printf(",\"time_to_all_registered_ms\":%.1f", secs * 1e3);
  if (a.serverPid && serverCpu > 0) {
    std::printf(",\"server_cpu_s\":%.2f,\"server_cpu_pct\":%.0f,"
                "\"handshakes_per_server_cpu_s\":%.0f,\"server_us_per_handshake\":%.1f",
                serverCpu, 100 * serverCpu / secs, static_cast<double>(ok) / serverCpu,
                1e6 * serverCpu / static_cast<double>(std::max<size_t>(ok, 1)));
  }
  if (!firstError.empty()) std::printf(",\"first_error\":\"%s\"", firstError.c_str());
  std::printf("}\n");
  std::fflush(stdout);

  std::fprintf(stderr, "%s %s: %zu handshakes (%d failed) in %.2f s = %.0f/s, connect p50 %.2f ms "
               "p99 %.2f ms, generator CPU %.0f%%",
               a.tls ? "TLS" : "plain", a.hold > 0 ? "hold" : "storm", ok, failures, secs,
               static_cast<double>(ok) / secs, p50, p99, 100 * genCpu / secs);
  if (a.serverPid && serverCpu > 0) {
    std::fprintf(stderr, ", server CPU %.0f%% = %.0f handshakes per server CPU-second",
                 100 * serverCpu / secs, static_cast<double>(ok) / serverCpu);
  }
  if (!firstError.empty()) std::fprintf(stderr, " [first error: %s]", firstError.c_str());
  std::fprintf(stderr, "\n");
  return failures == 0 && ok > 0 ? 0 : 1;
}
