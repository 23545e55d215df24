// relay_throughput: a quick load generator for a running DERP server.
//
// Connects N sender/receiver pairs with the client library, then each sender
// writes bursts of pre-encoded SendPacket frames straight to its socket and each
// receiver counts RecvPacket frames, for a bounded time. Prints delivered
// packets/s, payload MB/s and loss. The load generator itself is kept cheap
// (one write per burst, one read per 256 KiB) so the server is what is measured.
//
// With --tls the same load goes through TLS (certificate not checked): one
// SSL_write per burst (records up to 16 KiB), receivers read plaintext in
// chunks and count frames; the AES-128-GCM open+seal rate of this machine is
// measured first, for PERFORMANCE.md's relay efficiency. With --server-pid the
// server's CPU time over the measured interval is read from /proc/PID/stat.
// The JSON line goes to stdout, a readable summary to stderr.
//
//   relay_throughput --port P [--host 127.0.0.1] [--pairs 2] [--size 1280]
//                    [--seconds 3] [--burst 32] [--rate PPS_PER_PAIR] [--tls]
//                    [--server-pid PID]
#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "aead_rate.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "proc_stats.h"

namespace {

using namespace derpd;
using SteadyClock = std::chrono::steady_clock;

struct Args {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int pairs = 2;
  size_t size = 1280;
  double seconds = 3;
  int burst = 32;
  double rate = 0;  // packets/s per pair; 0: as fast as the socket takes them
  bool tls = false;
  pid_t serverPid = 0;  // 0: server CPU not measured
};

bool parseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "--tls") {
      a.tls = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--host") a.host = v;
    else if (k == "--port") a.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--pairs") a.pairs = std::stoi(v);
    else if (k == "--size") a.size = std::stoul(v);
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--burst") a.burst = std::stoi(v);
    else if (k == "--rate") a.rate = std::stod(v);
    else if (k == "--server-pid") a.serverPid = static_cast<pid_t>(std::stoi(v));
    else return false;
  }
  return a.port != 0 && a.pairs > 0 && a.size > 0 && a.size <= derp::kMaxPacketSize &&
         a.seconds > 0 && a.seconds <= 600 && a.burst > 0;
}

// The client library's sockets are non-blocking (it polls with deadlines);
// the load loops want plain blocking I/O.
void makeBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK); }

void sender(int fd, const derp::NodeKey& dst, const Args& a, std::atomic<bool>& stop,
            uint64_t& sent) {
  makeBlocking(fd);
  std::vector<uint8_t> payload(a.size, 0xab);
  std::vector<uint8_t> one = derp::encodeFrame(derp::SendPacketFrame{dst, payload});
  std::vector<uint8_t> burst;
  for (int i = 0; i < a.burst; i++) burst.insert(burst.end(), one.begin(), one.end());
  auto next = SteadyClock::now();
  const auto gap = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(a.rate > 0 ? a.burst / a.rate : 0));
  while (!stop.load(std::memory_order_relaxed)) {
    if (a.rate > 0) {
      next += gap;
      std::this_thread::sleep_until(next);
    }
    size_t off = 0;
    while (off < burst.size()) {
      ssize_t n = ::write(fd, burst.data() + off, burst.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
    sent += static_cast<uint64_t>(a.burst);
  }
}

void receiver(int fd, std::atomic<bool>& stop, uint64_t& packets) {
  makeBlocking(fd);
  std::vector<uint8_t> buf(256 * 1024);
  size_t have = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t n = ::read(fd, buf.data() + have, buf.size() - have);
    if (n <= 0) return;
    have += static_cast<size_t>(n);
    size_t off = 0;
    while (have - off >= derp::kFrameHeaderLen) {
      auto h = derp::decodeFrameHeader({buf.data() + off, have - off});
      size_t total = derp::kFrameHeaderLen + h->length;
      if (have - off < total) break;
      if (h->type == static_cast<uint8_t>(derp::FrameType::kRecvPacket)) packets++;
      off += total;
    }
    std::memmove(buf.data(), buf.data() + off, have - off);
    have -= off;
  }
}

