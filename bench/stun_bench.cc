// Per-datagram STUN codec cost: every Tailscale probe is one parse (with its
// CRC-32 fingerprint) and one response build, so this bounds the per-core
// response rate before any syscall.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <variant>

#include "stun/stun.h"

namespace derpd::stun {
namespace {

// stun.Request from Tailscale (tests/vectors/stun.json "binding_request"):
// SOFTWARE "tailnode" + FINGERPRINT.
constexpr std::array<uint8_t, 40> kTailscaleRequest = {
    0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
    0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x80, 0x22, 0x00, 0x08, 0x74, 0x61, 0x69, 0x6c,
    0x6e, 0x6f, 0x64, 0x65, 0x80, 0x28, 0x00, 0x04, 0xb3, 0x2c, 0x37, 0x0f,
};

void BM_ParseTailscaleRequest(benchmark::State& state) {
  for (auto _ : state) {
    auto parsed = parseBindingRequest(kTailscaleRequest);
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_ParseTailscaleRequest);

// Arg: address family of the sender (IPv4 answers are 32 bytes, IPv6 44).
void BM_ParseAndRespond(benchmark::State& state) {
  sockaddr_in6 sin6{};
  sockaddr_in sin{};
  const sockaddr* from;
  if (state.range(0) == AF_INET6) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(41641);
    inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
    from = reinterpret_cast<const sockaddr*>(&sin6);
  } else {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(41641);
    inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
    from = reinterpret_cast<const sockaddr*>(&sin);
  }
  std::array<uint8_t, kMaxResponseLen> out;
  for (auto _ : state) {
    auto parsed = parseBindingRequest(kTailscaleRequest);
    const auto* req = std::get_if<BindingRequest>(&parsed);
    if (req == nullptr) {
      state.SkipWithError("vector request rejected");
      break;
    }
    benchmark::DoNotOptimize(buildBindingResponse(*req, from, out));
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_ParseAndRespond)->Arg(AF_INET)->Arg(AF_INET6);

}  // namespace
}  // namespace derpd::stun
BENCHMARK_MAIN();
