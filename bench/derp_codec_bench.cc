// Hot-path DERP codec costs: every relayed packet is one SendPacket decode, one
// RecvPacket header encode and one disco check.
#include <benchmark/benchmark.h>

#include <vector>

#include "derp/frame.h"

namespace derpd::derp {
namespace {

std::vector<uint8_t> sendPacketFrame(size_t packetLen) {
  NodeKey dst;
  dst.bytes.fill(0x64);
  const std::vector<uint8_t> packet(packetLen, 0x5a);
  return encodeFrame(SendPacketFrame{dst, packet});
}

// Decoding borrows the packet rather than copying it, so the cost should not
// grow with the packet size.
void BM_DecodeSendPacket(benchmark::State& state) {
  const std::vector<uint8_t> bytes = sendPacketFrame(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto decoded = decodeFrame(bytes);
    benchmark::DoNotOptimize(decoded);
  }
}
BENCHMARK(BM_DecodeSendPacket)->Arg(0)->Arg(1280)->Arg(64 << 10);

// The relay writes the header and source key in front of a packet it already
// holds, so only the first kFrameHeaderLen + kKeyLen bytes are written here.
void BM_EncodeRecvPacketHeader(benchmark::State& state) {
  NodeKey src;
  src.bytes.fill(0x58);
  const uint32_t packetLen = static_cast<uint32_t>(state.range(0));
  std::array<uint8_t, kFrameHeaderLen + kKeyLen> out;
  for (auto _ : state) {
    writeFrameHeader(out.data(), FrameType::kRecvPacket, kKeyLen + packetLen);
    std::copy(src.bytes.begin(), src.bytes.end(), out.begin() + kFrameHeaderLen);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_EncodeRecvPacketHeader)->Arg(1280);

// Whole-frame encode through the variant, for comparison with the above.
void BM_EncodeRecvPacketFrame(benchmark::State& state) {
  NodeKey src;
  src.bytes.fill(0x58);
  const std::vector<uint8_t> packet(static_cast<size_t>(state.range(0)), 0x5a);
  const Frame frame = RecvPacketFrame{src, packet};
  std::vector<uint8_t> out(encodedFrameSize(frame));
  for (auto _ : state) {
    benchmark::DoNotOptimize(encodeFrame(frame, out));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}
BENCHMARK(BM_EncodeRecvPacketFrame)->Arg(1280);

void BM_IsDiscoPacket(benchmark::State& state) {
  std::vector<uint8_t> packet(1280, 0);
  if (state.range(0) != 0) {
    const uint8_t magic[] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
    std::copy(std::begin(magic), std::end(magic), packet.begin());
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(isDiscoPacket(packet));
  }
}
BENCHMARK(BM_IsDiscoPacket)->ArgName("disco")->Arg(0)->Arg(1);

}  // namespace
}  // namespace derpd::derp

BENCHMARK_MAIN();
