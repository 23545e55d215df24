// SpscRing: a bounded, lock-free single-producer / single-consumer queue.
//
// The cross-shard mailbox keeps one ring per ordered pair of shards: the source shard is the
// only producer and the destination shard the only consumer. Exactly one thread may call
// tryPush() and exactly one (other) thread may call tryPop()/popBatch(); empty() and
// sizeApprox() may be called from either side and are only hints, since the other side keeps
// moving. The ring owns copies of the elements it holds; its slots are allocated once, at
// construction, and never resized. The capacity is chosen at run time because the mailbox
// sizes its rings by the number of shards (Mailbox::ringCapacity).
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace derpd {

template <typename T>
class SpscRing {
  static_assert(std::is_default_constructible_v<T> && std::is_copy_assignable_v<T>,
                "SpscRing stores elements in a preallocated array and copies them in and out");

 public:
  // `capacity` must be a power of two (at least 2) so indices wrap with a mask.
  explicit SpscRing(size_t capacity)
      : consumerSlots_(new T[capacity]()),
        consumerMask_(capacity - 1),
        producerSlots_(consumerSlots_.get()),
        producerMask_(capacity - 1) {
    assert(capacity >= 2 && (capacity & (capacity - 1)) == 0);
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  size_t capacity() const { return producerMask_ + 1; }

  // Producer only. Returns false, leaving the ring unchanged, when it is full.
  bool tryPush(const T& value) {
    const size_t tail = tail_.load(std::memory_order_relaxed);  // only we write it
    const size_t capacity = producerMask_ + 1;
    if (tail - cachedHead_ == capacity) {
      // Looks full with our stale view; only now pay for reading the consumer's line.
      // acquire: the consumer finished reading the slots it released before publishing head_,
      // so we may overwrite them.
      cachedHead_ = head_.load(std::memory_order_acquire);
      if (tail - cachedHead_ == capacity) return false;
    }
    producerSlots_[tail & producerMask_] = value;
    // release: the element's bytes become visible before the consumer can see the new tail.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer only. Returns false, leaving `out` untouched, when the ring is empty.
  bool tryPop(T& out) {
    const size_t head = head_.load(std::memory_order_relaxed);  // only we write it
    if (head == cachedTail_) {
      // acquire pairs with the producer's release store, so the slots below tail are complete.
      cachedTail_ = tail_.load(std::memory_order_acquire);
      if (head == cachedTail_) return false;
    }
    out = consumerSlots_[head & consumerMask_];
    // release: our read of the slot happens before the producer may reuse it.
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  // Consumer only. Pops up to `max` elements into `out` in FIFO order and returns how many.
  // One index publication per batch, so draining a burst costs one cache-line transfer.
  size_t popBatch(T* out, size_t max) {
    const size_t head = head_.load(std::memory_order_relaxed);
    size_t available = cachedTail_ - head;
    if (available < max) {
      // Refresh only when our cached view cannot satisfy the whole request.
      cachedTail_ = tail_.load(std::memory_order_acquire);
      available = cachedTail_ - head;
    }
    const size_t n = std::min(available, max);
    for (size_t i = 0; i < n; ++i) out[i] = consumerSlots_[(head + i) & consumerMask_];
    if (n > 0) head_.store(head + n, std::memory_order_release);
    return n;
  }

  // Either side; a snapshot that may be stale by the time the caller looks at it.
  bool empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }

  // Either side; approximate. head_ is read first: tail_ never falls behind a head_ value that
  // was already published, so the difference cannot go negative. It can exceed the capacity if
  // both sides move between the two loads, hence the clamp.
  size_t sizeApprox() const {
    const size_t head = head_.load(std::memory_order_acquire);
    const size_t tail = tail_.load(std::memory_order_acquire);
    return std::min(tail - head, capacity());
  }

 private:
  // x86-64 and most arm64 parts use 64-byte lines. std::hardware_destructive_interference_size
  // is avoided on purpose: GCC warns that its value may differ between compilation units.
  static constexpr size_t kCacheLine = 64;

  // Indices run freely and are masked on access, so full (tail - head == capacity) and empty
  // (tail == head) are distinguishable without sacrificing a slot.
  //
  // Each index sits on its own cache line with the cached copy of the other side's index that
  // its writer uses. Sharing a line between head_ and tail_ would make every push invalidate
  // the consumer's line and every pop the producer's (false sharing); with the caches, a side
  // only reads the other's line when its stale view says full or empty.

  // Each side keeps its own copy of the slots' address and the mask, so neither reads a line
  // the other writes to find them. The slots are a separate allocation, so the first element
  // shares no line with either index.

  // Consumer's line: written only by the consumer.
  alignas(kCacheLine) std::atomic<size_t> head_{0};
  size_t cachedTail_ = 0;
  std::unique_ptr<T[]> consumerSlots_;  // owns the slots
  size_t consumerMask_;

  // Producer's line: written only by the producer.
  alignas(kCacheLine) std::atomic<size_t> tail_{0};
  size_t cachedHead_ = 0;
  T* producerSlots_;
  size_t producerMask_;
};

}  // namespace derpd
