// SnapshotStore<T>: the current immutable snapshot of something a control
// thread rebuilds and the shards read (the /bootstrap-dns answers, the ACME
// challenge answers). load() and publish() may be called from any thread; a
// loaded snapshot stays valid for as long as the caller holds it. A mutex,
// not an atomic shared_ptr: readers take it once per HTTP request, never per
// packet.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace derpd {

template <typename T>
class SnapshotStore {
 public:
  std::shared_ptr<const T> load() const {
    std::lock_guard lock(mu_);
    return current_;
  }
  void publish(std::shared_ptr<const T> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> current_;
};

}  // namespace derpd
