// ClientApps: how many DERP handshakes each client application made, by the
// AppName its ClientInfo carries (newer Tailscale clients send one), for
// /debug/apps. Bounded: the first kMaxNames distinct names are kept, later
// ones are counted as "(other)"; a name that is empty, longer than 64 bytes
// or not printable ASCII is counted as "(none)" or "(invalid)". Never a metric
// label: a client chooses the text. Shared by every shard: one short lock per
// handshake, none per packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace derpd::relay {

class ClientApps {
 public:
  static constexpr size_t kMaxNames = 32;
  static constexpr size_t kMaxNameLen = 64;

  void count(std::string_view appName);
  // (name, handshakes), most handshakes first.
  std::vector<std::pair<std::string, uint64_t>> snapshot() const;
  // /debug/apps: one "count name" line each.
  std::string debugText() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, uint64_t>> counts_;  // guarded by mu_
};

}  // namespace derpd::relay
