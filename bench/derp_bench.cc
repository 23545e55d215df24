// derp-bench: the load harness of PERFORMANCE.md. Drives any DERP server by
// URL (derpd, Tailscale's derper, ...) through scenarios (oneway, echo, idle,
// storm, stun), each row printed as one JSON line on stdout as it is measured
// and, at the end, as a readable table on stderr (and as markdown with
// --markdown FILE). The machine's reference rates (AES-128-GCM open+seal,
// loopback TCP) are measured first in the same run, and the ratios printed
// next to the raw figures. See bench/README.md.
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "aead_rate.h"
#include "bench_context.h"
#include "cpu_pinning.h"

namespace derpd::bench {
namespace {

constexpr const char* kUsage = R"(usage: derp-bench --url http[s]://HOST:PORT [options]
  --url URL            the DERP server (http:// or https://)
  --label NAME         names the server in the output (default: the URL)
  --receiver-url URL   oneway receivers connect to this other node of the server's mesh
                       region (measures forwarding between nodes)
  --insecure           accept any TLS certificate (self-signed servers)
  --pin sha256-raw:HEX accept exactly the server whose leaf certificate has this SHA-256
  --server-pid PID     read the server's CPU (/proc/PID/stat) and RSS (/proc/PID/status)
  --stun HOST:PORT     the server's STUN address (the stun scenario needs it)
  --server-cpus LIST   pin every thread of --server-pid to these CPUs (e.g. 0 or 0-1)
  --load-cpus LIST     pin the harness to these CPUs (e.g. 1)
  --scenarios LIST     comma-separated, from oneway,echo,idle,storm,stun (default: all) and
                       ratelimit (only when asked: against a server with a receive limit)
  --quick              a smoke run of every scenario in a few seconds
  --seconds S          length of one measured step (default 2; --quick 0.25)
  --pairs N            oneway sender/receiver pairs (default 2)
  --burst N            oneway packets per write (default 16)
  --sizes LIST         oneway packet sizes (default 100,1280,16384)
  --rates LIST         oneway total packets/s steps, "max" for an unpaced one (default: doubling
                       from 20k, 2k for 16 KiB)
  --max-steps N        paced oneway steps before the unpaced one (default 8)
  --steps-only         oneway runs only the --rates steps (no unpaced step, summary, sparse)
  --echo-pairs N       echo pairs (default 1)
  --windows LIST       echo windows (default 1,16)
  --idle-counts LIST   idle connection counts (default 1000,10000,50000)
  --storm-counts LIST  storm sizes (default 1000,5000)
  --connect-threads N  threads that connect for idle and storm (default 4)
  --no-stun-reference  skip the in-process UDP echo reference
  --flood-bytes N      ratelimit: bytes the flooder sends (default 10000000)
  --markdown FILE      also write the table as markdown to FILE
Exit status: 0 when every row is sane (nonzero delivery, all connected), 1 otherwise.
)";

// --rates: packets/s, or "max" for an unpaced step (rate 0), which
// --steps-only runs may want at the end.
bool parseRates(const std::string& s, std::vector<double>& out) {
  out.clear();
  for (size_t pos = 0; pos <= s.size();) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, comma - pos);
    char* end = nullptr;
    const double v = item == "max" ? 0 : std::strtod(item.c_str(), &end);
    if (item != "max" && (item.empty() || *end != '\0' || v <= 0)) return false;
    out.push_back(v);
    pos = comma + 1;
  }
  return !out.empty();
}

template <typename T>
bool parseList(const std::string& s, std::vector<T>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, comma - pos);
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || v <= 0) return false;
    out.push_back(static_cast<T>(v));
    pos = comma + 1;
  }
  return !out.empty();
}

struct Options {
  std::string markdown;
  std::vector<std::string> scenarios = {"oneway", "echo", "idle", "storm", "stun"};
  std::string serverCpus, loadCpus;
};

