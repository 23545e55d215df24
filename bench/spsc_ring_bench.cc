// SpscRing costs: the uncontended push+pop pair a shard pays per cross-shard message, and the
// throughput of a producer and a consumer on two threads, where the cached indices matter.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

#include "runtime/spsc_ring.h"

namespace derpd {
namespace {

// The cross-shard descriptor is a few words; 32 bytes stands in for it.
struct Descriptor {
  uint64_t buffer;
  uint64_t connection;
  uint32_t generation;
  uint32_t length;
  uint64_t sourceKeyIndex;
};

void BM_PushPopSingleThread(benchmark::State& state) {
  static SpscRing<Descriptor> ring(1024);
  const auto batch = static_cast<size_t>(state.range(0));
  Descriptor d{};
  Descriptor out[64];
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      d.length = static_cast<uint32_t>(i);
      ring.tryPush(d);
    }
    size_t got = 0;
    while (got < batch) got += ring.popBatch(out, std::min<size_t>(64, batch - got));
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_PushPopSingleThread)->Arg(1)->Arg(16)->Arg(64);

// The timed loop is the producer; a consumer thread drains with popBatch of the given size.
// A full ring makes the producer wait, so the rate measured is the pair's throughput.
void BM_TwoThreadThroughput(benchmark::State& state) {
  static SpscRing<uint64_t> ring(4096);
  const auto popBatch = static_cast<size_t>(state.range(0));
  std::atomic<bool> done{false};
  uint64_t received = 0;
  std::thread consumer([&] {
    uint64_t buf[256];
    uint64_t count = 0;
    for (;;) {
      const size_t n = ring.popBatch(buf, popBatch);
      count += n;
      if (n != 0) continue;
      if (done.load(std::memory_order_acquire) && ring.empty()) break;
      // Yield rather than spin so a busy machine (CI, parallel builds) cannot park the
      // producer behind us for a whole time slice.
      std::this_thread::yield();
    }
    received = count;
  });

  uint64_t sent = 0;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      while (!ring.tryPush(sent)) std::this_thread::yield();
      ++sent;
    }
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  if (received != sent) state.SkipWithError("consumer lost elements");
  state.SetItemsProcessed(static_cast<int64_t>(sent));
}
BENCHMARK(BM_TwoThreadThroughput)->Arg(1)->Arg(32)->Arg(256)->UseRealTime();

}  // namespace
}  // namespace derpd

BENCHMARK_MAIN();
