// The machine's loopback TCP copy rate, the reference for plain-HTTP relay
// figures (PERFORMANCE.md): one thread writes 64 KiB chunks into a 127.0.0.1
// TCP connection, another reads them. Each byte is copied into the kernel
// once and out once, as a relay does, so bytes per CPU-second of the two
// threads is what one core spends on loopback TCP alone.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "proc_stats.h"

namespace derpd::bench {

struct TcpLoopbackRate {
  double bytesPerCpuSecond = 0;  // per core: bytes / (writer + reader CPU time)
  double bytesPerSecond = 0;     // wall clock
};

// Runs for about `seconds` on the calling process's CPUs; zeros on failure.
inline TcpLoopbackRate measureTcpLoopback(double seconds) {
  TcpLoopbackRate out;
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t len = sizeof(a);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (listener >= 0) ::close(listener);
    return out;
  }
  const int writer = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(writer, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(writer);
    ::close(listener);
    return out;
  }
  const int reader = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  std::atomic<bool> stop{false};
  double writerCpu = 0;
  std::thread w([&] {
    const double cpu0 = threadCpuSeconds();
    std::vector<uint8_t> chunk(64 * 1024, 0x5a);
    // Bounded by time; the reader keeps reading until the writer closes.
    while (!stop.load(std::memory_order_relaxed)) {
      if (::write(writer, chunk.data(), chunk.size()) <= 0) break;
    }
    writerCpu = threadCpuSeconds() - cpu0;
    ::shutdown(writer, SHUT_WR);
  });
  const double cpu0 = threadCpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<uint8_t> buf(256 * 1024);
  uint64_t bytes = 0;
  for (;;) {
    if (std::chrono::steady_clock::now() >= end) stop.store(true);
    const ssize_t n = ::read(reader, buf.data(), buf.size());
    if (n <= 0) break;
    bytes += static_cast<uint64_t>(n);
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double readerCpu = threadCpuSeconds() - cpu0;
  w.join();
  ::close(writer);
  ::close(reader);
  out.bytesPerSecond = static_cast<double>(bytes) / wall;
  out.bytesPerCpuSecond = static_cast<double>(bytes) / std::max(writerCpu + readerCpu, 1e-3);
  return out;
}

}  // namespace derpd::bench
