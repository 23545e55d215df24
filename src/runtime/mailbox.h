// Mailbox: the only way shards talk to each other.
//
// One SPSC ring per ordered pair of shards, created before the shard threads
// start and never resized. A shard pushes into its outgoing rings during a
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
  static constexpr size_t kRingCapacity = 2048;
  using Ring = SpscRing<MailMessage, kRingCapacity>;

  explicit Mailbox(size_t shards);
  size_t shards() const { return shards_; }
  Ring& ring(size_t from, size_t to) { return *rings_[from * shards_ + to]; }

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
  size_t shards_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::unique_ptr<Flag[]> flags_;
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
      while (i < held.size() && mailbox_.ring(self_, to).tryPush(held[i])) {
        i++;
        pending_[to] = true;
      }
      if (i < held.size()) {
        // Still full: ask to be woken when `to` has read, then look once
        // more (it may have read before it could see the flag).
        mailbox_.raiseWaiting(self_, to);
        while (i < held.size() && mailbox_.ring(self_, to).tryPush(held[i])) {
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
