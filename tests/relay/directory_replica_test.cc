// DirectoryReplica's invariants (directory_replica.h), checked over random
// interleavings: several replicas joined by a fake mailbox that keeps each
// ordered pair's mail in order (as the Mailbox's SPSC rings do) and delivers
// the pairs in random order, between random registrations, departures with
// slot reuse (new generations), activations and fights.
#include "relay/directory_replica.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "relay/test_keys.h"

namespace derpd::relay {
namespace {

using testing::key;

using Ref = std::tuple<uint16_t, uint32_t, uint32_t>;  // shard, idx, gen
Ref refOf(const ConnRef& r) { return {r.shard, r.idx, r.gen}; }

struct World;

struct Shard final : DirectoryReplica::Host {
  Shard(World& w, uint16_t id, size_t shards) : world(w), self(id), replica(id, shards, *this) {}
  void sendMail(size_t to, const MailMessage& m) override;
  void onInstancesChanged(const derp::NodeKey&, const KeyDirectory::Change&) override {}
  void onPresence(const derp::NodeKey& k, const PeerInfo* info) override {
    present[k.bytes[0]] = info != nullptr;
  }
  void onRegistered(uint32_t idx, uint32_t gen) override;

  World& world;
  uint16_t self;
  DirectoryReplica replica;
  std::map<uint8_t, bool> present;  // per key: what watchers were told last
  std::vector<uint32_t> gens = std::vector<uint32_t>(4, 0);  // slot -> generation in use
  std::vector<bool> used = std::vector<bool>(4, false);
};

struct World {
  explicit World(size_t n, uint32_t seed) : rng(seed) {
    for (uint16_t i = 0; i < n; i++) shards.push_back(std::make_unique<Shard>(*this, i, n));
    queues.assign(n, std::vector<std::deque<MailMessage>>(n));
  }

  // Delivers the oldest message of one random non-empty pair. False: none left.
  bool deliverOne() {
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t f = 0; f < queues.size(); f++) {
      for (size_t t = 0; t < queues.size(); t++) {
        if (!queues[f][t].empty()) busy.emplace_back(f, t);
      }
    }
    if (busy.empty()) return false;
    auto [f, t] = busy[rng() % busy.size()];
    MailMessage m = queues[f][t].front();
    queues[f][t].pop_front();
    EXPECT_TRUE(shards[t]->replica.onMail(m)) << "kind " << int{m.kind};
    return true;
  }

  void drain() {
    while (deliverOne()) {
    }
  }

  // One random action of a client, or a delivery.
  void step() {
    Shard& s = *shards[rng() % shards.size()];
    switch (rng() % 6) {
      case 0: {  // a client connects into a free slot (a reused one gets a new generation)
        uint32_t idx = rng() % s.used.size();
        if (s.used[idx]) return;
        s.used[idx] = true;
        uint32_t gen = ++s.gens[idx];
        uint8_t k = static_cast<uint8_t>(1 + rng() % 3);
        PeerInfo info;
        info.port = static_cast<uint16_t>(idx);
        live[{s.self, idx, gen}] = k;
        s.replica.registerLocal(key(k), idx, gen, info, ++clock);
        return;
      }
      case 1: {  // one leaves
        uint32_t idx = rng() % s.used.size();
        if (!s.used[idx]) return;
        s.used[idx] = false;
        Ref r{s.self, idx, s.gens[idx]};
        s.replica.unregisterLocal(key(live[r]), idx, s.gens[idx]);
        live.erase(r);
        return;
      }
      case 2:
      case 3: {  // one sends (activates), or fights
        uint32_t idx = rng() % s.used.size();
        if (!s.used[idx]) return;
        derp::NodeKey k = key(live[{s.self, idx, s.gens[idx]}]);
        if (rng() % 8 == 0) {
          s.replica.disableLocal(k, idx, s.gens[idx], ++clock);
        } else {
          s.replica.activateLocal(k, idx, s.gens[idx], ++clock);
        }
        return;
      }
      default:
        deliverOne();
        return;
    }
  }

  // Invariant 3 at any moment: a replica's own instances are live ones.
  std::string ownInstancesLive() const {
    std::ostringstream out;
    for (const auto& s : shards) {
      s->replica.directory().forEach([&](const derp::NodeKey& k, const KeyDirectory::Instance& i) {
        if (i.ref.shard == s->self && live.find(refOf(i.ref)) == live.end()) {
          out << "shard " << s->self << " holds its departed " << i.ref.idx << "/" << i.ref.gen
              << " for key " << int{k.bytes[0]} << "\n";
        }
      });
    }
    return out.str();
  }

