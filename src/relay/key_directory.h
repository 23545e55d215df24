// KeyDirectory: one shard's replica of "node key -> where its connections are".
//
// Every shard holds a full replica; registrations, departures and changes of
// the active connection are broadcast through the mailbox and applied by each
// shard to its own replica, so a lookup on the packet path is a local hash
// probe. A key may be connected more than once (duplicate clients): all its
// instances are kept and the active one (the most recent to connect or send)
// is last. Recency is a stamp taken by the shard that owns the instance
// (registration or send time) and carried in the mail, so every replica picks
// the same active instance whatever order the mail arrived in. An instance is
// disabled (a fighter: its key's connections took turns sending) by its owner
// alone, who mails the decision like a stamp; a disabled instance is never
// active while it has company. Each instance carries what a mesh watcher is
// told about it. DirectoryReplica keeps replicas the same.
//
// Beside the local clients, the replica holds the keys present on the other
// nodes of the region (mesh peers), each tagged with the link that reported it:
// a key may be on several peers at once (a client moving between nodes), the
// most recent report is used. Owned by one shard; only its thread may call it.
#pragma once

#include <array>
#include <cassert>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "derp/key.h"

namespace derpd::relay {

struct ConnRef {
  uint16_t shard = 0;
  uint32_t idx = 0;
  uint32_t gen = 0;
  friend bool operator==(const ConnRef&, const ConnRef&) = default;
};

// What PeerPresent says about a connection: its address and flags.
struct PeerInfo {
  std::array<uint8_t, 16> ip{};  // IPv4-mapped for v4
  uint16_t port = 0;
  uint8_t flags = 0;
};

// One mesh link (on shard `shard`, slot `link`) during one of its connections
// (`gen`): a later connection of the same link has another gen.
struct MeshRef {
  uint16_t shard = 0;
  uint16_t link = 0;
  uint32_t gen = 0;
  friend bool operator==(const MeshRef&, const MeshRef&) = default;
};

class KeyDirectory {
 public:
  struct Change {
    std::optional<ConnRef> oldActive;
    std::optional<ConnRef> newActive;
    size_t instances = 0;  // after the change
  };
  struct Instance {
    ConnRef ref;
    PeerInfo info;
    uint64_t stamp = 0;       // when it registered or last became active by sending
    uint64_t registered = 0;  // when it registered
    bool disabled = false;    // a fighter (its owner's say): never active while it has company
  };

  // Adds an instance registered at `stamp`; the most recent one is active.
  Change add(const derp::NodeKey& key, ConnRef ref, const PeerInfo& info = {},
             uint64_t stamp = 0);
  // Removes an instance (no-op if absent); the most recent remaining becomes
  // active.
  Change remove(const derp::NodeKey& key, ConnRef ref);
  // An instance sent at `stamp` (or, with `registration`, registered then):
  // the most recent is active. Older news than the instance has is ignored.
  Change activate(const derp::NodeKey& key, ConnRef ref, uint64_t stamp,
                  bool registration = false);
  // Its owner disabled (or enabled again) an instance. A disabled one is not
  // active while the key has another instance.
  Change setDisabled(const derp::NodeKey& key, ConnRef ref, bool disabled);

  // The active instance for a key, or nullptr (none, or all it has disabled).
  const ConnRef* lookup(const derp::NodeKey& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    const Instances& v = it->second;
    if (v.back().disabled && v.size() > 1) return nullptr;
    return &v.back().ref;
  }
  // One instance of a key, or nullptr.
  const Instance* find(const derp::NodeKey& key, ConnRef ref) const;
  size_t instances(const derp::NodeKey& key) const;
  size_t size() const { return entries_.size(); }
  // Calls fn(key, instance) for every instance of every key. fn must not
  // change the directory (asserted): the entry it is given would be freed.
  template <typename Fn>
  void forEach(Fn&& fn) const {
    Iterating guard(iterating_);
    for (const auto& [key, v] : entries_) {
      for (const Instance& i : v) fn(key, i);
    }
  }

  // Calls fn(instance) for every instance of `key`; fn must not change the directory.
  template <typename Fn>
  void forEachInstance(const derp::NodeKey& key, Fn&& fn) const {
    Iterating guard(iterating_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    for (const Instance& i : it->second) fn(i);
  }

  // Mesh: `key` is present on the peer behind `ref`. Returns true if the key
  // was on no peer before.
  bool addRemote(const derp::NodeKey& key, MeshRef ref);
  // The peer behind `ref` reports `key` gone. Returns true if the key is now
  // on no peer.
  bool removeRemote(const derp::NodeKey& key, MeshRef ref);
  // The link `ref` broke: every key it reported goes. Returns the keys now on
  // no peer.
  std::vector<derp::NodeKey> removeRemoteLink(MeshRef ref);
  // The peer to forward to for a key that is not local, or nullptr.
  const MeshRef* lookupRemote(const derp::NodeKey& key) const {
    auto it = remote_.find(key);
    return it == remote_.end() ? nullptr : &it->second.back();
  }
  size_t remoteSize() const { return remote_.size(); }

 private:
  // Counts the forEach calls running, so that a change made inside one is caught.
  struct Iterating {
    explicit Iterating(int& n) : n_(n) { n_++; }
    ~Iterating() { n_--; }
    Iterating(const Iterating&) = delete;
    Iterating& operator=(const Iterating&) = delete;
    int& n_;
  };
  void assertNotIterating() const { assert(iterating_ == 0 && "KeyDirectory changed inside forEach"); }
  using Instances = absl::InlinedVector<Instance, 1>;
  // Orders v so that the active instance, if any, is last; fills c from it.
  static void settle(Instances& v, Change& c);
  template <typename Fn>
  Change update(const derp::NodeKey& key, Fn&& fn);

  mutable int iterating_ = 0;
  absl::flat_hash_map<derp::NodeKey, Instances> entries_;
  absl::flat_hash_map<derp::NodeKey, absl::InlinedVector<MeshRef, 1>> remote_;
};

}  // namespace derpd::relay
