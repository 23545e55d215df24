// relay_throughput: a quick load generator for a running DERP server.
//
// Connects N sender/receiver pairs with the client library, then each sender
// writes bursts of pre-encoded SendPacket frames straight to its socket and each
// receiver counts RecvPacket frames, for a bounded time. Prints delivered
// packets/s, payload MB/s and loss. The load generator itself is kept cheap
// (one write per burst, one read per 256 KiB) so the server is what is measured.
//
//   relay_throughput --port P [--host 127.0.0.1] [--pairs 2] [--size 1280]
//                    [--seconds 3] [--burst 32]
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "client/derp_client.h"
#include "derp/frame.h"

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
};

bool parseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--host") a.host = v;
    else if (k == "--port") a.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--pairs") a.pairs = std::stoi(v);
    else if (k == "--size") a.size = std::stoul(v);
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--burst") a.burst = std::stoi(v);
    else if (k == "--rate") a.rate = std::stod(v);
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

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parseArgs(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: relay_throughput --port P [--host H] [--pairs N] [--size B] "
                 "[--seconds S] [--burst K] [--rate PPS_PER_PAIR]\n");
    return 2;
  }
  std::vector<std::unique_ptr<client::DerpClient>> senders, receivers;
  for (int i = 0; i < a.pairs; i++) {
    for (auto* list : {&senders, &receivers}) {
      client::ClientOptions o;
      o.host = a.host;
      o.port = a.port;
      auto c = client::DerpClient::connect(o);
      if (!c.ok()) {
        std::fprintf(stderr, "connect: %s\n", std::string(c.status().message()).c_str());
        return 1;
      }
      list->push_back(std::move(*c));
    }
  }
  std::atomic<bool> stop{false};
  std::vector<uint64_t> sent(a.pairs), got(a.pairs);
  std::vector<std::thread> threads;
  auto start = SteadyClock::now();
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
  double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  uint64_t totalSent = 0, totalGot = 0;
  for (int i = 0; i < a.pairs; i++) {
    totalSent += sent[i];
    totalGot += got[i];
  }
  double pps = static_cast<double>(totalGot) / secs;
  double loss = totalSent ? 100.0 * (1.0 - static_cast<double>(totalGot) /
                                               static_cast<double>(totalSent))
                          : 0;
  std::printf(
      "{\"rate_per_pair\":%.0f,\"pairs\":%d,\"size\":%zu,\"seconds\":%.2f,\"sent\":%llu,\"delivered\":%llu,"
      "\"pps\":%.0f,\"MBps\":%.1f,\"loss_pct\":%.2f}\n",
      a.rate, a.pairs, a.size, secs, static_cast<unsigned long long>(totalSent),
      static_cast<unsigned long long>(totalGot), pps, pps * static_cast<double>(a.size) / 1e6,
      loss);
  return totalGot > 0 ? 0 : 1;
}
