#include "runtime/timer_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "base/clock.h"

namespace derpd {
namespace {

constexpr Nanos kTick = 10 * kMillisecond;

// A timer that records when it fired, measured on the test's clock.
struct Probe {
  explicit Probe(const Clock& c) : clock(c) {}

  static void onFire(Timer* t, void* ctx) {
    auto* p = static_cast<Probe*>(ctx);
    EXPECT_EQ(t, &p->timer);
    EXPECT_FALSE(t->armed());
    p->firedAt.push_back(p->clock.now());
  }

  const Clock& clock;
  Timer timer{&Probe::onFire, this};
  std::vector<Nanos> firedAt;
};

class TimerWheelTest : public ::testing::Test {
 protected:
  ManualClock clock_{1000 * kSecond};
  TimerWheel wheel_{clock_, kTick, 64};
};

TEST_F(TimerWheelTest, EmptyWheel) {
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(wheel_.nextDeadline(), std::nullopt);
  EXPECT_EQ(wheel_.expire(), 0u);
}

TEST_F(TimerWheelTest, NeverEarlyAndFiresAtDeadline) {
  Probe p(clock_);
  // Deliberately not on a tick boundary: the tick granularity must not make it early.
  const Nanos deadline = clock_.now() + 35 * kMillisecond + 7;
  wheel_.arm(p.timer, deadline);
  EXPECT_TRUE(p.timer.armed());
  EXPECT_EQ(p.timer.deadline(), deadline);
  EXPECT_EQ(wheel_.size(), 1u);
  EXPECT_EQ(wheel_.nextDeadline(), deadline);

  while (clock_.now() + kMillisecond < deadline) {
    clock_.advance(kMillisecond);
    ASSERT_EQ(wheel_.expire(), 0u) << "fired early at " << clock_.now();
  }
  clock_.set(deadline - 1);
  EXPECT_EQ(wheel_.expire(), 0u);
  clock_.set(deadline);
  EXPECT_EQ(wheel_.expire(), 1u);
  ASSERT_EQ(p.firedAt.size(), 1u);
  EXPECT_EQ(p.firedAt[0], deadline);
  EXPECT_FALSE(p.timer.armed());
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(wheel_.nextDeadline(), std::nullopt);
}

TEST_F(TimerWheelTest, LateExpireFiresOnce) {
  Probe p(clock_);
  wheel_.arm(p.timer, clock_.now() + kTick);
  clock_.advance(7 * kTick + 3);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(wheel_.expire(), 0u);
  EXPECT_EQ(p.firedAt.size(), 1u);
}

TEST_F(TimerWheelTest, PastDeadlineFiresOnNextExpire) {
  Probe p(clock_);
  wheel_.arm(p.timer, clock_.now() - 5 * kSecond);
  EXPECT_EQ(wheel_.nextDeadline(), clock_.now() - 5 * kSecond);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(p.firedAt.size(), 1u);
}

TEST_F(TimerWheelTest, CancelPreventsFiring) {
  Probe a(clock_);
  Probe b(clock_);
  wheel_.arm(a.timer, clock_.now() + kTick);
  wheel_.arm(b.timer, clock_.now() + 2 * kTick);
  wheel_.cancel(a.timer);
  wheel_.cancel(a.timer);  // a second cancel is a no-op
  EXPECT_FALSE(a.timer.armed());
  EXPECT_EQ(wheel_.size(), 1u);
  EXPECT_EQ(wheel_.nextDeadline(), clock_.now() + 2 * kTick);
  clock_.advance(kSecond);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_TRUE(a.firedAt.empty());
  EXPECT_EQ(b.firedAt.size(), 1u);
}

TEST_F(TimerWheelTest, RearmMovesTheTimer) {
  Probe p(clock_);
  const Nanos start = clock_.now();
  wheel_.arm(p.timer, start + 5 * kTick);
  wheel_.arm(p.timer, start + 2 * kTick);
  EXPECT_EQ(wheel_.size(), 1u);
  EXPECT_EQ(wheel_.nextDeadline(), start + 2 * kTick);
  wheel_.arm(p.timer, start + 9 * kTick);
  EXPECT_EQ(wheel_.nextDeadline(), start + 9 * kTick);
  clock_.set(start + 8 * kTick);
  EXPECT_EQ(wheel_.expire(), 0u);
  clock_.set(start + 9 * kTick);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(p.firedAt, std::vector<Nanos>({start + 9 * kTick}));
}

TEST_F(TimerWheelTest, DestroyingAnArmedTimerCancelsIt) {
  auto p = std::make_unique<Probe>(clock_);
  wheel_.arm(p->timer, clock_.now() + kTick);
  p.reset();
  EXPECT_EQ(wheel_.size(), 0u);
  clock_.advance(kSecond);
  EXPECT_EQ(wheel_.expire(), 0u);
}

TEST_F(TimerWheelTest, FarDeadlinesBeyondOneRevolution) {
  // 64 slots of 10 ms: one revolution is 640 ms.
  const Nanos start = clock_.now();
  const Nanos offsets[] = {639 * kMillisecond, 640 * kMillisecond, 641 * kMillisecond,
                           5 * kSecond + 3,    60 * kSecond,       3600 * kSecond};
  std::vector<std::unique_ptr<Probe>> probes;
  for (Nanos off : offsets) {
    probes.push_back(std::make_unique<Probe>(clock_));
    wheel_.arm(probes.back()->timer, start + off);
  }
  EXPECT_EQ(wheel_.nextDeadline(), start + offsets[0]);
  // Step through time in uneven steps, sometimes less than a tick, sometimes many revolutions.
  Nanos t = start;
  const Nanos steps[] = {kMillisecond, 3 * kTick, 7 * kMillisecond, 100 * kTick, 1};
  size_t i = 0;
  while (t < start + 3601 * kSecond) {
    const Nanos step = t < start + 70 * kSecond ? steps[i++ % 5] : 17 * kSecond;
    t += step;
    clock_.set(t);
    wheel_.expire();
    for (size_t k = 0; k < probes.size(); ++k) {
      const Nanos deadline = start + offsets[k];
      if (t < deadline) {
        ASSERT_TRUE(probes[k]->firedAt.empty()) << "timer " << k << " early at " << t - start;
      } else {
        ASSERT_EQ(probes[k]->firedAt.size(), 1u) << "timer " << k << " missed at " << t - start;
        // It fired on the first expire() at or after its deadline: if that was this one, the
        // previous expire() was still before the deadline.
        if (probes[k]->firedAt[0] == t) {
          ASSERT_LT(t - step, deadline) << "timer " << k << " fired late";
        }
      }
    }
  }
  EXPECT_EQ(wheel_.size(), 0u);
}

TEST_F(TimerWheelTest, ClockJumpOfManyRevolutionsFiresEverythingDue) {
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < 500; ++i) {
    probes.push_back(std::make_unique<Probe>(clock_));
    wheel_.arm(probes.back()->timer, clock_.now() + i * 7 * kMillisecond);
  }
  std::unique_ptr<Probe> later = std::make_unique<Probe>(clock_);
  wheel_.arm(later->timer, clock_.now() + 100 * kSecond);
  clock_.advance(50 * kSecond);
  EXPECT_EQ(wheel_.expire(), 500u);
  EXPECT_EQ(wheel_.size(), 1u);
  EXPECT_EQ(wheel_.nextDeadline(), later->timer.deadline());
}

// A keep-alive style timer: its callback re-arms it one period later.
struct Periodic {
  static void onFire(Timer* t, void* ctx) {
    auto* p = static_cast<Periodic*>(ctx);
    ++p->fires;
    p->wheel->arm(*t, t->deadline() + p->period);
  }
  TimerWheel* wheel = nullptr;
  Nanos period = 0;
  int fires = 0;
  Timer timer{&Periodic::onFire, this};
};

TEST_F(TimerWheelTest, CallbackRearmsItself) {
  Periodic p;
  p.wheel = &wheel_;
  p.period = 25 * kMillisecond;
  wheel_.arm(p.timer, clock_.now() + p.period);
  for (int i = 0; i < 400; ++i) {
    clock_.advance(kMillisecond);
    wheel_.expire();
  }
  EXPECT_EQ(p.fires, 16);
  EXPECT_TRUE(p.timer.armed());
  EXPECT_EQ(wheel_.size(), 1u);
}

TEST_F(TimerWheelTest, RearmForNowWaitsForTheNextExpire) {
  Periodic p;
  p.wheel = &wheel_;
  p.period = 0;  // re-arms for its own (past) deadline
  wheel_.arm(p.timer, clock_.now());
  EXPECT_EQ(wheel_.expire(), 1u);  // returns instead of looping
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(p.fires, 2);
}

// Callbacks that cancel or re-arm other timers that are due in the same expire().
struct Meddler {
  static void onFire(Timer*, void* ctx) {
    auto* m = static_cast<Meddler*>(ctx);
    ++m->fires;
    if (m->victim != nullptr) m->wheel->cancel(*m->victim);
    if (m->moved != nullptr) m->wheel->arm(*m->moved, m->movedTo);
  }
  TimerWheel* wheel = nullptr;
  Timer* victim = nullptr;
  Timer* moved = nullptr;
  Nanos movedTo = 0;
  int fires = 0;
  Timer timer{&Meddler::onFire, this};
};

TEST_F(TimerWheelTest, CallbackMayCancelOrMoveOtherDueTimers) {
  Meddler first, cancelled, moved;
  const Nanos start = clock_.now();
  first.wheel = &wheel_;
  first.victim = &cancelled.timer;
  first.moved = &moved.timer;
  first.movedTo = start + kSecond;
  wheel_.arm(first.timer, start + kTick);
  wheel_.arm(cancelled.timer, start + 2 * kTick);
  wheel_.arm(moved.timer, start + 2 * kTick);
  clock_.set(start + 3 * kTick);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(first.fires, 1);
  EXPECT_EQ(cancelled.fires, 0);
  EXPECT_EQ(moved.fires, 0);
  EXPECT_EQ(wheel_.size(), 1u);
  EXPECT_EQ(wheel_.nextDeadline(), start + kSecond);
  clock_.set(start + kSecond);
  EXPECT_EQ(wheel_.expire(), 1u);
  EXPECT_EQ(moved.fires, 1);
}

TEST_F(TimerWheelTest, DefaultGeometryHandlesManyTimers) {
  TimerWheel wheel(clock_);
  const Nanos start = clock_.now();
  std::mt19937_64 rng(7);
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < 20000; ++i) {
    probes.push_back(std::make_unique<Probe>(clock_));
    // Spread over 90 s, more than two revolutions of the default wheel (40.96 s).
    wheel.arm(probes.back()->timer, start + static_cast<Nanos>(rng() % (90 * kSecond)));
  }
  EXPECT_EQ(wheel.size(), 20000u);
  size_t fired = 0;
  for (Nanos t = start; t <= start + 91 * kSecond; t += 3 * kMillisecond) {
    clock_.set(t);
    fired += wheel.expire();
  }
  EXPECT_EQ(fired, 20000u);
  for (const auto& p : probes) {
    ASSERT_EQ(p->firedAt.size(), 1u);
    ASSERT_GE(p->firedAt[0], p->timer.deadline());
    ASSERT_LT(p->firedAt[0], p->timer.deadline() + 3 * kMillisecond);
  }
}