std::vector<uint8_t> encodeBurst(const derp::NodeKey& dst, const Args& a) {
  std::vector<uint8_t> payload(a.size, 0xab);
  std::vector<uint8_t> one = derp::encodeFrame(derp::SendPacketFrame{dst, payload});
  std::vector<uint8_t> burst;
  for (int i = 0; i < a.burst; i++) burst.insert(burst.end(), one.begin(), one.end());
  return burst;
}

// Over TLS: one SSL_write per burst, so a burst of 1280-byte packets leaves
// as 16 KiB records. A write blocked longer than the client's timeout (5 s)
// ends the sender.
void tlsSender(client::DerpClient& c, const derp::NodeKey& dst, const Args& a,
               std::atomic<bool>& stop, std::atomic<uint64_t>& sent, std::string& error) {
  const std::vector<uint8_t> burst = encodeBurst(dst, a);
  auto next = SteadyClock::now();
  const auto gap = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(a.rate > 0 ? a.burst / a.rate : 0));
  while (!stop.load(std::memory_order_relaxed)) {
    if (a.rate > 0) {
      next += gap;
      std::this_thread::sleep_until(next);
    }
    if (absl::Status st = c.sendRaw(burst); !st.ok()) {
      error = std::string(st.message());
      return;
    }
    sent.fetch_add(static_cast<uint64_t>(a.burst), std::memory_order_relaxed);
  }
}

// Over TLS: reads decrypted chunks and counts RecvPacket frames in place.
void tlsReceiver(client::DerpClient& c, std::atomic<bool>& stop, std::atomic<uint64_t>& packets,
                 std::string& error) {
  std::vector<uint8_t> buf(256 * 1024);
  size_t have = 0;
  uint64_t count = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    absl::StatusOr<size_t> n = c.recvRaw(std::span<uint8_t>(buf).subspan(have), 50 * kMillisecond);
    if (!n.ok()) {
      if (absl::IsDeadlineExceeded(n.status())) continue;
      error = std::string(n.status().message());
      return;
    }
    have += *n;
    size_t off = 0;
    while (have - off >= derp::kFrameHeaderLen) {
      auto h = derp::decodeFrameHeader({buf.data() + off, have - off});
      size_t total = derp::kFrameHeaderLen + h->length;
      if (have - off < total) break;
      if (h->type == static_cast<uint8_t>(derp::FrameType::kRecvPacket)) count++;
      off += total;
    }
    std::memmove(buf.data(), buf.data() + off, have - off);
    have -= off;
    packets.store(count, std::memory_order_relaxed);
  }
}

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct LoadResult {
  uint64_t sent = 0;
  uint64_t delivered = 0;
  double seconds = 0;          // offering load (what packets/s are counted over)
  double measuredSeconds = 0;  // until the receivers stopped (what CPU is counted over)
  std::string error;  // the first sender or receiver error, if any
};