// An error message, or empty.
std::string parseArgs(int argc, char** argv, BenchContext& ctx, Options& opt) {
  Settings& s = ctx.settings;
  Target& t = ctx.target;
  bool secondsGiven = false;
  for (int i = 1; i < argc; i++) {
    const std::string k = argv[i];
    if (k == "--quick") {
      s.quick = true;
      continue;
    }
    if (k == "--insecure") {
      t.insecure = true;
      continue;
    }
    if (k == "--steps-only") {
      s.stepsOnly = true;
      continue;
    }
    if (k == "--no-stun-reference") {
      s.stunReference = false;
      continue;
    }
    if (k == "--help" || k == "-h") return "help";
    if (i + 1 >= argc) return format("missing value for %s", k.c_str());
    const std::string v = argv[++i];
    bool good = true;
    if (k == "--url") {
      if (std::string e = parseServerUrl(v, t); !e.empty()) return e;
    } else if (k == "--receiver-url") {
      Target r;
      if (std::string e = parseServerUrl(v, r); !e.empty()) return "--receiver-url: " + e;
      t.receiverUrl = r.url;
      t.receiverHost = r.host;
      t.receiverPort = r.port;
      t.receiverTls = r.tls;
    } else if (k == "--label") t.label = v;
    else if (k == "--pin") t.pin = v;
    else if (k == "--server-pid") t.serverPid = static_cast<pid_t>(std::atoi(v.c_str()));
    else if (k == "--stun") {
      const size_t colon = v.rfind(':');
      if (colon == std::string::npos) return "--stun wants HOST:PORT";
      t.stunHost = v.substr(0, colon);
      t.stunPort = static_cast<uint16_t>(std::atoi(v.c_str() + colon + 1));
      good = t.stunPort != 0;
    } else if (k == "--server-cpus") opt.serverCpus = v;
    else if (k == "--load-cpus") opt.loadCpus = v;
    else if (k == "--scenarios") {
      opt.scenarios.clear();
      size_t pos = 0;
      while (pos <= v.size()) {
        const size_t comma = std::min(v.find(',', pos), v.size());
        const std::string name = v.substr(pos, comma - pos);
        if (name != "oneway" && name != "echo" && name != "idle" && name != "storm" &&
            name != "ratelimit" && name != "stun") {
          return format("unknown scenario '%s'", name.c_str());
        }
        opt.scenarios.push_back(name);
        pos = comma + 1;
      }
    } else if (k == "--seconds") {
      s.stepSeconds = std::atof(v.c_str());
      secondsGiven = true;
      good = s.stepSeconds > 0 && s.stepSeconds <= 60;
    } else if (k == "--pairs") {
      s.pairs = std::atoi(v.c_str());
      good = s.pairs > 0 && s.pairs <= 64;
    } else if (k == "--burst") {
      s.burst = std::atoi(v.c_str());
      good = s.burst > 0 && s.burst <= 256;
    } else if (k == "--sizes") {
      good = parseList(v, s.sizes);
      for (size_t z : s.sizes) good = good && z >= 16 && z <= derp::kMaxPacketSize;
    } else if (k == "--rates")
      good = parseRates(v, s.rates);
    else if (k == "--max-steps") {
      s.maxSteps = std::atoi(v.c_str());
      good = s.maxSteps > 0 && s.maxSteps <= 20;
    } else if (k == "--echo-pairs") {
      s.echoPairs = std::atoi(v.c_str());
      good = s.echoPairs > 0 && s.echoPairs <= 64;
    } else if (k == "--windows") {
      good = parseList(v, s.windows);
      for (int w : s.windows) good = good && w <= 1024;
    } else if (k == "--idle-counts") {
      good = parseList(v, s.idleCounts);
      for (int n : s.idleCounts) good = good && n <= 1000000;
    } else if (k == "--storm-counts") {
      good = parseList(v, s.stormCounts);
      for (int n : s.stormCounts) good = good && n <= 1000000;
    } else if (k == "--connect-threads") {
      s.connectThreads = std::atoi(v.c_str());
      good = s.connectThreads > 0 && s.connectThreads <= 256;
    } else if (k == "--flood-bytes") {
      s.floodBytes = static_cast<size_t>(std::atoll(v.c_str()));
      good = s.floodBytes >= 16384 && s.floodBytes <= (size_t{1} << 34);
    } else if (k == "--markdown")
      opt.markdown = v;
    else return format("unknown option %s", k.c_str());
    if (!good) return format("bad value for %s: %s", k.c_str(), v.c_str());
  }
  if (t.url.empty()) return "--url is required";
  if (t.label.empty()) t.label = t.url;
  if (s.stepsOnly && s.rates.empty()) return "--steps-only needs --rates";
  if (!opt.serverCpus.empty() && !t.serverPid) return "--server-cpus needs --server-pid";
  if (s.quick) {
    if (!secondsGiven) s.stepSeconds = 0.25;
    s.maxSteps = 1;
    s.idleCounts = {200};
    s.stormCounts = {200};
    s.connectSeconds = 20;
  }
  return "";
}

std::string pinAll(BenchContext& ctx, const Options& opt) {
  if (!opt.loadCpus.empty()) {
    auto cpus = parseCpuList(opt.loadCpus);
    if (!cpus) return format("bad --load-cpus list: %s", opt.loadCpus.c_str());
    // Before any thread starts: they all inherit it.
    if (std::string e = pinThread(0, *cpus); !e.empty()) return format("pinning the harness: %s", e.c_str());
    ctx.loadCpus = *cpus;
  }
  ctx.loadCores = allowedCpuCount();
  if (!opt.serverCpus.empty()) {
    auto cpus = parseCpuList(opt.serverCpus);
    if (!cpus) return format("bad --server-cpus list: %s", opt.serverCpus.c_str());
    const int n = pinProcess(ctx.target.serverPid, *cpus);
    if (n < 0) return format("pinning the server: %s", strerror(-n));
    ctx.serverCpus = *cpus;
  }
  return "";
}

