// Cost of opening a ClientInfo box: paid once per connection, and by an
// attacker's junk ClientInfo frames, so it bounds handshake throughput.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "derp/handshake.h"

namespace derpd::derp {
namespace {

void BM_OpenClientInfoBox(benchmark::State& state) {
  const PrivateKey server = PrivateKey::generate();
  const PrivateKey client = PrivateKey::generate();
  ClientInfo info;
  info.version = 2;
  info.canAckPings = true;
  info.meshKey = std::string(64, 'e');
  const std::string json = clientInfoJson(info);
  const std::vector<uint8_t> sealed =
      sealBox(client, server.publicKey(),
              std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
  const NodeKey clientPub = client.publicKey();
  for (auto _ : state) {
    auto opened = openBox(server, clientPub, sealed);
    if (!opened.ok()) state.SkipWithError("box did not open");
    benchmark::DoNotOptimize(opened);
  }
}
BENCHMARK(BM_OpenClientInfoBox);

// The same plus JSON parsing: the server's whole per-handshake decode cost.
void BM_OpenClientInfo(benchmark::State& state) {
  const PrivateKey server = PrivateKey::generate();
  const PrivateKey client = PrivateKey::generate();
  ClientInfo info;
  info.version = 2;
  info.canAckPings = true;
  const std::string json = clientInfoJson(info);
  const std::vector<uint8_t> sealed =
      sealBox(client, server.publicKey(),
              std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
  const NodeKey clientPub = client.publicKey();
  for (auto _ : state) {
    auto parsed = openClientInfo(server, clientPub, sealed);
    if (!parsed.ok()) state.SkipWithError("ClientInfo did not open");
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_OpenClientInfo);

}  // namespace
}  // namespace derpd::derp

BENCHMARK_MAIN();
