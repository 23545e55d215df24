#include "runtime/timer_wheel.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <limits>

namespace derpd {

namespace {

using Link = detail::TimerLink;

void linkBefore(Link* head, Link* node) {
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

}  // namespace

Timer::~Timer() {
  // An owner that dies with its timer armed would leave a dangling node in the wheel.
  if (wheel_ != nullptr) wheel_->cancel(*this);
}

TimerWheel::TimerWheel(const Clock& clock, Nanos tick, size_t slots)
    : clock_(clock),
      tick_(tick),
      mask_(slots - 1),
      currentTick_(0),
      slots_(slots),
      occupied_((slots + 63) / 64, 0) {
  assert(tick > 0);
  assert(slots > 0 && (slots & (slots - 1)) == 0);
  currentTick_ = tickOf(clock_.now());
}

TimerWheel::~TimerWheel() {
  // Disarm without firing: the owners are being torn down with the shard and must not be
  // called back, but their destructors must not reach into a dead wheel either.
  for (Link& head : slots_) {
    while (head.next != &head) {
      auto* t = static_cast<Timer*>(head.next);
      head.next = t->next;
      t->prev = t->next = t;
      t->wheel_ = nullptr;
    }
    head.prev = &head;
  }
}

void TimerWheel::arm(Timer& t, Nanos deadline) {
  assert(t.wheel_ == nullptr || t.wheel_ == this);
  if (t.wheel_ == this) {
    unlink(t);
    forgetIfEarliest(t.deadline_);
  } else {
    t.wheel_ = this;
    ++size_;
  }
  t.deadline_ = deadline;
  // A deadline already behind the wheel goes into the current slot, which the next expire()
  // always scans.
  t.tick_ = std::max(tickOf(deadline), currentTick_);
  insert(t);
  if (size_ == 1) {
    earliest_ = deadline;
    earliestKnown_ = true;
  } else if (earliestKnown_ && deadline < earliest_) {
    earliest_ = deadline;
  }
}

void TimerWheel::cancel(Timer& t) {
  if (t.wheel_ == nullptr) return;
  assert(t.wheel_ == this);
  unlink(t);
  t.wheel_ = nullptr;
  --size_;
  forgetIfEarliest(t.deadline_);
}

size_t TimerWheel::expire() {
  const Nanos now = clock_.now();
  // A clock that stepped back (a test may set it) must not move the wheel backwards.
  const int64_t nowTick = std::max(tickOf(now), currentTick_);
  // A jump of more than one revolution needs each slot scanned once, not once per lap.
  const int64_t lastTick =
      currentTick_ + std::min<int64_t>(nowTick - currentTick_, static_cast<int64_t>(mask_));

  // Collect first, fire second: callbacks may then arm or cancel anything, including timers
  // still waiting in this batch, without invalidating a slot walk in progress.
  Link due;
  for (int64_t tick = currentTick_; tick <= lastTick; ++tick) {
    const size_t slot = slotOf(tick);
    if ((occupied_[slot / 64] & (uint64_t{1} << (slot % 64))) == 0) continue;
    Link* head = &slots_[slot];
    for (Link* node = head->next; node != head;) {
      auto* t = static_cast<Timer*>(node);
      node = node->next;
      // Slots are shared by all revolutions; the deadline itself decides.
      if (t->deadline_ > now) continue;
      unlink(*t);
      t->slot_ = kExpiring;
      linkBefore(&due, t);
    }
  }
  currentTick_ = nowTick;

  size_t fired = 0;
  while (due.next != &due) {
    auto* t = static_cast<Timer*>(due.next);
    unlink(*t);
    t->wheel_ = nullptr;
    --size_;
    forgetIfEarliest(t->deadline_);
    ++fired;
    t->cb_(t, t->ctx_);
  }
  return fired;
}

std::optional<Nanos> TimerWheel::nextDeadline() const {
  if (size_ == 0) return std::nullopt;
  if (!earliestKnown_) {
    earliest_ = scanEarliest();
    earliestKnown_ = true;
  }
  return earliest_;
}

void TimerWheel::insert(Timer& t) {
  const size_t slot = slotOf(t.tick_);
  t.slot_ = static_cast<uint32_t>(slot);
  linkBefore(&slots_[slot], &t);
  markSlot(slot);
}

void TimerWheel::unlink(Timer& t) {
  t.prev->next = t.next;
  t.next->prev = t.prev;
  t.prev = t.next = &t;
  if (t.slot_ != kExpiring) clearSlotIfEmpty(t.slot_);
}

void TimerWheel::markSlot(size_t slot) { occupied_[slot / 64] |= uint64_t{1} << (slot % 64); }

void TimerWheel::clearSlotIfEmpty(size_t slot) {
  if (slots_[slot].next == &slots_[slot]) {
    occupied_[slot / 64] &= ~(uint64_t{1} << (slot % 64));
  }
}

size_t TimerWheel::findOccupied(size_t from) const {
  const size_t slotCount = slots_.size();
  if (from >= slotCount) return slotCount;
  size_t word = from / 64;
  uint64_t bits = occupied_[word] & (~uint64_t{0} << (from % 64));
  while (bits == 0) {
    if (++word == occupied_.size()) return slotCount;
    bits = occupied_[word];
  }
  return word * 64 + static_cast<size_t>(std::countr_zero(bits));
}

void TimerWheel::forgetIfEarliest(Nanos deadline) {
  // Removing a later timer leaves the minimum intact; only losing the minimum needs a rescan.
  if (earliestKnown_ && deadline <= earliest_) earliestKnown_ = false;
}

Nanos TimerWheel::scanEarliest() const {
  // Walk slots in tick order starting at the current tick. In the slot k ticks ahead, timers
  // of tick currentTick_ + k are this revolution's; every timer of a later tick has a later
  // deadline, so the first slot holding any of this revolution's timers holds the minimum.
  // Timers due more than a revolution out are only the answer when nothing nearer exists.
  const size_t start = slotOf(currentTick_);
  Nanos fallback = std::numeric_limits<Nanos>::max();
  const size_t ranges[2][2] = {{start, slots_.size()}, {0, start}};
  for (const auto& range : ranges) {
    for (size_t slot = findOccupied(range[0]); slot < range[1]; slot = findOccupied(slot + 1)) {
      const int64_t thisRevolution = currentTick_ + static_cast<int64_t>((slot - start) & mask_);
      Nanos best = std::numeric_limits<Nanos>::max();
      const Link* head = &slots_[slot];
      for (const Link* node = head->next; node != head; node = node->next) {
        const auto* t = static_cast<const Timer*>(node);
        if (t->tick_ == thisRevolution) best = std::min(best, t->deadline_);
        fallback = std::min(fallback, t->deadline_);
      }
      if (best != std::numeric_limits<Nanos>::max()) return best;
    }
  }
  return fallback;
}

}  // namespace derpd
