#include "runtime/mailbox.h"

namespace derpd {

Mailbox::Mailbox(size_t shards) : shards_(shards), flags_(new Flag[shards * shards]) {
  rings_.resize(shards * shards);
  for (size_t from = 0; from < shards; from++) {
    for (size_t to = 0; to < shards; to++) {
      if (from != to) rings_[from * shards + to] = std::make_unique<Ring>();
    }
  }
}

Outbox::Outbox(Mailbox& mailbox, size_t self)
    : mailbox_(mailbox), self_(self), pending_(mailbox.shards()), overflow_(mailbox.shards()) {}

void Outbox::send(size_t to, const MailMessage& m) {
  // Keep per-pair order: once something is held back, later messages queue
  // behind it instead of overtaking it through the ring.
  if (overflow_[to].empty() && mailbox_.ring(self_, to).tryPush(m)) {
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
