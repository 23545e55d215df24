// KeyDirectory lookups: the one hash probe every relayed packet makes.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "relay/key_directory.h"

namespace derpd::relay {
namespace {

std::vector<derp::NodeKey> randomKeys(size_t n) {
  std::mt19937_64 rng(42);
  std::vector<derp::NodeKey> keys(n);
  for (auto& k : keys) {
    for (auto& b : k.bytes) b = static_cast<uint8_t>(rng());
  }
  return keys;
}

void BM_LookupHit(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto keys = randomKeys(n);
  KeyDirectory dir;
  for (size_t i = 0; i < n; i++) dir.add(keys[i], {static_cast<uint16_t>(i % 2), static_cast<uint32_t>(i), 1});
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(dir.lookup(keys[i]));
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupHit)->Arg(16)->Arg(1000)->Arg(10000)->Arg(100000);

void BM_LookupMiss(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto keys = randomKeys(2 * n);
  KeyDirectory dir;
  for (size_t i = 0; i < n; i++) dir.add(keys[i], {0, static_cast<uint32_t>(i), 1});
  size_t i = n;
  for (auto _ : state) {
    benchmark::DoNotOptimize(dir.lookup(keys[i]));
    if (++i == 2 * n) i = n;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupMiss)->Arg(1000)->Arg(100000);

void BM_AddRemove(benchmark::State& state) {
  auto keys = randomKeys(1024);
  KeyDirectory dir;
  size_t i = 0;
  for (auto _ : state) {
    dir.add(keys[i], {0, static_cast<uint32_t>(i), 1});
    dir.remove(keys[i], {0, static_cast<uint32_t>(i), 1});
    i = (i + 1) & 1023;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddRemove);

}  // namespace
}  // namespace derpd::relay

BENCHMARK_MAIN();
