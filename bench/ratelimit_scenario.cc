// ratelimit: what a per-client receive limit (derpd's and derper's
// -rate-config) does to a client that sends as fast as it can, and to the
// other clients of its shard. Run it against a server started with a limit
// (run.sh: 1 MB/s, one shard). An echo pair (a ping every 5 ms) is measured alone,
// then while a flooder sends --flood-bytes (default 10 MB) of 16 KiB packets
// to a receiver as fast as its socket takes them. The row gives the flood's
// duration against what the limit the server advertised in ServerInfo
// predicts, the packets lost (none expected: the limit slows reads, it does
// not drop), and the echo pair's p50/p99 before and during the flood.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_context.h"
#include "echo_pair.h"
#include "packet_stream.h"

namespace derpd::bench {
namespace {

constexpr size_t kFloodPacket = 16 * 1024;
constexpr int kFloodBurst = 16;

struct Flood {
  uint64_t packetsSent = 0;
  uint64_t packetsReceived = 0;
  int64_t firstSendNs = 0;
  int64_t lastReceiveNs = 0;
  std::string error;
};

void flood(client::DerpClient& sender, derp::NodeKey dst, uint64_t packets, Flood& out) {
  const std::vector<uint8_t> payload(kFloodPacket, 0x5a);
  std::vector<uint8_t> frames;
  out.firstSendNs = monotonicNs();
  while (out.packetsSent < packets) {
    frames.clear();
    const uint64_t n = std::min<uint64_t>(kFloodBurst, packets - out.packetsSent);
    for (uint64_t i = 0; i < n; i++) appendSendPacket(frames, dst, payload);
    // Blocks while the server, reading at the limit, leaves the socket full.
    if (absl::Status st = sender.sendRaw(frames); !st.ok()) {
      out.error = "flood send: " + std::string(st.message());
      return;
    }
    out.packetsSent += n;
  }
}

void drain(client::DerpClient& receiver, uint64_t packets, Flood& out) {
  FrameScanner scanner;
  auto lastProgress = std::chrono::steady_clock::now();
  while (out.packetsReceived < packets) {
    absl::Status st = scanner.readOnce(receiver, 100 * kMillisecond, [&](uint8_t type, auto) {
      if (type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) return;
      out.packetsReceived++;
      out.lastReceiveNs = monotonicNs();
      lastProgress = std::chrono::steady_clock::now();
    });
    if (!st.ok() && !absl::IsDeadlineExceeded(st)) {
      out.error = "flood receive: " + std::string(st.message());
      return;
    }
    // Nothing for 5 s: the rest is lost.
    if (std::chrono::steady_clock::now() - lastProgress > std::chrono::seconds(5)) return;
  }
}

// One echo pair's round trips for `seconds`, one 64-byte ping every 5 ms:
// well under the limit, which applies to the pair too (a back-to-back
// pinger would measure its own limit, not the flood's effect on it).
PingerResult echoFor(client::DerpClient& pinger, client::DerpClient& echoer, double seconds) {
  PingerResult r;
  std::atomic<bool> stop{false};
  std::string echoError;
  std::thread e(derpd::bench::echoer, std::ref(echoer), pinger.publicKey(), std::cref(stop),
                std::ref(echoError));
  const std::vector<uint8_t> payload(64, 0xec);
  std::vector<uint8_t> frame;
  FrameScanner scanner;
  const int64_t end = monotonicNs() + static_cast<int64_t>(seconds * 1e9);
  while (monotonicNs() < end && r.error.empty()) {
    frame.clear();
    appendSendPacket(frame, echoer.publicKey(), payload);
    const int64_t sent = monotonicNs();
    stampFrame(frame.data(), sent);
    if (absl::Status st = pinger.sendRaw(frame); !st.ok()) {
      r.error = "ping: " + std::string(st.message());
      break;
    }
    bool answered = false;
    while (!answered && monotonicNs() - sent < 500'000'000) {
      absl::Status st = scanner.readOnce(pinger, 50 * kMillisecond, [&](uint8_t type, auto body) {
        if (type != static_cast<uint8_t>(derp::FrameType::kRecvPacket)) return;
        r.rtt.record(monotonicNs() - stampOf(body));
        r.roundTrips++;
        answered = true;
      });
      if (!st.ok() && !absl::IsDeadlineExceeded(st)) {
        r.error = "ping: " + std::string(st.message());
        break;
      }
    }
    if (!answered) r.lost++;
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(sent + 5'000'000)));
  }
  stop = true;
  e.join();
  if (r.error.empty()) r.error = echoError;
  return r;
}

}  // namespace

