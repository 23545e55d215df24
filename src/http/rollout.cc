#include "http/rollout.h"

#include <random>

#include "base/ip_prefix.h"

namespace derpd::http {

uint64_t GoPcg::next() {
  // state = state * mul + inc, in 128 bits (Go's PCG constants).
  constexpr unsigned __int128 kMul =
      (static_cast<unsigned __int128>(2549297995355413924ULL) << 64) | 4865540595714422341ULL;
  constexpr unsigned __int128 kInc =
      (static_cast<unsigned __int128>(6364136223846793005ULL) << 64) | 1442695040888963407ULL;
  const unsigned __int128 state = ((static_cast<unsigned __int128>(hi_) << 64) | lo_) * kMul + kInc;
  hi_ = static_cast<uint64_t>(state >> 64);
  lo_ = static_cast<uint64_t>(state);
  // DXSM ("double xorshift multiply") output of the new state.
  uint64_t x = hi_;
  x ^= x >> 32;
  x *= 0xda942042e4dd58b5ULL;
  x ^= x >> 48;
  x *= lo_ | 1;
  return x;
}

bool rolloutIncludes(const std::array<uint8_t, 16>& ip, double share) {
  if (share <= 0) return false;
  if (share >= 1) return true;
  if (isLoopbackIp(ip)) {
    static thread_local std::minstd_rand rng(std::random_device{}());
    return (rng() & 1) != 0;
  }
  // Go: NewPCG(LittleEndian.Uint64(ip16[:8]), LittleEndian.Uint64(ip16[8:])).
  uint64_t seed1 = 0;
  uint64_t seed2 = 0;
  for (int i = 7; i >= 0; i--) {
    seed1 = seed1 << 8 | ip[i];
    seed2 = seed2 << 8 | ip[8 + i];
  }
  GoPcg rnd(seed1, seed2);
  return share > rnd.nextFloat64();
}

std::optional<double> rolloutShareFromTxt(std::string_view value) {
  // strconv.Atoi: an optional sign, then decimal digits only.
  std::string_view digits = value;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return std::nullopt;
  while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
  if (digits.size() > 3) return std::nullopt;  // past 100, or not a number at all
  int64_t n = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return std::nullopt;
    n = n * 10 + (ch - '0');
  }
  if (negative) n = -n;
  if (n < 0 || n > 100) return std::nullopt;
  return static_cast<double>(n) / 100;
}

}  // namespace derpd::http
