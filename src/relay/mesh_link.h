// ShardServer::MeshLink: one outgoing link to a mesh peer, owned by one shard.
#pragma once

#include <optional>

#include "absl/container/flat_hash_set.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "relay/mesh_state.h"
#include "relay/shard_server.h"
#include "runtime/timer_wheel.h"

namespace derpd::relay {

struct ShardServer::MeshLink {
  MeshLink(ShardServer* s, uint16_t slotIndex, MeshTarget t, MeshLinkStats* st)
      : server(s), slot(slotIndex), target(std::move(t)), stats(st),
        retry(&ShardServer::onLinkRetry, this) {}

  ShardServer* server;
  uint16_t slot;
  MeshTarget target;
  MeshLinkStats* stats;
  uint32_t gen = 0;  // this connection's generation: tags the keys it reports
  // The link's Connection while one exists (connecting, handshaking or up).
  bool connected = false;
  uint32_t connIdx = 0;
  uint32_t connGen = 0;
  bool up = false;        // handshaken (ServerInfo opened), WatchConns sent
  bool watching = false;  // the peer answered WatchConns: it took our mesh key
  bool self = false;     // the target is this node: never retried
  bool removed = false;  // the target is gone: freed once its connection is
  std::optional<derp::BoxKey> boxKey;  // with the peer's server key, after ServerKey
  Nanos backoff = 0;
  Nanos retryIn = 0;  // > 0: the peer said when to come back (Restarting)
  Timer retry;
  absl::flat_hash_set<derp::NodeKey> present;  // keys the peer reports
};

}  // namespace derpd::relay
