// LatencyHistogram: a fixed-size log-linear histogram of nanosecond latencies
// (32 sub-buckets per power of two, so percentiles are within ~3%). Recording
// never allocates; each load thread owns one and they are merged at the end.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace derpd::bench {

class LatencyHistogram {
 public:
  void record(int64_t ns) {
    const uint64_t v = ns > 0 ? static_cast<uint64_t>(ns) : 0;
    counts_[bucketOf(v)]++;
    count_++;
  }
  void merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; i++) counts_[i] += other.counts_[i];
    count_ += other.count_;
  }
  uint64_t count() const { return count_; }
  // The p-quantile (0..1) in microseconds; 0 when empty.
  double percentileUs(double p) const {
    if (count_ == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(p * static_cast<double>(count_ - 1)) + 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; i++) {
      seen += counts_[i];
      if (seen >= rank) return static_cast<double>(lowerBound(i)) / 1e3;
    }
    return static_cast<double>(lowerBound(kBuckets - 1)) / 1e3;
  }

 private:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kLinear = 2u << kSubBits;  // values below are exact
  static constexpr size_t kBuckets = kLinear + (64 - kSubBits - 1) * (1u << kSubBits);

  static size_t bucketOf(uint64_t v) {
    if (v < kLinear) return static_cast<size_t>(v);
    const int e = 63 - std::countl_zero(v);  // >= kSubBits + 1
    const uint64_t sub = (v >> (e - kSubBits)) & ((1u << kSubBits) - 1);
    return static_cast<size_t>(kLinear + static_cast<uint64_t>(e - kSubBits - 1) * (1u << kSubBits) + sub);
  }
  static uint64_t lowerBound(size_t b) {
    if (b < kLinear) return b;
    const uint64_t i = b - kLinear;
    const int e = static_cast<int>(i >> kSubBits) + kSubBits + 1;
    const uint64_t sub = i & ((1u << kSubBits) - 1);
    return ((1ull << kSubBits) | sub) << (e - kSubBits);
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
};

}  // namespace derpd::bench
