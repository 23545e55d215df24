// The yardstick of PERFORMANCE.md's TLS relay efficiency: how many payload
// bytes per second one core can open and then seal again as AES-128-GCM TLS
// records with BoringSSL (a relayed byte is decrypted once and encrypted once).
#pragma once

#include <openssl/aead.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace derpd::bench {

// Opens and re-seals `recordBytes`-byte records for about `seconds` on the
// calling thread; returns record payload bytes per second (open + seal each).
inline double aesGcmOpenSealRate(size_t recordBytes, double seconds) {
  const EVP_AEAD* aead = EVP_aead_aes_128_gcm();
  uint8_t key[16] = {1, 2, 3};
  EVP_AEAD_CTX ctx;
  EVP_AEAD_CTX_init(&ctx, aead, key, sizeof(key), EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr);
  std::vector<uint8_t> plain(recordBytes, 0x5a), sealed(recordBytes + 16), opened(recordBytes);
  uint8_t nonce[12] = {};
  uint8_t ad[13] = {23, 3, 3};
  size_t outLen = 0;
  EVP_AEAD_CTX_seal(&ctx, sealed.data(), &outLen, sealed.size(), nonce, sizeof(nonce),
                    plain.data(), plain.size(), ad, sizeof(ad));
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  uint64_t records = 0;
  while (Clock::now() < end) {
    for (int i = 0; i < 256; i++, records++) {
      nonce[11] = static_cast<uint8_t>(i);
      EVP_AEAD_CTX_open(&ctx, opened.data(), &outLen, opened.size(), nonce, sizeof(nonce),
                        sealed.data(), sealed.size(), ad, sizeof(ad));
      EVP_AEAD_CTX_seal(&ctx, sealed.data(), &outLen, sealed.size(), nonce, sizeof(nonce),
                        opened.data(), recordBytes, ad, sizeof(ad));
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  EVP_AEAD_CTX_cleanup(&ctx);
  return static_cast<double>(records * recordBytes) / elapsed;
}

}  // namespace derpd::bench
