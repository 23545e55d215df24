// HttpSession: an accepted connection's role (session.h) before any upgrade:
// request heads, routed to responses (kept alive) or to the DERP upgrade,
// where it hands the connection to a ServerSession (server_session.h) with
// what it learnt (the peer's address, the Ideal-Node check). Connections of
// the plain -http-port and --metrics-addr listeners keep it to the end.
// Internal to src/relay.
#pragma once

#include <cstddef>
#include <cstdint>

#include "relay/connection.h"
#include "relay/key_directory.h"
#include "relay/session.h"

namespace derpd::relay {

class ShardServer;

class HttpSession final : public Session {
 public:
  // peer: the accepted socket's address, for the DERP client's PeerPresent.
  HttpSession(ShardServer& s, const PeerInfo& peer) : Session(Role::kHttp), s_(s), peer_(peer) {}

  size_t onHttpBytes(Connection& c, const uint8_t* data, size_t n) override;
  // No frames come before the upgrade (the reader starts with the ServerSession).
  bool startFrame(Connection& c) override;
  void onFrame(Connection& c, PacketBuf* b) override;
  void onTransportReady(Connection&) override {}
  void onConnected(Connection&, int) override {}  // accepted: never connects
  CloseReason deadlineReason(const Connection&) const override {
    return CloseReason::kHeaderTimeout;
  }
  bool meshPeer(const Connection&) const override { return false; }
  void onDrain(Connection& c, const derp::RestartingFrame& restarting) override;
  void onClosing(Connection&) override {}
  void onTornDown(Connection&) override {}
  void onReaped(Connection&) override {}

 private:
  ShardServer& s_;
  PeerInfo peer_;
};

}  // namespace derpd::relay
