#include "runtime/mailbox.h"

#include <algorithm>
#include <bit>

namespace derpd {

size_t Mailbox::ringCapacity(size_t shards) {
  const size_t pairs = shards * (shards > 1 ? shards - 1 : 1);
  const size_t share = std::bit_floor(std::max<size_t>(kTotalSlots / pairs, 1));
  return std::clamp(share, kMinRingCapacity, kMaxRingCapacity);
}

Mailbox::Mailbox(size_t shards)
    : shards_(shards),
      capacity_(ringCapacity(shards)),
      rings_(new std::atomic<Ring*>[shards * shards]()),
      flags_(new Flag[shards * shards]) {}

Mailbox::~Mailbox() {
  for (size_t i = 0; i < shards_ * shards_; i++) delete rings_[i].load(std::memory_order_acquire);
}

Mailbox::Ring& Mailbox::create(std::atomic<Ring*>& slot) {
  Ring* r = new Ring(capacity_);
  created_.fetch_add(1, std::memory_order_relaxed);
  // release: the receiver that loads the pointer sees a constructed ring.
  slot.store(r, std::memory_order_release);
  return *r;
}

Outbox::Outbox(Mailbox& mailbox, size_t self)
    : mailbox_(mailbox), self_(self), pending_(mailbox.shards()), overflow_(mailbox.shards()) {}

void Outbox::send(size_t to, const MailMessage& m) {
  // Keep per-pair order: once something is held back, later messages queue
  // behind it instead of overtaking it through the ring.
  if (overflow_[to].empty() && mailbox_.outgoing(self_, to).tryPush(m)) {
    pending_[to] = true;
    return;
  }
  overflow_[to].push_back(m);
}

size_t Outbox::heldTotal() const {
  size_t n = 0;
  for (const auto& held : overflow_) n += held.size();
  return n;
}

bool Outbox::hasBacklog() const {
  for (const auto& held : overflow_) {
    if (!held.empty()) return true;
  }
  return false;
}

}  // namespace derpd
