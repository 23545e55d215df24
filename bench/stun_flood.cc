// stun_flood: STUN load generator and the UDP reference it is compared with.
//
//   stun_flood --port P [--seconds 3] [--sockets 16] [--window 64]
//       floods 127.0.0.1:P with Tailscale binding requests from several source
//       sockets (so SO_REUSEPORT spreads them over the server's shards), keeping
//       at most --window requests outstanding per socket, and counts answers.
//   stun_flood --echo-port P
//       runs a plain UDP echo server (recvmmsg/sendmmsg, batches of 64) on
//       127.0.0.1:P: the machine's raw loopback rate, measured by the same
//       generator, is the reference for derpd's STUN rate.
//
// Pin it with taskset to the core the server does not use. Prints one JSON line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr int kBatch = 64;

// Tailscale's stun.Request (shared/vectors/stun.json, binding_request).
constexpr uint8_t kRequest[] = {0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42, 0x01, 0x02,
                                0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                                0x80, 0x22, 0x00, 0x08, 0x74, 0x61, 0x69, 0x6c, 0x6e, 0x6f,
                                0x64, 0x65, 0x80, 0x28, 0x00, 0x04, 0xb3, 0x2c, 0x37, 0x0f};

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  return a;
}

int echoServer(int port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::perror("bind");
    return 1;
  }
  std::array<std::array<uint8_t, 256>, kBatch> bufs{};
  std::array<sockaddr_in, kBatch> peers{};
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (;;) {
    for (int i = 0; i < kBatch; i++) {
      iov[i] = {bufs[i].data(), bufs[i].size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    ::sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
  }
}

int flood(int port, double seconds, int sockets, int window) {
  sockaddr_in server = loopback(port);
  std::vector<int> fds;
  for (int i = 0; i < sockets; i++) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof(server)) != 0) {
      std::perror("connect");
      return 1;
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
  std::array<std::array<uint8_t, 256>, kBatch> bufs{};
  std::array<iovec, kBatch> recvIov{};
  std::array<mmsghdr, kBatch> recvMsgs{};
  std::vector<long> outstanding(fds.size(), 0);
  uint64_t sent = 0, received = 0;
  auto start = SteadyClock::now();
  auto end = start + std::chrono::duration_cast<SteadyClock::duration>(
                         std::chrono::duration<double>(seconds));
  while (SteadyClock::now() < end) {
    for (size_t s = 0; s < fds.size(); s++) {
      int room = static_cast<int>(window - outstanding[s]);
      if (room >= kBatch / 2) {
        int n = ::sendmmsg(fds[s], sendMsgs.data(), static_cast<unsigned>(std::min(room, kBatch)),
                           0);
        if (n > 0) {
          sent += static_cast<uint64_t>(n);
          outstanding[s] += n;
        }
      }
      for (int i = 0; i < kBatch; i++) {
        recvIov[i] = {bufs[i].data(), bufs[i].size()};
        recvMsgs[i] = {};
        recvMsgs[i].msg_hdr.msg_iov = &recvIov[i];
        recvMsgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = ::recvmmsg(fds[s], recvMsgs.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n > 0) {
        received += static_cast<uint64_t>(n);
        outstanding[s] -= n;
      }
    }
    // Requests or answers lost (the server dropped them) would stall a window
    // forever: every 10 ms, forget what is still outstanding.
    static auto lastReset = SteadyClock::now();
    if (SteadyClock::now() - lastReset > std::chrono::milliseconds(10)) {
      lastReset = SteadyClock::now();
      for (auto& o : outstanding) o = 0;
    }
  }
  double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  std::printf(
      "{\"port\":%d,\"seconds\":%.2f,\"sockets\":%d,\"window\":%d,\"sent\":%llu,"
      "\"answered\":%llu,\"answers_per_sec\":%.0f,\"loss_pct\":%.2f}\n",
      port, secs, sockets, window, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(received), static_cast<double>(received) / secs,
      sent ? 100.0 * (1.0 - static_cast<double>(received) / static_cast<double>(sent)) : 0.0);
  return received > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, echoPort = 0, sockets = 16, window = 64;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") port = std::stoi(v);
    else if (k == "--echo-port") echoPort = std::stoi(v);
    else if (k == "--seconds") seconds = std::stod(v);
    else if (k == "--sockets") sockets = std::stoi(v);
    else if (k == "--window") window = std::stoi(v);
    else port = -1;
  }
  if (echoPort > 0) return echoServer(echoPort);
  if (port <= 0 || seconds <= 0 || seconds > 600 || sockets < 1 || window < 1) {
    std::fprintf(stderr,
                 "usage: stun_flood --port P [--seconds S] [--sockets N] [--window W]\n"
                 "       stun_flood --echo-port P\n");
    return 2;
  }
  return flood(port, seconds, sockets, window);
}
