// Mailbox: the only way shards talk to each other.
//
// One SPSC ring per ordered pair of shards that has ever exchanged mail: the
// sender creates it at its first message to that shard and publishes it; it is
// never resized or freed before the mailbox. The capacity shrinks as the shard
// count grows (ringCapacity), so the rings' memory stays bounded (about 64 MiB
// if every pair of 128 shards has talked, none before any has) instead of
// growing with the square of the shard count. A shard pushes into its outgoing rings during a
// loop turn and, once per turn, wakes each destination it pushed to with one
// IORING_OP_MSG_RING. Messages are plain 64-byte values; payload buffers move
// by pointer (ownership travels with the message, nothing is copied).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/spsc_ring.h"

namespace derpd {

struct alignas(64) MailMessage {
  uint8_t kind = 0;  // meaning defined by the user of the mailbox
  uint8_t flags = 0;
  uint16_t shard = 0;
  uint32_t idx = 0;
  uint32_t gen = 0;
  uint32_t aux = 0;
  union {
    void* ptr = nullptr;
    uint64_t stamp;                // for messages that carry a time
    std::array<uint8_t, 16> addr;  // for messages that carry an address, not a buffer
  };
  std::array<uint8_t, 32> key{};
};
static_assert(sizeof(MailMessage) == 64);

class Mailbox {
 public:
  using Ring = SpscRing<MailMessage>;
  static constexpr size_t kMaxRingCapacity = 2048;
  static constexpr size_t kMinRingCapacity = 64;
  // Slots of all pairs' rings together, once every pair has talked (64 MiB).
  static constexpr size_t kTotalSlots = size_t{1} << 20;
  // Each pair's ring: kTotalSlots shared by the n*(n-1) pairs, as a power of
  // two within [kMinRingCapacity, kMaxRingCapacity]. A pair's share of a
  // shard's traffic falls as the count grows, so smaller rings suffice; a
  // burst that fills one waits in the sender's Outbox.
  static size_t ringCapacity(size_t shards);

  explicit Mailbox(size_t shards);
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  size_t shards() const { return shards_; }
  size_t ringCapacity() const { return capacity_; }
  // Sender's side (the shard `from` only): the ring, created on first use.
  Ring& outgoing(size_t from, size_t to) {
    std::atomic<Ring*>& slot = rings_[from * shards_ + to];
    Ring* r = slot.load(std::memory_order_relaxed);  // only this sender stores it
    return r != nullptr ? *r : create(slot);
  }
  // Receiver's side (the shard `to` only): the ring, or null if `from` has
  // never sent to `to`.
  Ring* incoming(size_t from, size_t to) {
    // acquire: pairs with create's release, so the ring's construction is seen.
    return rings_[from * shards_ + to].load(std::memory_order_acquire);
  }
  // Rings created so far (a gauge for tests and the memory figure).
  size_t ringsCreated() const { return created_.load(std::memory_order_relaxed); }

  // A sender whose ring to `to` was full sleeps instead of retrying every
  // turn: it raises the pair's flag, then tries once more (raiseWaiting); the
  // receiver, having taken messages from the ring, lowers the flag and wakes
  // the sender if it was raised (takeWaitingSender). Both are read-modify-
  // writes of the flag, so one of them reads the other's value: either the
  // receiver sees the flag raised, or the sender's exchange reads the
  // receiver's (acquire, after its release) and its retry sees the room the
  // receiver made. No wake-up is lost. (Not fences: ThreadSanitizer cannot
  // check those.)
  // Sender's side, after a push to ring(from, to) failed.
  void raiseWaiting(size_t from, size_t to) {
    flags_[from * shards_ + to].waiting.exchange(true, std::memory_order_acq_rel);
  }
  // Receiver's side, after popping from ring(from, to) (or exiting): whether
  // the sender waits for room (wake it).
  bool takeWaitingSender(size_t from, size_t to) {
    return flags_[from * shards_ + to].waiting.exchange(false, std::memory_order_acq_rel);
  }

 private:
  struct alignas(64) Flag {
    std::atomic<bool> waiting{false};
  };
  Ring& create(std::atomic<Ring*>& slot);

  size_t shards_;
  size_t capacity_;
  std::unique_ptr<std::atomic<Ring*>[]> rings_;
  std::unique_ptr<Flag[]> flags_;
  std::atomic<size_t> created_{0};
};

// One shard's sending side: pushes, keeps what a full ring refused (rare; the
// only allocation, and only under overload) and remembers whom to wake. A
// shard with held messages need not retry before its destination wakes it
// (Mailbox::raiseWaiting).
// Only the owning shard's thread may call it.
class Outbox {
 public:
  static constexpr size_t kKeepCapacity = 1024;  // messages of backlog memory kept once drained

  Outbox(Mailbox& mailbox, size_t self);
  void send(size_t to, const MailMessage& m);
  // Retries held-back messages; returns a bitmask-like list of shards that
  // received something since the last call (to wake them).
  template <typename WakeFn>
  void flush(WakeFn&& wake) {
    for (size_t to = 0; to < pending_.size(); to++) {
      auto& held = overflow_[to];
      size_t i = 0;
      while (i < held.size() && mailbox_.outgoing(self_, to).tryPush(held[i])) {
        i++;
        pending_[to] = true;
      }
      if (i < held.size()) {
        // Still full: ask to be woken when `to` has read, then look once
        // more (it may have read before it could see the flag).
        mailbox_.raiseWaiting(self_, to);
        while (i < held.size() && mailbox_.outgoing(self_, to).tryPush(held[i])) {
          i++;
          pending_[to] = true;
        }
      }
      if (i > 0) held.erase(held.begin(), held.begin() + static_cast<ptrdiff_t>(i));
      // A burst's backlog does not keep its memory once it has drained.
      if (held.empty() && held.capacity() > kKeepCapacity) std::vector<MailMessage>().swap(held);
      if (pending_[to]) {
        pending_[to] = false;
        wake(to);
      }
    }
  }
  bool hasBacklog() const;
  // Messages to `to` held back because its ring was full.
  size_t held(size_t to) const { return overflow_[to].size(); }
  size_t heldTotal() const;
  // Calls fn(message) for each message held back for `to` and forgets them
  // (for a destination that will never read again).
  template <typename Fn>
  void discard(size_t to, Fn&& fn) {
    for (const MailMessage& m : overflow_[to]) fn(m);
    std::vector<MailMessage>().swap(overflow_[to]);
  }

 private:
  Mailbox& mailbox_;
  size_t self_;
  std::vector<bool> pending_;
  std::vector<std::vector<MailMessage>> overflow_;
};

}  // namespace derpd
