// oneway: N sender/receiver pairs through the relay at fixed total rates that
// double up to saturation, then unpaced, for each packet size; then the
// sparse load of PERFORMANCE.md (10 senders, one packet per write). Senders
// write bursts of pre-encoded SendPacket frames, stamped with the send time;
// receivers count RecvPackets and record the one-way latency.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_context.h"
#include "latency_histogram.h"
#include "packet_stream.h"

namespace derpd::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Step {
  int pairs = 2;
  size_t size = 1280;
  int burst = 16;
  double totalRate = 0;  // packets/s over all pairs; 0: as fast as the server takes them
  double seconds = 1;
};

struct StepResult {
  Step step;
  uint64_t sent = 0;
  uint64_t delivered = 0;
  double offerSeconds = 0;  // packets/s are counted over this
  LatencyHistogram latency;
  CpuMeter::Usage offerUsage;  // while the senders ran: CPU %, saturation
  CpuMeter::Usage usage;       // with the drain: CPU per packet
  std::string error;
  bool saturated = false;

  double pps() const { return offerSeconds > 0 ? static_cast<double>(delivered) / offerSeconds : 0; }
  double lossPct() const {
    return sent ? 100.0 * (1.0 - static_cast<double>(delivered) / static_cast<double>(sent)) : 0;
  }
  double payloadBytes() const { return static_cast<double>(delivered) * static_cast<double>(step.size); }
};

void sendLoop(client::DerpClient& c, derp::NodeKey dst, const Step& s, int index,
              const std::atomic<bool>& stop, std::atomic<uint64_t>& sent, std::string& error) {
  std::vector<uint8_t> payload(s.size, 0xab), burst;
  for (int i = 0; i < s.burst; i++) appendSendPacket(burst, dst, payload);
  const size_t frameLen = burst.size() / static_cast<size_t>(s.burst);
  const double perPair = s.totalRate / s.pairs;
  const auto gap = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(perPair > 0 ? s.burst / perPair : 0));
  // Start the pairs' schedules apart, so bursts do not all land at once.
  auto next = SteadyClock::now() + gap * index / s.pairs;
  while (!stop.load(std::memory_order_relaxed)) {
    if (perPair > 0) {
      next += gap;
      std::this_thread::sleep_until(next);
    }
    const int64_t now = monotonicNs();
    for (int i = 0; i < s.burst; i++) stampFrame(burst.data() + static_cast<size_t>(i) * frameLen, now);
    if (absl::Status st = c.sendRaw(burst); !st.ok()) {
      error = std::string(st.message());
      return;
    }
    sent.fetch_add(static_cast<uint64_t>(s.burst), std::memory_order_relaxed);
  }
}

void receiveLoop(client::DerpClient& c, const std::atomic<bool>& stop,
                 std::atomic<uint64_t>& got, LatencyHistogram& latency, std::string& error) {
  FrameScanner scanner;
  uint64_t count = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    absl::Status st = scanner.readOnce(c, 50 * kMillisecond, [&](uint8_t type, auto body) {
      if (type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) return;
      latency.record(monotonicNs() - stampOf(body));
      count++;
    });
    if (!st.ok() && !absl::IsDeadlineExceeded(st)) {
      error = std::string(st.message());
      return;
    }
    got.store(count, std::memory_order_relaxed);
  }
}

StepResult runStep(BenchContext& ctx, const Step& s) {
  StepResult r;
  r.step = s;
  std::vector<std::unique_ptr<client::DerpClient>> senders, receivers;
  for (int i = 0; i < 2 * s.pairs; i++) {
    auto c = client::DerpClient::connect(ctx.target.clientOptions(i % 2 == 1));
    if (!c.ok()) {
      r.error = "connect: " + std::string(c.status().message());
      return r;
    }
    (i % 2 ? receivers : senders).push_back(std::move(*c));
  }
  // Registration may cross shards after ServerInfo (and nodes, with
  // --receiver-url); let it settle.
  std::this_thread::sleep_for(
      std::chrono::milliseconds(ctx.target.receiverUrl.empty() ? 20 : 500));
  std::atomic<bool> stopSenders{false}, stopReceivers{false};
  std::vector<std::atomic<uint64_t>> sent(static_cast<size_t>(s.pairs)),
      got(static_cast<size_t>(s.pairs));
  std::vector<LatencyHistogram> latency(static_cast<size_t>(s.pairs));
  std::vector<std::string> errors(2 * static_cast<size_t>(s.pairs));
  std::vector<std::thread> sendThreads, recvThreads;
  auto total = [](const std::vector<std::atomic<uint64_t>>& v) {
    uint64_t t = 0;
    for (auto& x : v) t += x.load(std::memory_order_relaxed);
    return t;
  };
  const CpuMeter meter = ctx.meter();
  const auto start = SteadyClock::now();
  for (size_t i = 0; i < static_cast<size_t>(s.pairs); i++) {
    recvThreads.emplace_back(receiveLoop, std::ref(*receivers[i]), std::cref(stopReceivers),
                             std::ref(got[i]), std::ref(latency[i]), std::ref(errors[2 * i]));
    sendThreads.emplace_back(sendLoop, std::ref(*senders[i]), receivers[i]->publicKey(),
                             std::cref(s), static_cast<int>(i), std::cref(stopSenders), std::ref(sent[i]),
                             std::ref(errors[2 * i + 1]));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(s.seconds));
  stopSenders = true;
  for (auto& t : sendThreads) t.join();
  r.offerSeconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  r.offerUsage = meter.stop();
  // Packets in flight are not lost: drain until nothing arrives for 50 ms.
  const auto drainEnd = SteadyClock::now() + std::chrono::seconds(2);
  uint64_t last = total(got);
  while (SteadyClock::now() < drainEnd) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const uint64_t now = total(got);
    if (now == last) break;
    last = now;
  }
  stopReceivers = true;
  for (auto& t : recvThreads) t.join();
  r.usage = meter.stop();
  r.saturated = generatorSaturated(ctx, r.offerUsage);
  r.sent = total(sent);
  r.delivered = total(got);
  for (auto& h : latency) r.latency.merge(h);
  for (auto& e : errors) {
    if (r.error.empty() && !e.empty()) r.error = e;
  }
  for (auto& c : senders) c->close();
  for (auto& c : receivers) c->close();
  return r;
}

