// Mesh targets: the DERP servers of this region that this node keeps a mesh
// link to (-mesh-with), turned from configured entries into addresses off the
// shards, and published for the shards to read.
//
// The resolver thread (MeshResolver) owns the resolving; the shards only load
// the published set from a MeshTargetStore, and poll its generation to learn
// that it changed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "config/config.h"
#include "net/socket_address.h"

namespace derpd::relay {

// One -mesh-with item, parsed. Defined in config/config.h, whose flag parser
// checks every item; re-exported here, where the entries are used.
using derpd::MeshEntry;
using derpd::parseMeshEntry;

// Reads the PSK file: 64 hex characters after trimming whitespace; returns
// them lowercase. Errors name the file and say what is wrong (unreadable,
// wrong length, not hex); they never quote the file's contents.
absl::StatusOr<std::string> loadMeshKey(const std::string& path);
// The same check for a key given as text; `source` names it in errors.
absl::StatusOr<std::string> parseMeshKey(absl::string_view text, absl::string_view source);

// A peer to connect to: one resolved address of an entry.
struct MeshTarget {
  std::string label;  // entry text, plus "/<ip>" when the name resolved to several addresses
  std::string host;   // for the Host header and TLS SNI / name verification (the entry's host)
  net::SocketAddress address;  // with the port filled in
  bool tls = false;

  // Stable identity: "<https|http>://<host>@<address>", e.g.
  // "https://derp1.example.com@[fd00::1]:443".
  std::string id() const;
  // Same label and id (SocketAddress has no ==).
  bool operator==(const MeshTarget& other) const;
};

// Resolves entries to targets, in entry order (a name's addresses sorted, so
// that the same answers give the same list).
//
// - An entry whose host equals selfHostname (case-insensitive) is skipped, as
//   derper does; selfHostname is -hostname as given, and any name of its
//   comma-separated list counts.
// - tls = entry.tls, else defaultTls (this node's own listener is TLS).
// - port = entry.port, else 443 (TLS) / 80 (plain) when the scheme was
//   explicit, else defaultPort (this node's listening port: the nodes of a
//   region usually share one configuration).
// - IP literals need no DNS. A name is resolved with getaddrinfo (AF_UNSPEC,
//   SOCK_STREAM), every distinct address becoming its own target (a Kubernetes
//   headless Service). A name that fails to resolve keeps the targets it had in
//   `previous` (the last result) and logs a warning.
// - A target that another entry already produced (same id()) is left out.
//
// Blocks on DNS: never call it on a shard.
std::vector<MeshTarget> resolveMeshTargets(const std::vector<MeshEntry>& entries,
                                           std::string_view selfHostname, bool defaultTls,
                                           uint16_t defaultPort,
                                           const std::vector<MeshTarget>& previous);

// The current target set, published by the resolver thread, read by the
// shards. Every method may be called from any thread; a loaded set stays
// valid for as long as the caller holds it.
class MeshTargetStore {
 public:
  MeshTargetStore();

  // Replaces the set and bumps the generation, only if the set changed (order
  // does not count). Returns whether it did.
  bool publish(std::vector<MeshTarget> targets);
  // Never null; empty before the first publish.
  std::shared_ptr<const std::vector<MeshTarget>> load() const;
  // 0 before the first change. Cheap enough to poll on every loop turn; a
  // load() after seeing a new generation returns that set or a newer one.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<MeshTarget>> current_;  // guarded by mu_
  std::atomic<uint64_t> generation_{0};
};

// Resolves the entries on a thread of its own (never on a shard) at once and
// then every `interval`, publishing into store and calling onChange() (from
// its thread) after a publish that changed the set. Created, started and
// destroyed by the main thread; store must outlive it.
class MeshResolver {
 public:
  MeshResolver(std::vector<MeshEntry> entries, std::string selfHostname, bool defaultTls,
               uint16_t defaultPort, MeshTargetStore& store, Nanos interval,
               std::function<void()> onChange);
  ~MeshResolver();  // stops and joins (a lookup in progress finishes first)

  MeshResolver(const MeshResolver&) = delete;
  MeshResolver& operator=(const MeshResolver&) = delete;

  // The first resolution, synchronously on the caller's thread, before
  // start(): the shards then start with the targets in the store. It does not
  // call onChange (nothing listens yet). start() then waits one interval
  // before resolving again.
  void resolveNow();
  void start();

 private:
  void run();
  void resolveOnce(bool notify);

  const std::vector<MeshEntry> entries_;
  const std::string selfHostname_;
  const bool defaultTls_;
  const uint16_t defaultPort_;
  MeshTargetStore& store_;
  const Nanos interval_;
  const std::function<void()> onChange_;
  std::vector<MeshTarget> last_;  // the caller's thread before start(), then the resolver's
  bool resolved_ = false;         // likewise
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace derpd::relay
