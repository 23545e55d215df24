// ShardServer's stop and graceful drain: requested from the main thread
// (SIGINT, SIGTERM), carried out on the shard's thread.
#include <sys/socket.h>
#include <unistd.h>

#include "derp/frame.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

// Restarting's hint: how long a client waits before reconnecting.
constexpr uint32_t kRestartReconnectInMs = 1500;

}  // namespace

void ShardServer::requestDrain(Nanos timeout) {
  drainTimeout_.store(timeout, std::memory_order_relaxed);
  drainRequested_.store(true, std::memory_order_release);
  ShardLoop::signal(shared_, id_);
}

void ShardServer::requestStop() {
  stopRequested_.store(true, std::memory_order_release);
  ShardLoop::signal(shared_, id_);
}

void ShardServer::beginShutdown() {
  if (stopping_) return;
  stopping_ = true;
  if (stun_) stun_->stop();
  // Shutting the listeners down ends their accepts; connections are closed below.
  ::shutdown(listener_.get(), SHUT_RDWR);
  if (port80Listener_.valid()) ::shutdown(port80Listener_.get(), SHUT_RDWR);
  if (metricsListener_.valid()) ::shutdown(metricsListener_.get(), SHUT_RDWR);
  for (auto& c : conns_) {
    if (c && c->state != Connection::State::kClosing) close(*c, CloseReason::kShutdown);
  }
}

// Graceful restart: no new connections; every DERP client is told to come back
// shortly (to this node's successor or another node of the region) and keeps
// being served until it leaves; anything else is closed now.
void ShardServer::beginDrain() {
  if (draining_ || stopping_) return;
  draining_ = true;
  if (stun_) stun_->stop();
  ::shutdown(listener_.get(), SHUT_RDWR);
  if (port80Listener_.valid()) ::shutdown(port80Listener_.get(), SHUT_RDWR);
  if (metricsListener_.valid()) ::shutdown(metricsListener_.get(), SHUT_RDWR);
  const Nanos timeout = drainTimeout_.load(std::memory_order_relaxed);
  derp::RestartingFrame restarting{kRestartReconnectInMs,
                                   static_cast<uint32_t>(timeout / kMillisecond) + 10000};
  for (auto& c : conns_) {
    if (!c || c->state == Connection::State::kClosing) continue;
    c->session->onDrain(*c, restarting);
  }
  loop_.timers().arm(drainDeadline_, clock_.now() + timeout);
}

// Publishes this shard's count of connections that are not mesh links; a
// draining node's last client leaving wakes every shard to close its links.
void ShardServer::publishClientSockets() {
  const size_t clients = liveConnections_ - liveLinks_;
  const size_t before = shared_.clientSockets[id_].exchange(clients, std::memory_order_acq_rel);
  if (draining_ && before > 0 && clients == 0) {
    for (size_t to = 0; to < shared_.wakeFds.size(); to++) {
      if (to == id_) continue;
      ShardLoop::signal(shared_, to);
    }
  }
}

bool ShardServer::nodeHasClients() const {
  for (const auto& n : shared_.clientSockets) {
    if (n.load(std::memory_order_acquire) > 0) return true;
  }
  return false;
}

void ShardServer::onDrainDeadline(Timer*, void* ctx) {
  ShardServer& s = *static_cast<ShardServer*>(ctx);
  s.counters_.drainTimedOut.add(s.liveConnections_ - s.liveLinks_);
  s.beginShutdown();
}

// Once a turn: a few relaxed stores to this shard's own counters.
}  // namespace derpd::relay