void measureReferences(BenchContext& ctx) {
  ctx.progress.show("reference rates: AES-128-GCM open+seal, loopback TCP");
  const double secs = ctx.settings.quick ? 0.1 : 0.5;
  // Per CPU-second of this thread, so a preempted measurement does not
  // inflate the efficiency.
  const double cpu0 = threadCpuSeconds();
  const auto wall0 = std::chrono::steady_clock::now();
  const double wallRate = aesGcmOpenSealRate(1280, secs);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  ctx.refs.aeadOpenSealBps = wallRate * wall / std::max(threadCpuSeconds() - cpu0, 1e-3);
  ctx.refs.tcp = measureTcpLoopback(secs);
  ctx.progress.clear();
  JsonLine j = ctx.json("reference");
  j.add("aead_open_seal_Bps", ctx.refs.aeadOpenSealBps, 0)
      .add("aead_open_seal_wall_Bps", wallRate, 0)
      .add("tcp_loopback_Bps_per_cpu", ctx.refs.tcp.bytesPerCpuSecond, 0)
      .add("tcp_loopback_Bps", ctx.refs.tcp.bytesPerSecond, 0);
  TableRow row;
  row.scenario = "reference";
  row.what = "harness CPUs";
  row.result = format("AES-128-GCM open+seal 1280 B: %.2f GB/s/core; loopback TCP: %.2f GB/s/core",
                      ctx.refs.aeadOpenSealBps / 1e9, ctx.refs.tcp.bytesPerCpuSecond / 1e9);
  const bool ok = ctx.refs.aeadOpenSealBps > 0 && ctx.refs.tcp.bytesPerCpuSecond > 0;
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

std::string cpuList(const std::vector<int>& cpus) {
  std::string s;
  for (int c : cpus) {
    if (!s.empty()) s += ",";
    s += std::to_string(c);
  }
  return s.empty() ? "unpinned" : s;
}

}  // namespace
}  // namespace derpd::bench

int main(int argc, char** argv) {
  using namespace derpd::bench;
  BenchContext ctx;
  Options opt;
  if (std::string e = parseArgs(argc, argv, ctx, opt); !e.empty()) {
    if (e != "help") std::fprintf(stderr, "derp-bench: %s\n", e.c_str());
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  if (std::string e = pinAll(ctx, opt); !e.empty()) {
    std::fprintf(stderr, "derp-bench: %s\n", e.c_str());
    return 2;
  }
  {
    JsonLine j = ctx.json("run");
    j.add("url", ctx.target.url).add("server_pid", static_cast<int64_t>(ctx.target.serverPid))
        .add("server_cpus", cpuList(ctx.serverCpus)).add("load_cpus", cpuList(ctx.loadCpus))
        .add("load_cores", ctx.loadCores).add("quick", ctx.settings.quick)
        .add("step_seconds", ctx.settings.stepSeconds, 2);
    std::printf("%s\n", j.str().c_str());
    std::fprintf(stderr, "derp-bench: %s (%s), server CPUs %s, harness CPUs %s (%d)%s\n",
                 ctx.target.label.c_str(), ctx.target.url.c_str(), cpuList(ctx.serverCpus).c_str(),
                 cpuList(ctx.loadCpus).c_str(), ctx.loadCores,
                 ctx.target.serverPid ? "" : "; no --server-pid: no server CPU or RSS");
  }
  measureReferences(ctx);
  const std::vector<std::pair<std::string, std::function<void(BenchContext&)>>> all = {
      {"oneway", runOneway}, {"echo", runEcho}, {"idle", runIdle},
      {"storm", runStorm},   {"stun", runStun}, {"ratelimit", runRateLimit},
  };
  for (auto& [name, run] : all) {
    if (std::find(opt.scenarios.begin(), opt.scenarios.end(), name) != opt.scenarios.end()) {
      run(ctx);
    }
  }
  ctx.progress.clear();
  std::fprintf(stderr, "\n%s: server CPUs %s, harness CPUs %s; * = generator saturated\n",
               ctx.target.label.c_str(), cpuList(ctx.serverCpus).c_str(),
               cpuList(ctx.loadCpus).c_str());
  ctx.report.printTable(stderr);
  if (!opt.markdown.empty()) {
    FILE* f = std::fopen(opt.markdown.c_str(), "a");
    if (f == nullptr) {
      std::fprintf(stderr, "derp-bench: cannot write %s\n", opt.markdown.c_str());
      return 1;
    }
    std::fprintf(f, "\n**%s** (%s): server CPUs %s, harness CPUs %s; * = generator saturated\n\n",
                 ctx.target.label.c_str(), ctx.target.url.c_str(), cpuList(ctx.serverCpus).c_str(),
                 cpuList(ctx.loadCpus).c_str());
    ctx.report.printMarkdown(f);
    std::fclose(f);
  }
  std::fprintf(stderr, "%s (%.1f s)\n", ctx.report.failed() ? "FAILED: some rows are not sane" : "ok",
               ctx.progress.elapsed());
  return ctx.report.failed() ? 1 : 0;
}
