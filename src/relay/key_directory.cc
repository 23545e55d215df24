#include "relay/key_directory.h"

#include <algorithm>
#include <tuple>

namespace derpd::relay {
namespace {

template <typename V>
auto findRef(V& v, const ConnRef& ref) {
  return std::find_if(v.begin(), v.end(), [&](const auto& i) { return i.ref == ref; });
}

// As lookup(): a lone instance is active even if disabled.
std::optional<ConnRef> activeOf(const absl::InlinedVector<KeyDirectory::Instance, 1>& v) {
  if (v.empty() || (v.back().disabled && v.size() > 1)) return std::nullopt;
  return v.back().ref;
}

}  // namespace

KeyDirectory::Change KeyDirectory::add(const derp::NodeKey& key, ConnRef ref,
                                       const PeerInfo& info, uint64_t stamp) {
  assertNotIterating();
  auto& v = entries_[key];
  Change c;
  c.oldActive = activeOf(v);
  v.push_back(Instance{ref, info, stamp, stamp, false});
  settle(v, c);
  return c;
}

// Changes the instances of a key that is present (else nothing): fills the
// Change, drops an emptied entry, keeps the order.
template <typename Fn>
KeyDirectory::Change KeyDirectory::update(const derp::NodeKey& key, Fn&& fn) {
  assertNotIterating();
  Change c;
  auto it = entries_.find(key);
  if (it == entries_.end()) return c;
  Instances& v = it->second;
  c.oldActive = activeOf(v);
  fn(v);
  if (v.empty()) {
    entries_.erase(it);
    return c;
  }
  settle(v, c);
  return c;
}

KeyDirectory::Change KeyDirectory::remove(const derp::NodeKey& key, ConnRef ref) {
  return update(key, [&](Instances& v) {
    auto pos = findRef(v, ref);
    if (pos != v.end()) v.erase(pos);
  });
}

KeyDirectory::Change KeyDirectory::activate(const derp::NodeKey& key, ConnRef ref,
                                            uint64_t stamp, bool registration) {
  return update(key, [&](Instances& v) {
    auto pos = findRef(v, ref);
    if (pos == v.end()) return;
    if (registration) pos->registered = stamp;
    pos->stamp = std::max(pos->stamp, stamp);
  });
}

KeyDirectory::Change KeyDirectory::setDisabled(const derp::NodeKey& key, ConnRef ref,
                                               bool disabled) {
  return update(key, [&](Instances& v) {
    auto pos = findRef(v, ref);
    if (pos != v.end()) pos->disabled = disabled;
  });
}

// Disabled ones first, then by stamp, then by where they live: a total order,
// so replicas holding the same instances agree on the last (the active one,
// when it is enabled).
void KeyDirectory::settle(Instances& v, Change& c) {
  auto rank = [](const Instance& i) {
    return std::tuple(!i.disabled, i.stamp, i.ref.shard, i.ref.idx, i.ref.gen);
  };
  std::sort(v.begin(), v.end(),
            [&](const Instance& a, const Instance& b) { return rank(a) < rank(b); });
  c.newActive = activeOf(v);
  c.instances = v.size();
}

const KeyDirectory::Instance* KeyDirectory::find(const derp::NodeKey& key, ConnRef ref) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  auto pos = findRef(it->second, ref);
  return pos == it->second.end() ? nullptr : &*pos;
}

size_t KeyDirectory::instances(const derp::NodeKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.size();
}

bool KeyDirectory::addRemote(const derp::NodeKey& key, MeshRef ref) {
  assertNotIterating();
  auto& v = remote_[key];
  bool added = v.empty();
  auto pos = std::find(v.begin(), v.end(), ref);
  if (pos != v.end()) v.erase(pos);
  v.push_back(ref);
  return added;
}

bool KeyDirectory::removeRemote(const derp::NodeKey& key, MeshRef ref) {
  assertNotIterating();
  auto it = remote_.find(key);
  if (it == remote_.end()) return false;
  auto& v = it->second;
  auto pos = std::find(v.begin(), v.end(), ref);
  if (pos == v.end()) return false;
  v.erase(pos);
  if (!v.empty()) return false;
  remote_.erase(it);
  return true;
}

std::vector<derp::NodeKey> KeyDirectory::removeRemoteLink(MeshRef ref) {
  assertNotIterating();
  std::vector<derp::NodeKey> gone;
  for (auto it = remote_.begin(); it != remote_.end();) {
    auto& v = it->second;
    auto pos = std::find(v.begin(), v.end(), ref);
    if (pos != v.end()) v.erase(pos);
    if (v.empty()) {
      gone.push_back(it->first);
      remote_.erase(it++);
    } else {
      ++it;
    }
  }
  return gone;
}

}  // namespace derpd::relay