// Senders stop after a.seconds; receivers then drain until nothing arrives
// for 50 ms (at most 2 s), so packets in flight are not counted as lost.
LoadResult runTls(const Args& a, std::vector<std::unique_ptr<client::DerpClient>>& senders,
                  std::vector<std::unique_ptr<client::DerpClient>>& receivers,
                  SteadyClock::time_point start) {
  std::atomic<bool> stopSenders{false}, stopReceivers{false};
  std::vector<std::atomic<uint64_t>> sent(a.pairs), got(a.pairs);
  std::vector<std::string> errors(2 * a.pairs);
  std::vector<std::thread> sendThreads, recvThreads;
  for (int i = 0; i < a.pairs; i++) {
    recvThreads.emplace_back(tlsReceiver, std::ref(*receivers[i]), std::ref(stopReceivers),
                             std::ref(got[i]), std::ref(errors[2 * i]));
    sendThreads.emplace_back(tlsSender, std::ref(*senders[i]), receivers[i]->publicKey(),
                             std::cref(a), std::ref(stopSenders), std::ref(sent[i]),
                             std::ref(errors[2 * i + 1]));
  }
  auto total = [](const std::vector<std::atomic<uint64_t>>& v) {
    uint64_t t = 0;
    for (auto& x : v) t += x.load(std::memory_order_relaxed);
    return t;
  };
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stopSenders = true;
  for (auto& t : sendThreads) t.join();
  const double loadSeconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const auto drainEnd = SteadyClock::now() + std::chrono::seconds(2);
  uint64_t last = total(got);
  while (SteadyClock::now() < drainEnd) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    uint64_t now = total(got);
    if (now == last) break;
    last = now;
  }
  stopReceivers = true;
  for (auto& t : recvThreads) t.join();
  LoadResult r;
  r.seconds = loadSeconds;
  r.measuredSeconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  r.sent = total(sent);
  r.delivered = total(got);
  for (auto& e : errors) {
    if (!e.empty() && r.error.empty()) r.error = e;
  }
  return r;
}

