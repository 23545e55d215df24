// idle: the server's RSS per idle handshaken connection at 1k/10k/50k
// clients. storm: K clients connect at once (TLS + DERP handshakes) and stay;
// handshakes per server CPU-second and the time until all are registered.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bench_context.h"

namespace derpd::bench {
namespace {

// How many of the clients' sockets the server has closed (hang-up or reset).
int countClosed(const std::vector<std::unique_ptr<client::DerpClient>>& clients) {
  std::vector<pollfd> fds;
  for (auto& c : clients) {
    if (c) fds.push_back({c->fd(), POLLRDHUP, 0});
  }
  ::poll(fds.data(), fds.size(), 0);
  return static_cast<int>(std::count_if(fds.begin(), fds.end(), [](const pollfd& p) {
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }));
}

void sleepSeconds(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// A row for a case that cannot run here: says why; not a failure.
void skipped(BenchContext& ctx, const char* scenario, const std::string& what, int count,
             const std::string& why) {
  ctx.progress.clear();
  std::fprintf(stderr, "%s %s: skipped: %s\n", scenario, what.c_str(), why.c_str());
  JsonLine j = ctx.json(scenario);
  j.add("connections", count).add("skipped", true).add("reason", why).add("ok", true);
  TableRow row;
  row.scenario = scenario;
  row.what = what;
  row.result = "SKIPPED";
  row.note = why;
  ctx.report.add(j, std::move(row));
}

void idleRow(BenchContext& ctx, int count) {
  const std::string what = format("%s %d clients", ctx.target.tls ? "tls" : "plain", count);
  if (!ctx.target.serverPid) {
    skipped(ctx, "idle", what, count, "needs --server-pid to read the server's RSS");
    return;
  }
  const int warmup = 16;
  if (std::string why = checkFileLimits(ctx, count + warmup); !why.empty()) {
    skipped(ctx, "idle", what, count, why);
    return;
  }
  const double settle = ctx.settings.quick ? 0.2 : 1.0;
  const int threads = ctx.settings.connectThreads;
  ctx.progress.show(format("idle %s: connecting %d clients", ctx.target.label.c_str(), count));
  Connected warm = connectMany(ctx, warmup, threads, ctx.settings.connectSeconds);
  sleepSeconds(settle);
  const long rssBefore = processRssKiB(ctx.target.serverPid);
  const CpuMeter meter = ctx.meter();
  Connected held = connectMany(ctx, count, threads, ctx.settings.connectSeconds);
  const CpuMeter::Usage usage = meter.stop();
  sleepSeconds(settle);
  const long rssAfter = processRssKiB(ctx.target.serverPid);
  const int closed = countClosed(held.clients);
  const long selfRss = processRssKiB(getpid());
  held.clients.clear();
  warm.clients.clear();
  ctx.progress.clear();

  const double perConn =
      held.ok > 0 ? static_cast<double>(rssAfter - rssBefore) / static_cast<double>(held.ok) : 0;
  JsonLine j = ctx.json("idle");
  j.add("connections", held.ok).add("requested", count).add("failures", held.failures)
      .add("closed_by_server", closed).add("connect_seconds", usage.wall, 2)
      .add("server_rss_before_kib", static_cast<int64_t>(rssBefore))
      .add("server_rss_after_kib", static_cast<int64_t>(rssAfter))
      .add("kib_per_connection", perConn, 2).add("harness_rss_kib", static_cast<int64_t>(selfRss));
  TableRow row;
  row.scenario = "idle";
  row.what = what;
  row.result = format("%.2f KiB/conn (RSS %.1f -> %.1f MiB)", perConn, rssBefore / 1024.0,
                      rssAfter / 1024.0);
  row.ratio = format("vs 8 KiB target %.2f", perConn / 8);
  if (held.failures || closed) {
    row.note = format("%d failed, %d closed by server", held.failures, closed);
    if (!held.firstError.empty()) row.note += ": " + held.firstError;
    j.add("first_error", held.firstError);
  }
  const bool ok = held.ok == count && closed == 0 && rssBefore > 0 && rssAfter > 0;
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

// One storm: `count` clients at once (with `keys`, the clients of an
// earlier storm coming back: storm_reconnect).
void stormRow(BenchContext& ctx, int count, const std::vector<derp::PrivateKey>& keys,
              bool reconnect) {
  const char* scenario = reconnect ? "storm_reconnect" : "storm";
  const int threads = std::max(ctx.settings.connectThreads, 8);
  const std::string what =
      format("%s %d clients at once%s, %d threads", ctx.target.tls ? "tls" : "plain", count,
             reconnect ? " again, same keys" : "", threads);
  if (std::string why = checkFileLimits(ctx, count); !why.empty()) {
    skipped(ctx, scenario, what, count, why);
    return;
  }
  ctx.progress.show(format("%s %s: %d clients", scenario, ctx.target.label.c_str(), count));
  const CpuMeter meter = ctx.meter();
  Connected held = connectMany(ctx, count, threads, ctx.settings.connectSeconds, &keys);
  const CpuMeter::Usage usage = meter.stop();
  held.clients.clear();
  ctx.progress.clear();

  const double p50 = percentile(held.connectMs, 0.5), p99 = percentile(held.connectMs, 0.99);
  JsonLine j = ctx.json(scenario);
  j.add("requested", count).add("ok_count", held.ok).add("failures", held.failures)
      .add("threads", threads).add("time_to_all_registered_ms", 1e3 * usage.wall, 1)
      .add("wall_handshakes_per_s", held.ok / usage.wall, 0).add("connect_ms_p50", p50, 2)
      .add("connect_ms_p99", p99, 2);
  TableRow row;
  row.scenario = scenario;
  row.what = what;
  row.result = format("all registered in %.0f ms (%s/s wall)", 1e3 * usage.wall,
                      compact(held.ok / usage.wall).c_str());
  row.latency = format("connect p50 %.1f ms p99 %.1f ms", p50, p99);
  addCpu(ctx, usage, j, row);
  if (usage.haveServer() && usage.serverCpu > 0) {
    const double perCore = held.ok / usage.serverCpu;
    j.add("handshakes_per_server_cpu_s", perCore, 0);
    row.ratio = format("%s handshakes/server CPU-s", compact(perCore).c_str());
  }
  if (held.failures) {
    row.note += format("%s%d failed: %s", row.note.empty() ? "" : "; ", held.failures,
                       held.firstError.c_str());
    j.add("first_error", held.firstError);
  }
  const bool ok = held.ok == count;
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

}  // namespace

void runIdle(BenchContext& ctx) {
  for (int n : ctx.settings.idleCounts) idleRow(ctx, n);
}

// Each storm, then the same clients again (they left; the server may
// remember them, as after a network blip).
void runStorm(BenchContext& ctx) {
  for (int n : ctx.settings.stormCounts) {
    std::vector<derp::PrivateKey> keys;
    for (int i = 0; i < n; i++) keys.push_back(derp::PrivateKey::generate());
    stormRow(ctx, n, keys, false);
    stormRow(ctx, n, keys, true);
  }
}

}  // namespace derpd::bench
