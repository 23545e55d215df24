// echo: ping-pong through the relay. For each pair, a pinger keeps `window`
// stamped packets in flight to an echoer, which sends each one straight back;
// the pinger records the round trip and sends the next. Round trips/s and RTT
// percentiles per window size.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_context.h"
#include "echo_pair.h"
#include "latency_histogram.h"
#include "packet_stream.h"

namespace derpd::bench {

using SteadyClock = std::chrono::steady_clock;

void pinger(client::DerpClient& c, derp::NodeKey peer, size_t size, int window,
            SteadyClock::time_point stopAt, PingerResult& out) {
  const std::vector<uint8_t> payload(size, 0xcd);
  std::vector<uint8_t> frames;
  auto sendN = [&](int n) {
    frames.clear();
    const int64_t now = monotonicNs();
    for (int i = 0; i < n; i++) {
      const size_t at = frames.size();
      appendSendPacket(frames, peer, payload);
      stampFrame(frames.data() + at, now);
    }
    return c.sendRaw(frames);
  };
  int outstanding = window;
  if (absl::Status st = sendN(window); !st.ok()) {
    out.error = std::string(st.message());
    return;
  }
  FrameScanner scanner;
  auto lastAnswer = SteadyClock::now();
  // After stopAt nothing new is sent; wait at most 200 ms for what is in flight.
  const auto drainEnd = stopAt + std::chrono::milliseconds(200);
  while (SteadyClock::now() < drainEnd && (outstanding > 0 || SteadyClock::now() < stopAt)) {
    absl::Status st = scanner.readOnce(c, 20 * kMillisecond, [&](uint8_t type, auto body) {
      if (type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) return;
      out.rtt.record(monotonicNs() - stampOf(body));
      out.roundTrips++;
      outstanding--;
      lastAnswer = SteadyClock::now();
    });
    if (!st.ok() && !absl::IsDeadlineExceeded(st)) {
      out.error = std::string(st.message());
      return;
    }
    const auto now = SteadyClock::now();
    if (outstanding > 0 && now - lastAnswer > std::chrono::milliseconds(500)) {
      out.lost += static_cast<uint64_t>(outstanding);
      outstanding = 0;
    }
    if (now < stopAt && outstanding < window) {
      if (absl::Status s2 = sendN(window - outstanding); !s2.ok()) {
        out.error = std::string(s2.message());
        return;
      }
      outstanding = window;
      lastAnswer = std::max(lastAnswer, now - std::chrono::milliseconds(1));
    }
  }
  out.lost += static_cast<uint64_t>(std::max(outstanding, 0));
}

void echoer(client::DerpClient& c, derp::NodeKey peer, const std::atomic<bool>& stop,
            std::string& error) {
  FrameScanner scanner;
  std::vector<uint8_t> replies;
  while (!stop.load(std::memory_order_relaxed)) {
    replies.clear();
    absl::Status st = scanner.readOnce(c, 20 * kMillisecond, [&](uint8_t type, auto body) {
      if (type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) return;
      appendSendPacket(replies, peer, body.subspan(derp::kKeyLen));
    });
    if (!st.ok() && !absl::IsDeadlineExceeded(st)) {
      error = std::string(st.message());
      return;
    }
    if (!replies.empty()) {
      if (absl::Status s2 = c.sendRaw(replies); !s2.ok()) {
        error = std::string(s2.message());
        return;
      }
    }
  }
}

namespace {

void runWindow(BenchContext& ctx, int window) {
  const Settings& set = ctx.settings;
  const int pairs = set.echoPairs;
  std::vector<std::unique_ptr<client::DerpClient>> pingers, echoers;
  std::string error;
  for (int i = 0; i < 2 * pairs && error.empty(); i++) {
    auto c = client::DerpClient::connect(ctx.target.clientOptions());
    if (!c.ok()) error = "connect: " + std::string(c.status().message());
    else (i % 2 ? echoers : pingers).push_back(std::move(*c));
  }
  std::vector<PingerResult> results(static_cast<size_t>(pairs));
  std::vector<std::string> echoErrors(static_cast<size_t>(pairs));
  CpuMeter::Usage usage;
  if (error.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic<bool> stop{false};
    const CpuMeter meter = ctx.meter();
    const auto stopAt = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                 std::chrono::duration<double>(set.stepSeconds));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < static_cast<size_t>(pairs); i++) {
      threads.emplace_back(echoer, std::ref(*echoers[i]), pingers[i]->publicKey(),
                           std::cref(stop), std::ref(echoErrors[i]));
    }
    std::vector<std::thread> pingThreads;
    for (size_t i = 0; i < static_cast<size_t>(pairs); i++) {
      pingThreads.emplace_back(pinger, std::ref(*pingers[i]), echoers[i]->publicKey(),
                               set.echoSize, window, stopAt, std::ref(results[i]));
    }
    for (auto& t : pingThreads) t.join();
    usage = meter.stop();
    stop = true;
    for (auto& t : threads) t.join();
  }
  for (auto& c : pingers) c->close();
  for (auto& c : echoers) c->close();

  PingerResult all;
  for (auto& r : results) {
    all.rtt.merge(r.rtt);
    all.roundTrips += r.roundTrips;
    all.lost += r.lost;
    if (error.empty() && !r.error.empty()) error = r.error;
  }
  for (auto& e : echoErrors) {
    if (error.empty() && !e.empty()) error = e;
  }
  const double secs = usage.wall > 0 ? usage.wall : 1;
  const double rate = static_cast<double>(all.roundTrips) / secs;
  JsonLine j = ctx.json("echo");
  j.add("window", window).add("pairs", pairs).add("size", static_cast<int64_t>(set.echoSize))
      .add("round_trips", all.roundTrips).add("lost", all.lost).add("round_trips_per_s", rate, 0)
      .add("rtt_p50_us", all.rtt.percentileUs(0.5), 1)
      .add("rtt_p99_us", all.rtt.percentileUs(0.99), 1)
      .add("rtt_p999_us", all.rtt.percentileUs(0.999), 1);
  TableRow row;
  row.scenario = "echo";
  row.what = format("%s %zuB %dx window %d", ctx.target.tls ? "tls" : "plain", set.echoSize,
                    pairs, window);
  row.result = format("%s round trips/s, %llu lost", compact(rate).c_str(),
                      static_cast<unsigned long long>(all.lost));
  row.latency = format("%.0f/%.0f/%.0f", all.rtt.percentileUs(0.5), all.rtt.percentileUs(0.99),
                       all.rtt.percentileUs(0.999));
  if (usage.wall > 0) addCpu(ctx, usage, j, row);
  if (usage.haveServer() && all.roundTrips > 0) {
    // Each round trip is two relayed packets.
    const double us = 1e6 * usage.serverCpu / static_cast<double>(2 * all.roundTrips);
    j.add("server_us_per_pkt", us, 3);
    row.ratio = format("%.2f us/pkt", us);
  }
  if (!error.empty()) {
    j.add("error", error);
    row.note += (row.note.empty() ? "" : "; ") + error;
  }
  const bool ok = all.roundTrips > 0 && error.empty();
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

}  // namespace

void runEcho(BenchContext& ctx) {
  for (int w : ctx.settings.windows) {
    ctx.progress.show(format("echo %s window %d", ctx.target.label.c_str(), w));
    runWindow(ctx, w);
    ctx.progress.clear();
  }
}

}  // namespace derpd::bench
