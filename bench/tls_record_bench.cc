// TLS record seal and open with BoringSSL's AES-128-GCM (what a TLS 1.3
// client and derpd negotiate on x86 with AES-NI), per record size: the crypto
// floor of relaying over TLS. Also the yardstick of derp-bench's TLS relay efficiency.
#include <benchmark/benchmark.h>
#include <openssl/aead.h>

#include <cstdint>
#include <vector>

#include "aead_rate.h"

namespace derpd::bench {
namespace {

struct Aead {
  Aead() {
    uint8_t key[16] = {9};
    EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_128_gcm(), key, sizeof(key),
                      EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr);
  }
  ~Aead() { EVP_AEAD_CTX_cleanup(&ctx); }
  EVP_AEAD_CTX ctx;
};

void BM_SealRecord(benchmark::State& state) {
  Aead a;
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> in(n, 1), out(n + 16);
  uint8_t nonce[12] = {}, ad[13] = {23, 3, 3};
  size_t len = 0;
  for (auto _ : state) {
    nonce[11]++;
    if (!EVP_AEAD_CTX_seal(&a.ctx, out.data(), &len, out.size(), nonce, sizeof(nonce), in.data(),
                           n, ad, sizeof(ad))) {
      state.SkipWithError("seal failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_SealRecord)->Arg(100)->Arg(1280)->Arg(16384);

void BM_OpenRecord(benchmark::State& state) {
  Aead a;
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> in(n, 1), sealed(n + 16), out(n);
  uint8_t nonce[12] = {}, ad[13] = {23, 3, 3};
  size_t len = 0;
  EVP_AEAD_CTX_seal(&a.ctx, sealed.data(), &len, sealed.size(), nonce, sizeof(nonce), in.data(),
                    n, ad, sizeof(ad));
  for (auto _ : state) {
    if (!EVP_AEAD_CTX_open(&a.ctx, out.data(), &len, out.size(), nonce, sizeof(nonce),
                           sealed.data(), sealed.size(), ad, sizeof(ad))) {
      state.SkipWithError("open failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_OpenRecord)->Arg(100)->Arg(1280)->Arg(16384);

// The yardstick itself, as derp-bench measures it (aead_rate.h).
void BM_OpenSealRate1280(benchmark::State& state) {
  for (auto _ : state) {
    double rate = aesGcmOpenSealRate(1280, 0.05);
    state.counters["open_seal_GBps"] = rate / 1e9;
  }
}
BENCHMARK(BM_OpenSealRate1280)->Iterations(1);

}  // namespace
}  // namespace derpd::bench
BENCHMARK_MAIN();
