// ServerSession: an accepted connection's role (session.h) and its state
// once it has upgraded to DERP (before, it was an HttpSession's): a DERP
// client's server side: the handshake, the checks on each frame header, the frames
// themselves, the registration and its acknowledgements (server_session.cc).
// What it shares with the rest of the shard (the packet path, the key
// directory, the watchers) stays with ShardServer, which it drives.
// Internal to src/relay.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/container/flat_hash_set.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "relay/client_check.h"
#include "relay/connection.h"
#include "relay/key_directory.h"
#include "relay/rate_limit.h"
#include "relay/session.h"

namespace derpd::relay {

class ShardServer;
struct MeshLinkStats;

// An accepted connection's DERP client: who it is, its registration, its
// duplicates, its mesh-peer and watcher roles, and whom it sent to.
struct ClientState {
  derp::NodeKey key;
  PeerInfo peer;  // its address and PeerPresent flags
  bool registered = false;
  bool dupHealthSent = false;
  bool mayBeDuplicate = false;
  bool dupSent = false;    // sent while its key was duplicated (see noteDuplicateSend)
  bool preferred = false;  // the client's last NotePreferred said true
  bool notIdeal = false;   // its upgrade carried an Ideal-Node that is not this node
  bool canMesh = false;    // its ClientInfo carried this node's mesh key
  bool watcher = false;    // it sent WatchConns
  bool haveLastDst = false;
  // Its ClientInfo is open and a ClientChecker is deciding whether it may
  // stay (client_check.h); boxKey waits to seal its ServerInfo.
  bool verifying = false;
  derp::BoxKey boxKey;
  // -rate-config: what it may send, and the setting's generation it follows.
  TokenBucket bucket;
  uint32_t rateGen = 0;
  MeshLinkStats* meshStats = nullptr;  // a mesh peer's: what it forwards is counted there
  derp::NodeKey lastDst;
  derp::NodeKey lastFwdSrc;                   // a mesh peer's last forwarded (source, lastDst)
  absl::flat_hash_set<derp::NodeKey> sentTo;  // keys this client sent to
  double peerGoneTokens = 3;
  Nanos peerGoneRefill = 0;
};

class ServerSession final : public Session {
 public:
  // peer: the connection's address; notIdeal: its upgrade named another
  // node as the client's ideal one (HttpSession learnt both).
  ServerSession(ShardServer& s, const PeerInfo& peer, bool notIdeal)
      : Session(Role::kServer), s_(s) {
    client.peer = peer;
    client.notIdeal = notIdeal;
  }

  ClientState client;

  // Never called: the HTTP phase was the HttpSession's.
  size_t onHttpBytes(Connection& c, const uint8_t* data, size_t n) override;
  bool startFrame(Connection& c) override;
  void onFrame(Connection& c, PacketBuf* b) override;
  void onTransportReady(Connection&) override {}
  void onConnected(Connection&, int) override {}  // accepted: never connects
  CloseReason deadlineReason(const Connection& c) const override;
  bool meshPeer(const Connection&) const override { return client.canMesh; }
  void onDrain(Connection& c, const derp::RestartingFrame& restarting) override;
  void onClosing(Connection&) override {}
  void onTornDown(Connection& c) override;
  void onReaped(Connection&) override {}

  // Every other shard has applied the registration: ServerInfo may go.
  void onRegistered(Connection& c);
  // The client was being verified and may stay: it is registered now.
  void admit(Connection& c);

 private:
  void onClientInfo(Connection& c, std::span<const uint8_t> body);
  void queueServerInfo(Connection& c, const derp::BoxKey& boxKey);
  void onOtherFrame(Connection& c, uint8_t type, std::span<const uint8_t> body);

  ShardServer& s_;
};

// The client state of a connection known to be an accepted one (the key
// directory refers only to those).
inline ServerSession& serverSession(Connection& c) {
  assert(c.session->role == Session::Role::kServer);
  return static_cast<ServerSession&>(*c.session);
}
inline ClientState& clientOf(Connection& c) { return serverSession(c).client; }

}  // namespace derpd::relay
