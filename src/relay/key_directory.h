// KeyDirectory: one shard's replica of "node key -> where its connections are".
//
// Every shard holds a full replica; registrations, departures and changes of
// the active connection are broadcast through the mailbox and applied by each
// shard to its own replica, so a lookup on the packet path is a local hash
// probe. A key may be connected more than once (duplicate clients): all its
// instances are kept and the active one (the most recent to connect or send)
// is last. Owned by one shard; only its thread may call it.
#pragma once

#include <cstdint>
#include <optional>

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

class KeyDirectory {
 public:
  struct Change {
    std::optional<ConnRef> oldActive;
    std::optional<ConnRef> newActive;
    size_t instances = 0;  // after the change
  };

  // Adds an instance and makes it active.
  Change add(const derp::NodeKey& key, ConnRef ref);
  // Removes an instance (no-op if absent); the most recent remaining becomes active.
  Change remove(const derp::NodeKey& key, ConnRef ref);
  // Makes an existing instance the active one (no-op if absent).
  Change activate(const derp::NodeKey& key, ConnRef ref);

  // The active instance for a key, or nullptr.
  const ConnRef* lookup(const derp::NodeKey& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second.back();
  }
  size_t instances(const derp::NodeKey& key) const;
  size_t size() const { return entries_.size(); }

 private:
  absl::flat_hash_map<derp::NodeKey, absl::InlinedVector<ConnRef, 1>> entries_;
};

}  // namespace derpd::relay
