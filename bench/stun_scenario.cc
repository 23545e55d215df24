// stun: floods the server's STUN port with Tailscale binding requests from 16
// sockets (so SO_REUSEPORT spreads them over the shards), at most 64
// outstanding per socket, and counts the answers. The reference, measured
// the same way in the same run: a plain UDP echo thread of this process on
// the server's CPUs (recvmmsg/sendmmsg, batches of 64), the machine's raw
// loopback UDP rate.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bench_context.h"
#include "cpu_pinning.h"

namespace derpd::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr int kBatch = 64;
constexpr int kSockets = 16;
constexpr int kWindow = 64;

// Tailscale's stun.Request (tests/vectors/stun.json, binding_request).
constexpr uint8_t kRequest[] = {0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42, 0x01, 0x02,
                                0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                                0x80, 0x22, 0x00, 0x08, 0x74, 0x61, 0x69, 0x6c, 0x6e, 0x6f,
                                0x64, 0x65, 0x80, 0x28, 0x00, 0x04, 0xb3, 0x2c, 0x37, 0x0f};

struct Batch {
  std::array<std::array<uint8_t, 256>, kBatch> bufs{};
  std::array<sockaddr_in, kBatch> peers{};
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  void reset(bool withPeers) {
    for (int i = 0; i < kBatch; i++) {
      iov[i] = {bufs[i].data(), bufs[i].size()};
      msgs[i] = {};
      if (withPeers) {
        msgs[i].msg_hdr.msg_name = &peers[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
      }
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

struct FloodResult {
  uint64_t sent = 0;
  uint64_t answered = 0;
  std::string error;
};

FloodResult flood(const sockaddr_in& server, double seconds) {
  FloodResult r;
  std::vector<int> fds;
  for (int i = 0; i < kSockets; i++) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0) {
      r.error = "connect: " + std::string(strerror(errno));
      ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  std::array<iovec, kBatch> sendIov{};
  std::array<mmsghdr, kBatch> sendMsgs{};
  for (int i = 0; i < kBatch; i++) {
    sendIov[i] = {const_cast<uint8_t*>(kRequest), sizeof(kRequest)};
    sendMsgs[i] = {};
    sendMsgs[i].msg_hdr.msg_iov = &sendIov[i];
    sendMsgs[i].msg_hdr.msg_iovlen = 1;
  }
  Batch recv;
  std::vector<int> outstanding(fds.size(), 0);
  const auto end = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                            std::chrono::duration<double>(seconds));
  auto lastReset = SteadyClock::now();
  while (r.error.empty() && SteadyClock::now() < end) {
    for (size_t s = 0; s < fds.size(); s++) {
      const int room = kWindow - outstanding[s];
      if (room >= kBatch / 2) {
        const int n = ::sendmmsg(fds[s], sendMsgs.data(), static_cast<unsigned>(std::min(room, kBatch)), 0);
        if (n > 0) {
          r.sent += static_cast<uint64_t>(n);
          outstanding[s] += n;
        }
      }
      recv.reset(false);
      const int n = ::recvmmsg(fds[s], recv.msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n > 0) {
        r.answered += static_cast<uint64_t>(n);
        outstanding[s] -= n;
      }
    }
    // A dropped request or answer would stall its window: every 10 ms, forget
    // what is still outstanding.
    if (SteadyClock::now() - lastReset > std::chrono::milliseconds(10)) {
      lastReset = SteadyClock::now();
      std::fill(outstanding.begin(), outstanding.end(), 0);
    }
  }
  // Answers still on their way count (briefly).
  const auto drainEnd = SteadyClock::now() + std::chrono::milliseconds(50);
  while (SteadyClock::now() < drainEnd) {
    for (int fd : fds) {
      recv.reset(false);
      const int n = ::recvmmsg(fd, recv.msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n > 0) r.answered += static_cast<uint64_t>(n);
    }
  }
  for (int fd : fds) ::close(fd);
  return r;
}

// The UDP echo reference: a thread pinned to the server's CPUs that echoes
// until stop(), which returns the thread's CPU seconds.
class UdpEcho {
 public:
  explicit UdpEcho(const std::vector<int>& cpus) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    addr_.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &addr_.sin_addr);
    socklen_t len = sizeof(addr_);
    timeval tv{0, 20000};  // so the loop sees stop_
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int big = 4 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr_), sizeof(addr_)) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr_), &len) != 0) {
      return;
    }
    thread_ = std::thread([this, cpus] {
      if (!cpus.empty()) pinThread(0, cpus);
      const double start = threadCpuSeconds();
      Batch b;
      while (!stop_.load(std::memory_order_relaxed)) {
        b.reset(true);
        const int n = ::recvmmsg(fd_, b.msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) b.iov[i].iov_len = b.msgs[i].msg_len;
        ::sendmmsg(fd_, b.msgs.data(), static_cast<unsigned>(n), 0);
      }
      cpuSeconds_ = threadCpuSeconds() - start;
    });
  }
  ~UdpEcho() {
    stop();
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return thread_.joinable(); }
  const sockaddr_in& address() const { return addr_; }
  double stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return cpuSeconds_;
  }

 private:
  int fd_ = -1;
  sockaddr_in addr_{};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  double cpuSeconds_ = 0;  // written by the thread before it ends
};

}  // namespace