  // Invariants 1 and 3 once the mail is read: every replica holds exactly the
  // live instances, with the same state, and answers lookups alike.
  std::string converged() const {
    std::ostringstream out;
    using Seen = std::map<std::pair<uint8_t, Ref>, std::pair<bool, uint64_t>>;
    std::vector<Seen> seen(shards.size());
    for (size_t n = 0; n < shards.size(); n++) {
      shards[n]->replica.directory().forEach(
          [&](const derp::NodeKey& k, const KeyDirectory::Instance& i) {
            seen[n][{k.bytes[0], refOf(i.ref)}] = {i.disabled, i.stamp};
          });
      std::set<std::pair<uint8_t, Ref>> want, have;
      for (const auto& [r, k] : live) want.insert({k, r});
      for (const auto& [kr, st] : seen[n]) have.insert(kr);
      if (want != have) out << "shard " << n << " holds other instances than the live ones\n";
      if (n > 0 && seen[n] != seen[0]) out << "shard " << n << " differs from shard 0\n";
      for (uint8_t k = 1; k <= 3; k++) {
        const ConnRef* a = shards[0]->replica.directory().lookup(key(k));
        const ConnRef* b = shards[n]->replica.directory().lookup(key(k));
        if ((a == nullptr) != (b == nullptr) || (a != nullptr && !(*a == *b))) {
          out << "shard " << n << " looks key " << int{k} << " up elsewhere than shard 0\n";
        }
      }
    }
    if (!out.str().empty()) {
      for (size_t n = 0; n < shards.size(); n++) {
        for (const auto& [kr, st] : seen[n]) {
          out << "  shard " << n << ": key " << int{kr.first} << " instance "
              << std::get<0>(kr.second) << "/" << std::get<1>(kr.second) << "/"
              << std::get<2>(kr.second) << (st.first ? " disabled" : "") << " stamp " << st.second
              << "\n";
        }
      }
    }
    return out.str();
  }

