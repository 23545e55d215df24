// What the shards share about the regional mesh: the mesh key, the TLS client
// context for links to peers that serve TLS, the current targets, and the
// per-link counters /metrics and /debug/mesh show.
#pragma once

#include <atomic>
#include <deque>
#include <mutex>
#include <string>

#include <openssl/base.h>

#include "derp/key.h"
#include "relay/counters.h"
#include "relay/mesh_targets.h"

namespace derpd::relay {

// One outgoing link's counters. Written by the shard that owns the link,
// read by whoever renders them.
struct MeshLinkStats {
  std::string label;  // the -mesh-with item (and address); fixed once made
  std::atomic<bool> live{true};  // false once the target is gone
  Counter up;        // gauge: 1 while the link is handshaken and watching
  Counter connects;  // handshakes completed
  Counter keys;      // gauge: keys the peer reports present
  Counter forwardedPackets;
  Counter forwardedBytes;
  Counter dropsQueueHead;  // the link's queue was full: the oldest went
  Counter dropsLinkDown;   // the link was down when a packet for it came
  // What the peer forwarded to this node over its own link to us. Written by
  // the shard of each of its incoming connections (there may be two for a
  // moment): atomic adds.
  std::atomic<uint64_t> forwardedInPackets{0};
  std::atomic<uint64_t> forwardedInBytes{0};
  derp::NodeKey peerKey;  // the peer's server key once a link learned it (guarded by the registry)
  bool haveKey = false;
  // Set on a "nodekey:" entry once a link learns that key: the incoming
  // connection counting here moves to the link's entry (see forIncoming).
  std::atomic<MeshLinkStats*> movedTo{nullptr};
};

// Every link's counters since start, by label. Entries are never freed (a
// target that comes back gets its old entry, so its counters keep counting);
// pointers stay valid for the life of the registry.
class MeshStatsRegistry {
 public:
  // Any thread. The live entry for `label`, made if needed.
  MeshLinkStats* acquire(const std::string& label);
  // Any thread: our link learned that the peer behind `s` has this key.
  void learnedKey(MeshLinkStats* s, const derp::NodeKey& key);
  // Any thread: the entry for an incoming mesh connection from `key`: the
  // link's whose peer has that key, else one labelled "nodekey:<hex>" (a peer
  // that is not in -mesh-with, or whose key our link has not learned yet; when
  // the link learns it, that entry's counts move to the link's and its
  // movedTo says where to count from then on).
  MeshLinkStats* forIncoming(const derp::NodeKey& key);
  // Prometheus text of the live entries.
  void render(std::string& out) const;
  // A plain-text table for /debug/mesh.
  std::string debugText() const;

 private:
  mutable std::mutex mu_;
  std::deque<MeshLinkStats> links_;  // guarded by mu_ (the vector, not the counters)
};

struct MeshState {
  std::string meshKey;  // 64 lowercase hex: sent in ClientInfo, compared to incoming ones
  const MeshTargetStore* targets = nullptr;
  // For links to peers that serve TLS (nullptr when none is configured).
  SSL_CTX* clientTls = nullptr;
  bool verifyPeers = true;  // false with --mesh-insecure
  MeshStatsRegistry stats;
};

}  // namespace derpd::relay