std::string rateLabel(const Step& s) {
  return s.totalRate > 0 ? compact(s.totalRate) + "/s" : "max";
}

// Payload bytes per server CPU-second, or 0 when the server's CPU is unknown.
double bytesPerServerCore(const StepResult& r) {
  return r.usage.haveServer() && r.usage.serverCpu > 0 ? r.payloadBytes() / r.usage.serverCpu : 0;
}

void report(BenchContext& ctx, const char* scenario, const StepResult& r) {
  const Step& s = r.step;
  const double pps = r.pps();
  JsonLine j = ctx.json(scenario);
  j.add("size", static_cast<int64_t>(s.size)).add("pairs", s.pairs).add("burst", s.burst)
      .add("offered_pps", s.totalRate, 0).add("sent", r.sent).add("delivered", r.delivered)
      .add("pps", pps, 0).add("MBps", pps * static_cast<double>(s.size) / 1e6, 1)
      .add("loss_pct", r.lossPct(), 3).add("lat_p50_us", r.latency.percentileUs(0.5), 1)
      .add("lat_p99_us", r.latency.percentileUs(0.99), 1)
      .add("lat_p999_us", r.latency.percentileUs(0.999), 1);
  TableRow row;
  row.scenario = scenario;
  row.what = format("%s %zuB %dx burst %d @%s", ctx.target.tls ? "tls" : "plain", s.size, s.pairs,
                    s.burst, rateLabel(s).c_str());
  row.result = format("%s pps %.1f MB/s loss %.2f%%", compact(pps).c_str(),
                      pps * static_cast<double>(s.size) / 1e6, r.lossPct());
  row.latency = format("%.0f/%.0f/%.0f", r.latency.percentileUs(0.5),
                       r.latency.percentileUs(0.99), r.latency.percentileUs(0.999));
  // CPU % while offering load; CPU per packet over the whole step (drain too).
  addCpu(ctx, r.offerUsage, j, row);
  if (r.usage.haveServer()) j.add("server_cpu_s_with_drain", r.usage.serverCpu, 3);
  if (const double perCore = bytesPerServerCore(r); perCore > 0 && r.delivered > 0) {
    const double usPerPkt = 1e6 * r.usage.serverCpu / static_cast<double>(r.delivered);
    j.add("server_us_per_pkt", usPerPkt, 3).add("payload_Bps_per_server_core", perCore, 0)
        .add("tcp_ratio", perCore / ctx.refs.tcp.bytesPerCpuSecond, 3);
    row.ratio = format("%.2f us/pkt", usPerPkt);
    if (ctx.target.tls) {
      j.add("efficiency", perCore / ctx.refs.aeadOpenSealBps, 3);
      row.ratio += format(", eff %.3f", perCore / ctx.refs.aeadOpenSealBps);
    } else {
      row.ratio += format(", vs TCP %.3f", perCore / ctx.refs.tcp.bytesPerCpuSecond);
    }
  }
  if (!r.error.empty()) {
    j.add("error", r.error);
    row.note += (row.note.empty() ? "" : "; ") + r.error;
  }
  const bool ok = r.delivered > 0 && r.error.empty();
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

// The headline figures of one size: the highest rate delivered with
// (almost) no loss and the efficiency there; the saturation rate; p99 at
// about half of it.
void summarize(BenchContext& ctx, const std::vector<StepResult>& results) {
  if (results.empty()) return;
  const StepResult* best = nullptr;
  double satPps = 0;
  for (auto& r : results) {
    satPps = std::max(satPps, r.pps());
    if (r.error.empty() && r.lossPct() <= 0.5 && (!best || r.pps() > best->pps())) best = &r;
  }
  const StepResult* half = nullptr;
  for (auto& r : results) {
    if (r.step.totalRate <= 0 || satPps <= 0) continue;
    auto dist = [&](const StepResult& x) { return std::fabs(std::log(x.step.totalRate / (satPps / 2))); };
    if (!half || dist(r) < dist(*half)) half = &r;
  }
  const size_t size = results.front().step.size;
  JsonLine j = ctx.json("oneway_summary");
  j.add("size", static_cast<int64_t>(size)).add("saturation_pps", satPps, 0);
  TableRow row;
  row.scenario = "oneway_summary";
  row.what = format("%s %zuB", ctx.target.tls ? "tls" : "plain", size);
  row.result = format("sat %s pps", compact(satPps).c_str());
  if (best) {
    j.add("lossless_pps", best->pps(), 0).add("lossless_offered_pps", best->step.totalRate, 0)
        .add("lossless_gen_saturated", best->saturated);
    row.result += format("; lossless %s pps (%.1f MB/s)", compact(best->pps()).c_str(),
                         best->pps() * static_cast<double>(size) / 1e6);
    if (best->offerUsage.haveServer()) {
      row.serverCpu = format("%.0f%%", best->offerUsage.serverPct());
    }
    row.genCpu = format("%.0f%%%s", best->offerUsage.genPct(), best->saturated ? "*" : "");
    if (const double perCore = bytesPerServerCore(*best); perCore > 0) {
      j.add("lossless_server_us_per_pkt",
            1e6 * best->usage.serverCpu / static_cast<double>(best->delivered), 3)
          .add("lossless_tcp_ratio", perCore / ctx.refs.tcp.bytesPerCpuSecond, 3);
      row.ratio = format("vs TCP %.3f", perCore / ctx.refs.tcp.bytesPerCpuSecond);
      if (ctx.target.tls) {
        j.add("efficiency", perCore / ctx.refs.aeadOpenSealBps, 3);
        row.ratio = format("eff %.3f, ", perCore / ctx.refs.aeadOpenSealBps) + row.ratio;
      }
    }
    if (best->saturated) row.note = "lossless rate limited by the generator";
  } else {
    row.note = "no step was lossless";
  }
  if (half) {
    j.add("half_sat_offered_pps", half->step.totalRate, 0)
        .add("half_sat_p99_us", half->latency.percentileUs(0.99), 1);
    row.latency = format("p99 %.0f at %s/s", half->latency.percentileUs(0.99),
                         compact(half->step.totalRate).c_str());
  }
  ctx.report.add(j, std::move(row));
}

}  // namespace

