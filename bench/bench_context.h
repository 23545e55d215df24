// What every derp-bench scenario shares: the server under test (its URL,
// TLS settings, PID and STUN address), the run's settings, the reference
// rates measured at the start, the report and the progress line, and the CPU
// meter that reads the server's and the harness's CPU time around a measured
// interval. Scenarios run one after another on the harness's main thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_report.h"
#include "client/derp_client.h"
#include "proc_stats.h"
#include "tcp_loopback_rate.h"

namespace derpd::bench {

// Wall time, the server's CPU time (from /proc/PID/stat), this process's CPU
// time and how busy the harness's CPUs were (from /proc/stat, whoever used
// them) over an interval: construct at the start, stop() at the end.
class CpuMeter {
 public:
  struct Usage {
    double wall = 0;
    double serverCpu = -1;  // seconds; negative when unknown
    double genCpu = 0;
    double loadBusyPct = -1;  // of the harness's CPUs, by anyone; negative when unknown
    bool haveServer() const { return serverCpu >= 0; }
    double serverPct() const { return 100 * serverCpu / wall; }
    double genPct() const { return 100 * genCpu / wall; }
  };
  CpuMeter(pid_t serverPid, std::vector<int> loadCpus)
      : serverPid_(serverPid),
        loadCpus_(std::move(loadCpus)),
        start_(std::chrono::steady_clock::now()),
        server0_(serverPid ? processCpuSeconds(serverPid) : -1),
        gen0_(selfCpuSeconds()),
        load0_(cpuJiffies(loadCpus_)) {}
  Usage stop() const {
    Usage u;
    u.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    u.genCpu = selfCpuSeconds() - gen0_;
    if (server0_ >= 0) {
      const double now = processCpuSeconds(serverPid_);
      if (now >= 0) u.serverCpu = now - server0_;
    }
    const CpuJiffies load = cpuJiffies(loadCpus_);
    if (load.total > load0_.total) {
      u.loadBusyPct = 100.0 * static_cast<double>(load.busy - load0_.busy) /
                      static_cast<double>(load.total - load0_.total);
    }
    return u;
  }

 private:
  pid_t serverPid_;
  std::vector<int> loadCpus_;
  std::chrono::steady_clock::time_point start_;
  double server0_;
  double gen0_;
  CpuJiffies load0_;
};

struct Target {
  std::string url;    // as given
  std::string label;  // names the server in the output ("derpd-tls", "derper", ...)
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  bool insecure = false;
  std::string pin;       // "sha256-raw:<hex>", or empty
  pid_t serverPid = 0;   // 0: no server CPU or RSS
  std::string stunHost;  // empty: no STUN scenario
  uint16_t stunPort = 0;
  // --receiver-url: oneway's receivers connect to this other node of a mesh
  // region, so every packet is forwarded between nodes (empty: same server).
  std::string receiverUrl;
  std::string receiverHost;
  uint16_t receiverPort = 0;
  bool receiverTls = false;

  client::ClientOptions clientOptions(bool receiver = false) const {
    client::ClientOptions o;
    const bool other = receiver && !receiverUrl.empty();
    o.host = other ? receiverHost : host;
    o.port = other ? receiverPort : port;
    o.tls = other ? receiverTls : tls;
    o.insecure = insecure;
    o.pinCertName = pin;
    return o;
  }
};

// Parses "http://H:P" or "https://H[:P][/derp]" into target; an error message
// or empty.
std::string parseServerUrl(const std::string& url, Target& target);

// The machine's reference rates, measured on the harness's CPUs in this run.
struct References {
  double aeadOpenSealBps = 0;  // AES-128-GCM open+seal of 1280 B records, per CPU-second
  TcpLoopbackRate tcp;
};

struct Settings {
  bool quick = false;
  double stepSeconds = 2;  // one measured load step
  // oneway
  int pairs = 2;
  int burst = 16;
  std::vector<size_t> sizes = {100, 1280, 16384};
  std::vector<double> rates;  // total packets/s steps; empty: doubling from a base
  int maxSteps = 8;
  bool stepsOnly = false;  // only the given rates: no unpaced step, no sparse row
  // echo
  int echoPairs = 1;
  std::vector<int> windows = {1, 16};
  size_t echoSize = 1280;
  // idle and storm
  std::vector<int> idleCounts = {1000, 10000, 50000};
  std::vector<int> stormCounts = {1000, 5000};
  int connectThreads = 4;
  double connectSeconds = 180;  // bound on connecting one batch
  // stun
  bool stunReference = true;
  // ratelimit
  size_t floodBytes = 10'000'000;
};

struct BenchContext {
  Target target;
  Settings settings;
  std::vector<int> serverCpus;  // empty: not pinned
  std::vector<int> loadCpus;    // empty: not pinned
  int loadCores = 1;            // CPUs the harness may use
  References refs;
  Report report;
  Progress progress;

  CpuMeter meter() const { return CpuMeter(target.serverPid, loadCpus); }

  // A JSON line with the fields every row has.
  JsonLine json(const char* scenario) const {
    JsonLine j;
    j.add("scenario", scenario).add("target", target.label).add("tls", target.tls);
    return j;
  }
};

// True when the harness's CPUs were >= 90% busy (by the harness, or by other
// processes of a shared machine): the figure is then (at least partly) the
// generator's limit.
inline bool generatorSaturated(const BenchContext& ctx, const CpuMeter::Usage& u) {
  return u.genCpu >= 0.9 * u.wall * ctx.loadCores || u.loadBusyPct >= 90;
}

// Adds server and generator CPU to a JSON line and a table row, and marks a
// saturated generator in both (with a warning on stderr).
void addCpu(BenchContext& ctx, const CpuMeter::Usage& u, JsonLine& j, TableRow& row);

// Connects `n` clients from `threads` threads, each freeing its buffers once
// connected (so one process can hold many). Bounded by `seconds`.
struct Connected {
  std::vector<std::unique_ptr<client::DerpClient>> clients;  // null where it failed
  std::vector<double> connectMs;
  int ok = 0;
  int failures = 0;
  std::string firstError;
};
// keys: when given (n of them), client i connects with keys[i] (a reconnect
// storm); else each with a fresh key.
Connected connectMany(const BenchContext& ctx, int n, int threads, double seconds,
                      const std::vector<derp::PrivateKey>* keys = nullptr);

// Percentile of a sample vector (reorders it); 0 when empty.
double percentile(std::vector<double>& v, double p);

// Raises this process's RLIMIT_NOFILE for `fds` descriptors and checks the
// server's; an explanation of why it cannot, or empty.
std::string checkFileLimits(const BenchContext& ctx, int fds);

void runOneway(BenchContext& ctx);
void runEcho(BenchContext& ctx);
void runRateLimit(BenchContext& ctx);
void runIdle(BenchContext& ctx);
void runStorm(BenchContext& ctx);
void runStun(BenchContext& ctx);

}  // namespace derpd::bench