LoadResult runPlain(const Args& a, std::vector<std::unique_ptr<client::DerpClient>>& senders,
                    std::vector<std::unique_ptr<client::DerpClient>>& receivers,
                    SteadyClock::time_point start) {
  std::atomic<bool> stop{false};
  std::vector<uint64_t> sent(a.pairs), got(a.pairs);
  std::vector<std::thread> threads;
  for (int i = 0; i < a.pairs; i++) {
    threads.emplace_back(receiver, receivers[i]->fd(), std::ref(stop), std::ref(got[i]));
    threads.emplace_back(sender, senders[i]->fd(), receivers[i]->publicKey(), std::cref(a),
                         std::ref(stop), std::ref(sent[i]));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  // Senders blocked in write() are released by closing their sockets.
  for (auto& s : senders) s->close();
  for (auto& t : threads) t.join();
  LoadResult r;
  r.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (int i = 0; i < a.pairs; i++) {
    r.sent += sent[i];
    r.delivered += got[i];
  }
  r.measuredSeconds = r.seconds;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parseArgs(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: relay_throughput --port P [--host H] [--pairs N] [--size B] "
                 "[--seconds S] [--burst K] [--rate PPS_PER_PAIR] [--tls] [--server-pid PID]\n");
    return 2;
  }
  // The yardstick first, on this (the generator's) core, before any load. The
  // machine is shared: count this thread's CPU time, not the wall clock, so a
  // preempted measurement does not inflate the efficiency.
  double aeadRate = 0, aeadWallRate = 0;
  if (a.tls) {
    const double cpu0 = threadCpuSeconds();
    const auto wall0 = SteadyClock::now();
    aeadWallRate = bench::aesGcmOpenSealRate(1280, 0.5);
    const double wall = std::chrono::duration<double>(SteadyClock::now() - wall0).count();
    aeadRate = aeadWallRate * wall / std::max(threadCpuSeconds() - cpu0, 1e-3);
  }
  std::vector<std::unique_ptr<client::DerpClient>> senders, receivers;
  for (int i = 0; i < a.pairs; i++) {
    for (auto* list : {&senders, &receivers}) {
      client::ClientOptions o;
      o.host = a.host;
      o.port = a.port;
      o.tls = a.tls;
      o.insecure = true;
      auto c = client::DerpClient::connect(o);
      if (!c.ok()) {
        std::fprintf(stderr, "connect: %s\n", std::string(c.status().message()).c_str());
        return 1;
      }
      list->push_back(std::move(*c));
    }
  }
  const double serverCpu0 = a.serverPid ? bench::processCpuSeconds(a.serverPid) : 0;
  const double genCpu0 = bench::selfCpuSeconds();
  auto start = SteadyClock::now();
  LoadResult r = a.tls ? runTls(a, senders, receivers, start)
                       : runPlain(a, senders, receivers, start);
  const double genCpu = bench::selfCpuSeconds() - genCpu0;
  const double serverCpu = a.serverPid ? bench::processCpuSeconds(a.serverPid) - serverCpu0 : 0;
  for (auto& c : senders) c->close();
  for (auto& c : receivers) c->close();

  const double secs = r.seconds;
  const double cpuSecs = r.measuredSeconds;
  double pps = static_cast<double>(r.delivered) / secs;
  double loss = r.sent ? 100.0 * (1.0 - static_cast<double>(r.delivered) /
                                            static_cast<double>(r.sent))
                       : 0;
  std::printf(
      "{\"rate_per_pair\":%.0f,\"pairs\":%d,\"size\":%zu,\"seconds\":%.2f,\"sent\":%llu,\"delivered\":%llu,"
      "\"pps\":%.0f,\"MBps\":%.1f,\"loss_pct\":%.2f",
      a.rate, a.pairs, a.size, secs, static_cast<unsigned long long>(r.sent),
      static_cast<unsigned long long>(r.delivered), pps, pps * static_cast<double>(a.size) / 1e6,
      loss);
  const double payloadBytes = static_cast<double>(r.delivered) * static_cast<double>(a.size);
  if (a.tls || a.serverPid) {
    std::printf(",\"tls\":%s,\"burst\":%d,\"cpu_interval_s\":%.2f,\"gen_cpu_s\":%.2f,"
                "\"gen_cpu_pct\":%.0f",
                a.tls ? "true" : "false", a.burst, cpuSecs, genCpu, 100 * genCpu / cpuSecs);
  }
  const bool haveServerCpu = a.serverPid && serverCpu > 0 && r.delivered > 0;
  if (haveServerCpu) {
    std::printf(
        ",\"server_cpu_s\":%.2f,\"server_cpu_pct\":%.1f,\"server_us_per_pkt\":%.2f,"
        "\"payload_Bps_per_server_core\":%.0f",
        serverCpu, 100 * serverCpu / cpuSecs, 1e6 * serverCpu / static_cast<double>(r.delivered),
        payloadBytes / serverCpu);
  }
  if (a.tls) {
    std::printf(",\"aead_open_seal_Bps\":%.0f,\"aead_open_seal_wall_Bps\":%.0f", aeadRate,
                aeadWallRate);
    if (haveServerCpu) std::printf(",\"efficiency\":%.3f", payloadBytes / serverCpu / aeadRate);
  }
  if (!r.error.empty()) std::printf(",\"error\":\"%s\"", r.error.c_str());
  std::printf("}\n");
  std::fflush(stdout);

  std::fprintf(stderr, "%s %d pairs x %.0f pps (burst %d), %zu B: %.0f pps delivered, %.1f MB/s, "
               "loss %.2f%%, generator CPU %.0f%%",
               a.tls ? "TLS" : "plain", a.pairs, a.rate, a.burst, a.size, pps,
               pps * static_cast<double>(a.size) / 1e6, loss, 100 * genCpu / cpuSecs);
  if (haveServerCpu) {
    std::fprintf(stderr, ", server CPU %.0f%% (%.2f us/packet)", 100 * serverCpu / cpuSecs,
                 1e6 * serverCpu / static_cast<double>(r.delivered));
    if (a.tls) {
      std::fprintf(stderr, ", efficiency %.3f (open+seal %.2f GB/s)",
                   payloadBytes / serverCpu / aeadRate, aeadRate / 1e9);
    }
  }
  if (!r.error.empty()) std::fprintf(stderr, " [error: %s]", r.error.c_str());
  std::fprintf(stderr, "\n");
  return r.delivered > 0 ? 0 : 1;
}
