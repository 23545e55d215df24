#include "relay/key_directory.h"

#include <algorithm>

namespace derpd::relay {
namespace {

template <typename V>
auto findRef(V& v, const ConnRef& ref) {
  return std::find_if(v.begin(), v.end(), [&](const auto& i) { return i.ref == ref; });
}

}  // namespace

KeyDirectory::Change KeyDirectory::add(const derp::NodeKey& key, ConnRef ref,
                                       const PeerInfo& info) {
  assertNotIterating();
  auto& v = entries_[key];
  Change c;
  if (!v.empty()) c.oldActive = v.back().ref;
  v.push_back(Instance{ref, info});
  c.newActive = ref;
  c.instances = v.size();
  return c;
}

KeyDirectory::Change KeyDirectory::remove(const derp::NodeKey& key, ConnRef ref) {
  assertNotIterating();
  Change c;
  auto it = entries_.find(key);
  if (it == entries_.end()) return c;
  auto& v = it->second;
  c.oldActive = v.back().ref;
  auto pos = findRef(v, ref);
  if (pos == v.end()) {
    c.newActive = c.oldActive;
    c.instances = v.size();
    return c;
  }
  v.erase(pos);
  c.instances = v.size();
  if (v.empty()) {
    entries_.erase(it);
  } else {
    c.newActive = v.back().ref;
  }
  return c;
}

KeyDirectory::Change KeyDirectory::activate(const derp::NodeKey& key, ConnRef ref) {
  assertNotIterating();
  Change c;
  auto it = entries_.find(key);
  if (it == entries_.end()) return c;
  auto& v = it->second;
  c.oldActive = v.back().ref;
  c.instances = v.size();
  auto pos = findRef(v, ref);
  if (pos != v.end()) {
    std::rotate(pos, pos + 1, v.end());
  }
  c.newActive = v.back().ref;
  return c;
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
