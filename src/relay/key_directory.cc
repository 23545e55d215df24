#include "relay/key_directory.h"

#include <algorithm>

namespace derpd::relay {

KeyDirectory::Change KeyDirectory::add(const derp::NodeKey& key, ConnRef ref) {
  auto& v = entries_[key];
  Change c;
  if (!v.empty()) c.oldActive = v.back();
  v.push_back(ref);
  c.newActive = ref;
  c.instances = v.size();
  return c;
}

KeyDirectory::Change KeyDirectory::remove(const derp::NodeKey& key, ConnRef ref) {
  Change c;
  auto it = entries_.find(key);
  if (it == entries_.end()) return c;
  auto& v = it->second;
  c.oldActive = v.back();
  auto pos = std::find(v.begin(), v.end(), ref);
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
    c.newActive = v.back();
  }
  return c;
}

KeyDirectory::Change KeyDirectory::activate(const derp::NodeKey& key, ConnRef ref) {
  Change c;
  auto it = entries_.find(key);
  if (it == entries_.end()) return c;
  auto& v = it->second;
  c.oldActive = v.back();
  c.instances = v.size();
  auto pos = std::find(v.begin(), v.end(), ref);
  if (pos != v.end()) {
    std::rotate(pos, pos + 1, v.end());
  }
  c.newActive = v.back();
  return c;
}

size_t KeyDirectory::instances(const derp::NodeKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.size();
}

}  // namespace derpd::relay