void runRateLimit(BenchContext& ctx) {
  ctx.progress.show(format("ratelimit %s", ctx.target.label.c_str()));
  std::vector<std::unique_ptr<client::DerpClient>> c;
  std::string error;
  for (int i = 0; i < 4 && error.empty(); i++) {
    auto cl = client::DerpClient::connect(ctx.target.clientOptions());
    if (!cl.ok())
      error = "connect: " + std::string(cl.status().message());
    else
      c.push_back(std::move(*cl));
  }
  JsonLine j = ctx.json("ratelimit");
  TableRow row;
  row.scenario = "ratelimit";
  if (!error.empty()) {
    j.add("error", error).add("ok", false);
    row.note = error;
    ctx.report.fail();
    ctx.report.add(j, std::move(row));
    return;
  }
  client::DerpClient& sender = *c[0];
  client::DerpClient& receiver = *c[1];
  const derp::ServerInfo& info = sender.serverInfo();
  const double rate = static_cast<double>(info.tokenBucketBytesPerSecond.value_or(0));
  const double burst = static_cast<double>(info.tokenBucketBytesBurst.value_or(0));
  const uint64_t packets = (ctx.settings.floodBytes + kFloodPacket - 1) / kFloodPacket;
  const double charged = static_cast<double>(packets) * (kFloodPacket + derp::kKeyLen);
  const double expected = rate > 0 ? std::max(0.0, (charged - burst) / rate) : 0;

  PingerResult before = echoFor(*c[2], *c[3], ctx.settings.stepSeconds);
  Flood f;
  std::thread sendThread(flood, std::ref(sender), receiver.publicKey(), packets, std::ref(f));
  std::thread recvThread(drain, std::ref(receiver), packets, std::ref(f));
  // The echo pair runs while the flood lasts (as far as the limit predicts it).
  PingerResult during =
      echoFor(*c[2], *c[3], expected > 0 ? std::min(expected, 60.0) : ctx.settings.stepSeconds);
  sendThread.join();
  recvThread.join();
  for (auto& cl : c) cl->close();

  const double seconds = f.lastReceiveNs > f.firstSendNs
                             ? static_cast<double>(f.lastReceiveNs - f.firstSendNs) / 1e9
                             : 0;
  const uint64_t lost = packets - f.packetsReceived;
  j.add("flood_bytes", static_cast<int64_t>(ctx.settings.floodBytes))
      .add("limit_bytes_per_s", rate, 0)
      .add("limit_burst", burst, 0)
      .add("packets", packets)
      .add("lost", lost)
      .add("seconds", seconds, 2)
      .add("expected_seconds", expected, 2)
      .add("echo_p50_us_before", before.rtt.percentileUs(0.5), 1)
      .add("echo_p99_us_before", before.rtt.percentileUs(0.99), 1)
      .add("echo_p50_us_during", during.rtt.percentileUs(0.5), 1)
      .add("echo_p99_us_during", during.rtt.percentileUs(0.99), 1);
  row.what = format("%s %.1f MB flood at %s B/s", ctx.target.tls ? "tls" : "plain",
                    static_cast<double>(ctx.settings.floodBytes) / 1e6,
                    rate > 0 ? compact(rate).c_str() : "no advertised limit");
  row.result = format("%.2f s (limit predicts %.2f s), %llu lost", seconds, expected,
                      static_cast<unsigned long long>(lost));
  row.latency = format("echo p50/p99 %.0f/%.0f -> %.0f/%.0f", before.rtt.percentileUs(0.5),
                       before.rtt.percentileUs(0.99), during.rtt.percentileUs(0.5),
                       during.rtt.percentileUs(0.99));
  for (const std::string* e : {&f.error, &before.error, &during.error}) {
    if (error.empty() && !e->empty()) error = *e;
  }
  if (!error.empty()) {
    j.add("error", error);
    row.note = error;
  }
  const bool ok = error.empty() && lost == 0 && during.roundTrips > 0;
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
  ctx.progress.clear();
}

}  // namespace derpd::bench
