// LinkSession: an outgoing mesh link's connection (session.h), from its
// connect to its close; link_session.cc. Internal to src/relay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "relay/session.h"
#include "relay/shard_server.h"

namespace derpd::relay {

class LinkSession final : public Session {
 public:
  LinkSession(ShardServer& s, uint16_t slot) : Session(Role::kLink), s_(s), slot_(slot) {}

  size_t onHttpBytes(Connection& c, const uint8_t* data, size_t n) override;
  bool startFrame(Connection& c) override;
  void onFrame(Connection& c, PacketBuf* b) override;
  void onTransportReady(Connection& c) override { queueRequest(c); }
  void onConnected(Connection& c, int res) override;
  CloseReason deadlineReason(const Connection& c) const override;
  bool meshPeer(const Connection&) const override { return true; }
  void onDrain(Connection&, const derp::RestartingFrame&) override {}  // kept to the end
  void onClosing(Connection& c) override;
  void onTornDown(Connection& c) override;
  void onReaped(Connection&) override { s_.liveLinks_--; }

 private:
  ShardServer::MeshLink& link() const;
  void queueRequest(Connection& c);
  void onLinkFrame(Connection& c, std::span<const uint8_t> body);

  ShardServer& s_;
  uint16_t slot_;  // its link in the shard's links_
};

}  // namespace derpd::relay
