// SendQueue: a destination's bounded FIFO of packets waiting to be written.
//
// Every client connection (and mesh peer) has one or more of these on the shard that owns the
// connection; only that shard's thread touches them. The queue holds PacketBufs linked through
// PacketBuf::next and owns them while they are queued. Backpressure drops the oldest packets
// rather than refusing the newest, as derper does, so a slow reader never stalls the senders:
// push() hands the dropped packets back to the caller, who releases and counts them.
//
// Byte accounting uses each packet's length at the time it is pushed; a holder must not change
// the length of a queued packet.
#pragma once

#include <cassert>
#include <cstddef>

#include "runtime/packet_pool.h"

namespace derpd {

class SendQueue {
 public:
  static constexpr size_t kDefaultMaxPackets = 32;
  static constexpr size_t kDefaultMaxBytes = 512 << 10;

  explicit SendQueue(size_t maxPackets = kDefaultMaxPackets, size_t maxBytes = kDefaultMaxBytes)
      : maxPackets_(maxPackets), maxBytes_(maxBytes) {
    assert(maxPackets >= 1);
  }
  // The queue does not know the pools its packets came from, so destroying it releases
  // nothing: a connection closing early must takeAll() and release them. (At shard teardown
  // the pools themselves go, so leftovers there are harmless.)
  ~SendQueue() = default;
  SendQueue(const SendQueue&) = delete;
  SendQueue& operator=(const SendQueue&) = delete;

  // Appends `b`, then drops from the head while either cap is exceeded. Returns the dropped
  // packets oldest first, linked through next (nullptr if none). `b` itself is never dropped:
  // a packet larger than the byte cap is accepted and leaves the queue holding only it.
  PacketBuf* push(PacketBuf* b) {
    b->next = nullptr;
    if (tail_ == nullptr) {
      head_ = b;
    } else {
      tail_->next = b;
    }
    tail_ = b;
    ++size_;
    bytes_ += b->length;

    PacketBuf* dropped = nullptr;
    PacketBuf* droppedTail = nullptr;
    while (size_ > 1 && (size_ > maxPackets_ || bytes_ > maxBytes_)) {
      PacketBuf* old = pop();
      if (droppedTail == nullptr) {
        dropped = old;
      } else {
        droppedTail->next = old;
      }
      droppedTail = old;
    }
    return dropped;
  }

  // Removes and returns the oldest packet (next cleared), or nullptr if empty.
  PacketBuf* pop() {
    PacketBuf* b = head_;
    if (b == nullptr) return nullptr;
    head_ = b->next;
    if (head_ == nullptr) tail_ = nullptr;
    b->next = nullptr;
    --size_;
    bytes_ -= b->length;
    return b;
  }

  // The oldest packet, still queued, or nullptr. Lets a writer send it and pop() only once the
  // write completed.
  PacketBuf* front() const { return head_; }

  // Empties the queue and returns every packet, oldest first, linked through next. For close.
  PacketBuf* takeAll() {
    PacketBuf* all = head_;
    head_ = tail_ = nullptr;
    size_ = 0;
    bytes_ = 0;
    return all;
  }

  size_t size() const { return size_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return head_ == nullptr; }
  size_t maxPackets() const { return maxPackets_; }
  size_t maxBytes() const { return maxBytes_; }
  // New caps (a connection that turns out to be a mesh peer gets larger ones);
  // they apply from the next push.
  void setLimits(size_t maxPackets, size_t maxBytes) {
    assert(maxPackets >= 1);
    maxPackets_ = maxPackets;
    maxBytes_ = maxBytes;
  }
  // Appends n bytes to the newest packet, which the holder has just written
  // into its free capacity (small control frames share a buffer).
  void grewTail(size_t n) {
    assert(tail_ != nullptr);
    tail_->length += static_cast<uint32_t>(n);
    bytes_ += n;
  }
  PacketBuf* back() const { return tail_; }

 private:
  size_t maxPackets_;
  size_t maxBytes_;
  PacketBuf* head_ = nullptr;
  PacketBuf* tail_ = nullptr;
  size_t size_ = 0;
  size_t bytes_ = 0;
};

}  // namespace derpd