  std::minstd_rand rng;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<std::vector<std::deque<MailMessage>>> queues;  // [from][to]
  std::map<Ref, uint8_t> live;                               // live instance -> key
  std::set<Ref> acked;                                       // onRegistered seen
  std::vector<std::string> ackErrors;
  uint64_t clock = 0;
};

void Shard::sendMail(size_t to, const MailMessage& m) {
  EXPECT_NE(to, self);
  world.queues[self][to].push_back(m);
}

// Invariant 2: heard once, for a live client, when every other replica has it.
void Shard::onRegistered(uint32_t idx, uint32_t gen) {
  Ref r{self, idx, gen};
  auto it = world.live.find(r);
  if (it == world.live.end()) {
    world.ackErrors.push_back("acknowledged a client that left");
    return;
  }
  if (!world.acked.insert(r).second) world.ackErrors.push_back("acknowledged twice");
  for (const auto& other : world.shards) {
    if (other->replica.directory().find(key(it->second), ConnRef{self, idx, gen}) == nullptr) {
      world.ackErrors.push_back("acknowledged before shard " + std::to_string(other->self) +
                                " applied it");
    }
  }
}

TEST(DirectoryReplicaTest, RandomInterleavingsConvergeWithEveryInvariantHeld) {
  for (uint32_t seed = 1; seed <= 300; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    World w(2 + seed % 3, seed);
    for (int i = 0; i < 400; i++) {
      w.step();
      std::string bad = w.ownInstancesLive();
      ASSERT_EQ(bad, "") << "after step " << i;
    }
    w.drain();
    ASSERT_EQ(w.converged(), "");
    for (const std::string& e : w.ackErrors) ADD_FAILURE() << e;
    ASSERT_TRUE(w.ackErrors.empty());
    for (const auto& [r, k] : w.live) {
      EXPECT_TRUE(w.acked.count(r)) << "a live client never heard it was registered";
    }
    for (const auto& s : w.shards) {
      EXPECT_EQ(s->replica.awaitingAcks(), 0u);
      // Watchers are told of every arrival and of a key's last departure:
      // the last thing they heard says whether the key is here.
      for (uint8_t k = 1; k <= 3; k++) {
        bool here = s->replica.directory().instances(key(k)) > 0;
        bool told = s->present.count(k) && s->present.at(k);
        EXPECT_EQ(told, here) << "key " << int{k} << " on shard " << s->self;
      }
    }
  }
}

TEST(DirectoryReplicaTest, OneShardRegistersWithoutWaiting) {
  World w(1, 1);
  Shard& s = *w.shards[0];
  EXPECT_FALSE(s.replica.waitsForAcks());
  s.replica.registerLocal(key(1), 0, 1, {}, 1);
  EXPECT_EQ(s.replica.directory().instances(key(1)), 1u);
  EXPECT_EQ(s.replica.awaitingAcks(), 0u);
  EXPECT_FALSE(w.deliverOne());
}

TEST(DirectoryReplicaTest, ASlotReusedBeforeTheMailArrivesIsNotConfusedWithItsPredecessor) {
  World w(2, 1);
  Shard& a = *w.shards[0];
  a.replica.registerLocal(key(1), 0, 1, {}, 1);
  a.replica.unregisterLocal(key(1), 0, 1);
  a.replica.registerLocal(key(2), 0, 2, {}, 2);  // slot 0 again, next generation
  w.live[{0, 0, 2}] = 2;
  w.drain();
  EXPECT_EQ(w.converged(), "");
  const ConnRef* r = w.shards[1]->replica.directory().lookup(key(2));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(*r, (ConnRef{0, 0, 2}));
  EXPECT_EQ(w.shards[1]->replica.directory().lookup(key(1)), nullptr);
  EXPECT_EQ(w.acked, (std::set<Ref>{{0, 0, 2}}));  // the first one left unacknowledged
  EXPECT_TRUE(w.ackErrors.empty());
}

// Connections of one key that fight are disabled on every shard (no instance
// active, the key still present) until an enabled one registers or one is
// left alone, which its owner then enables again everywhere.
TEST(DirectoryReplicaTest, FightersAreDisabledEverywhereUntilOneIsLeft) {
  World w(3, 1);
  const derp::NodeKey k = key(5);
  w.shards[0]->replica.registerLocal(k, 1, 1, {}, 10);  // a
  w.shards[1]->replica.registerLocal(k, 1, 1, {}, 20);  // b
  w.live[{0, 1, 1}] = 5;
  w.live[{1, 1, 1}] = 5;
  w.drain();
  w.shards[0]->replica.disableLocal(k, 1, 1, 30);  // a lost its place and sent again
  w.drain();
  ASSERT_EQ(w.converged(), "");
  for (const auto& s : w.shards) {
    EXPECT_EQ(s->replica.directory().lookup(k), nullptr) << "shard " << s->self;
    EXPECT_EQ(s->replica.directory().instances(k), 2u);
  }
  w.shards[2]->replica.registerLocal(k, 1, 1, {}, 50);  // a newcomer, after the fight
  w.live[{2, 1, 1}] = 5;
  w.drain();
  ASSERT_EQ(w.converged(), "");
  for (const auto& s : w.shards) {
    ASSERT_NE(s->replica.directory().lookup(k), nullptr);
    EXPECT_EQ(*s->replica.directory().lookup(k), (ConnRef{2, 1, 1}));
  }
  w.shards[2]->replica.unregisterLocal(k, 1, 1);
  w.live.erase({2, 1, 1});
  w.shards[1]->replica.unregisterLocal(k, 1, 1);
  w.live.erase({1, 1, 1});
  w.drain();
  ASSERT_EQ(w.converged(), "");
  for (const auto& s : w.shards) {
    const KeyDirectory::Instance* a = s->replica.directory().find(k, ConnRef{0, 1, 1});
    ASSERT_NE(a, nullptr);
    EXPECT_FALSE(a->disabled) << "shard " << s->self;
  }
}

// A fight racing a registration: shard 2's connection registered before the
// fight (at 25) reaches shard 0 only after the fight's mail from shard 1 has.
// It is a fighter everywhere; one registered after the fight (at 50) is not.
TEST(DirectoryReplicaTest, AFightRacingARegistrationIsJudgedAlikeEverywhere) {
  for (uint64_t at : {uint64_t{25}, uint64_t{50}}) {
    SCOPED_TRACE("registered at " + std::to_string(at));
    World w(3, 1);
    const derp::NodeKey k = key(6);
    w.shards[0]->replica.registerLocal(k, 1, 1, {}, 10);
    w.shards[1]->replica.registerLocal(k, 1, 1, {}, 20);
    w.live[{0, 1, 1}] = 6;
    w.live[{1, 1, 1}] = 6;
    w.drain();
    w.shards[2]->replica.registerLocal(k, 2, 1, {}, at);
    w.live[{2, 2, 1}] = 6;
    w.shards[1]->replica.disableLocal(k, 1, 1, 30);
    // Shard 0 reads the fight first, then the registration; the rest as it comes.
    while (!w.queues[1][0].empty()) {
      MailMessage m = w.queues[1][0].front();
      w.queues[1][0].pop_front();
      w.shards[0]->replica.onMail(m);
    }
    w.drain();
    ASSERT_EQ(w.converged(), "");
    for (const auto& s : w.shards) {
      const KeyDirectory::Instance* c = s->replica.directory().find(k, ConnRef{2, 2, 1});
      ASSERT_NE(c, nullptr);
      EXPECT_EQ(c->disabled, at < 30) << "shard " << s->self;
      EXPECT_TRUE(s->replica.directory().find(k, ConnRef{0, 1, 1})->disabled);
    }
  }
}

// The checker has teeth: mail of one pair read out of order (which the
// Mailbox never does) leaves a replica holding a departed client.
TEST(DirectoryReplicaTest, TheCheckerSeesAReplicaThatMailOutOfOrderLeftBehind) {
  World w(2, 1);
  Shard& a = *w.shards[0];
  a.replica.registerLocal(key(1), 0, 1, {}, 1);
  a.replica.unregisterLocal(key(1), 0, 1);
  auto& q = w.queues[0][1];
  ASSERT_EQ(q.size(), 3u);  // Register, Activate (its time), Unregister
  std::swap(q[0], q[2]);
  w.drain();
  EXPECT_NE(w.converged(), "");
}

}  // namespace
}  // namespace derpd::relay