void runOneway(BenchContext& ctx) {
  const Settings& set = ctx.settings;
  for (size_t size : set.sizes) {
    std::vector<double> rates = set.rates;
    if (rates.empty()) {
      double base = size >= 8192 ? 2000 : 20000;
      if (set.quick) base /= 4;
      for (int i = 0; i < set.maxSteps; i++) rates.push_back(base * std::pow(2.0, i));
    }
    std::vector<StepResult> results;
    const size_t steps = set.stepsOnly ? rates.size() : rates.size() + 1;
    for (size_t i = 0; i < steps; i++) {
      Step s;
      s.pairs = set.pairs;
      s.size = size;
      s.burst = set.burst;
      s.seconds = set.stepSeconds;
      s.totalRate = i < rates.size() ? rates[i] : 0;  // the last step is unpaced
      ctx.progress.show(format("oneway %s %zuB @%s (step %zu)", ctx.target.label.c_str(), size,
                               rateLabel(s).c_str(), i + 1));
      results.push_back(runStep(ctx, s));
      ctx.progress.clear();
      const StepResult& r = results.back();
      report(ctx, "oneway", r);
      if (i >= rates.size() || set.stepsOnly) continue;
      // Saturated (by loss, delivery or the harness's own CPU; other
      // processes' load only marks the row): skip to the unpaced step.
      const bool ownCpuFull =
          r.offerUsage.genCpu >= 0.9 * r.offerUsage.wall * ctx.loadCores;
      const bool saturated = !r.error.empty() || r.lossPct() > 1 || ownCpuFull ||
                             r.pps() < 0.9 * s.totalRate;
      if (saturated) i = rates.size() - 1;
    }
    if (!set.stepsOnly) summarize(ctx, results);
  }
  if (set.stepsOnly) return;
  // PERFORMANCE.md's sparse load: 10 senders, one packet per write.
  Step sparse;
  sparse.pairs = 10;
  sparse.size = 1280;
  sparse.burst = 1;
  sparse.totalRate = set.quick ? 5000 : 50000;
  sparse.seconds = set.stepSeconds;
  ctx.progress.show(format("oneway sparse %s 10 senders @%s", ctx.target.label.c_str(),
                           rateLabel(sparse).c_str()));
  StepResult r = runStep(ctx, sparse);
  ctx.progress.clear();
  report(ctx, "oneway_sparse", r);
}

}  // namespace derpd::bench