void runStun(BenchContext& ctx) {
  const double seconds = ctx.settings.stepSeconds;
  TableRow row;
  row.scenario = "stun";
  if (ctx.target.stunPort == 0) {
    JsonLine j = ctx.json("stun");
    j.add("skipped", true).add("reason", "no --stun address given").add("ok", true);
    row.result = "SKIPPED";
    row.note = "no --stun address given";
    ctx.report.add(j, std::move(row));
    return;
  }
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(ctx.target.stunPort);
  if (inet_pton(AF_INET, ctx.target.stunHost.c_str(), &server.sin_addr) != 1) {
    std::fprintf(stderr, "stun: %s is not an IPv4 address\n", ctx.target.stunHost.c_str());
    ctx.report.fail();
    return;
  }
  ctx.progress.show(format("stun %s flood", ctx.target.label.c_str()));
  const CpuMeter meter = ctx.meter();
  const FloodResult r = flood(server, seconds);
  const CpuMeter::Usage usage = meter.stop();

  // The reference, same generator, same duration.
  double echoRate = 0, echoPerCpu = 0;
  if (ctx.settings.stunReference) {
    ctx.progress.show("stun: UDP echo reference");
    UdpEcho echo(ctx.serverCpus);
    if (echo.ok()) {
      const auto t0 = SteadyClock::now();
      const FloodResult e = flood(echo.address(), seconds);
      const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
      const double cpu = echo.stop();
      echoRate = static_cast<double>(e.answered) / wall;
      echoPerCpu = cpu > 0 ? static_cast<double>(e.answered) / cpu : 0;
    }
  }
  ctx.progress.clear();

  const double rate = static_cast<double>(r.answered) / usage.wall;
  const double loss =
      r.sent ? 100.0 * (1.0 - static_cast<double>(r.answered) / static_cast<double>(r.sent)) : 0;
  JsonLine j = ctx.json("stun");
  j.add("sockets", kSockets).add("window", kWindow).add("sent", r.sent)
      .add("answered", r.answered).add("answers_per_s", rate, 0).add("loss_pct", loss, 3);
  row.what = format("%d sockets, window %d", kSockets, kWindow);
  row.result = format("%s answers/s, loss %.2f%%", compact(rate).c_str(), loss);
  addCpu(ctx, usage, j, row);
  if (usage.haveServer() && usage.serverCpu > 0) {
    const double perCore = static_cast<double>(r.answered) / usage.serverCpu;
    j.add("answers_per_server_cpu_s", perCore, 0);
    row.ratio = format("%s/server CPU-s", compact(perCore).c_str());
    if (echoPerCpu > 0) {
      j.add("udp_echo_per_s", echoRate, 0).add("udp_echo_per_cpu_s", echoPerCpu, 0)
          .add("vs_udp_echo", perCore / echoPerCpu, 3);
      row.ratio += format(", vs UDP echo %.2f (echo %s/CPU-s)", perCore / echoPerCpu,
                          compact(echoPerCpu).c_str());
    }
  }
  if (!r.error.empty()) {
    j.add("error", r.error);
    row.note += (row.note.empty() ? "" : "; ") + r.error;
  }
  const bool ok = r.answered > 0 && r.error.empty();
  j.add("ok", ok);
  if (!ok) ctx.report.fail();
  ctx.report.add(j, std::move(row));
}

}  // namespace derpd::bench