TEST_F(TimerWheelTest, NextDeadlineLooksPastFarTimersInNearerSlots) {
  // 64 slots of 10 ms. The far timer hashes to the slot right after the current one; the near
  // timer to a slot further on. The earliest is the near one even though its slot comes later.
  Probe far(clock_), near(clock_), nearest(clock_);
  const Nanos start = clock_.now();
  wheel_.arm(nearest.timer, start + kTick);
  wheel_.arm(far.timer, start + 64 * kTick + kTick + 1);
  wheel_.arm(near.timer, start + 5 * kTick);
  EXPECT_EQ(wheel_.nextDeadline(), start + kTick);
  wheel_.cancel(nearest.timer);
  EXPECT_EQ(wheel_.nextDeadline(), start + 5 * kTick);
  wheel_.cancel(near.timer);
  EXPECT_EQ(wheel_.nextDeadline(), start + 65 * kTick + 1);
}

class TimerWheelModelTest : public TimerWheelTest, public ::testing::WithParamInterface<int> {};

// Random arms, cancels, re-arms and clock steps against a brute-force model: the set of armed
// timers and their deadlines. Checks nextDeadline() exactly, size(), and that each expire()
// fires exactly the due timers. Few timers leave most slots empty; many fill every slot.
TEST_P(TimerWheelModelTest, MatchesBruteForceModelUnderRandomOperations) {
  struct Tracked {
    int id = 0;
    int fires = 0;
    Timer timer{&Tracked::onFire, this};
    static void onFire(Timer*, void* ctx) { ++static_cast<Tracked*>(ctx)->fires; }
  };
  const int kTimers = GetParam();
  std::vector<std::unique_ptr<Tracked>> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(std::make_unique<Tracked>());
    timers.back()->id = i;
  }
  std::map<int, Nanos> model;  // id -> deadline of armed timers
  std::mt19937_64 rng(12345);
  auto pick = [&](uint64_t n) { return static_cast<Nanos>(rng() % n); };

  for (int step = 0; step < 200000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    Tracked& t = *timers[rng() % kTimers];
    if (op < 40) {
      // Mostly near deadlines, some past, some several revolutions out (64 slots = 640 ms).
      Nanos deadline;
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 6) {
        deadline = clock_.now() + pick(200 * kMillisecond);
      } else if (kind < 7) {
        deadline = clock_.now() - pick(50 * kMillisecond);
      } else {
        deadline = clock_.now() + pick(5 * kSecond);
      }
      wheel_.arm(t.timer, deadline);
      model[t.id] = deadline;
    } else if (op < 60) {
      wheel_.cancel(t.timer);
      model.erase(t.id);
    } else if (op < 80) {
      clock_.advance(pick(30 * kMillisecond));
      std::vector<int> before(kTimers);
      for (int i = 0; i < kTimers; ++i) before[i] = timers[i]->fires;
      const size_t fired = wheel_.expire();
      size_t expected = 0;
      for (auto it = model.begin(); it != model.end();) {
        const bool due = it->second <= clock_.now();
        ASSERT_EQ(timers[it->first]->fires - before[it->first], due ? 1 : 0)
            << "timer " << it->first << " deadline " << it->second << " now " << clock_.now();
        if (due) {
          ++expected;
          it = model.erase(it);
        } else {
          ++it;
        }
      }
      ASSERT_EQ(fired, expected);
    }
    // Every step, as the event loop does.
    ASSERT_EQ(wheel_.size(), model.size());
    std::optional<Nanos> want;
    for (const auto& [id, deadline] : model) want = std::min(want.value_or(deadline), deadline);
    ASSERT_EQ(wheel_.nextDeadline(), want) << "step " << step;
    for (const auto& [id, deadline] : model) ASSERT_TRUE(timers[id]->timer.armed());
  }
}

INSTANTIATE_TEST_SUITE_P(TimerCounts, TimerWheelModelTest, ::testing::Values(3, 20, 300));

}  // namespace
}  // namespace derpd
