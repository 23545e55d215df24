// ShardServer's side of client verification (client_check.h): a client whose
// ClientInfo is open waits, reading nothing more, for the checker's verdict;
// an admitted one is registered and served, a refused one closed before its
// ServerInfo, counted by reason and logged (a few lines a second).
#include <utility>

#include "base/log.h"
#include "net/socket_address.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {
namespace {

constexpr uint32_t kRejectLogLinesPerSecond = 5;

}  // namespace

void ShardServer::postVerdict(const CheckRequest& request, Verdict verdict) {
  {
    std::lock_guard lock(verdictMu_);
    verdicts_.emplace_back(request, std::move(verdict));
  }
  verdictsPosted_.store(true, std::memory_order_release);
  ShardLoop::signal(shared_, id_);
}

void ShardServer::takeVerdicts() {
  verdictsPosted_.store(false, std::memory_order_release);
  {
    std::lock_guard lock(verdictMu_);
    verdictsTaken_.swap(verdicts_);
  }
  for (const auto& [request, verdict] : verdictsTaken_) {
    Connection* c = find(request.idx, request.gen);
    // Gone meanwhile (closed, timed out), or no longer the same client.
    if (c == nullptr || c->state != Connection::State::kDerpHandshake ||
        c->session->role != Session::Role::kServer || !clientOf(*c).verifying) {
      continue;
    }
    onVerdict(*c, verdict);
  }
  verdictsTaken_.clear();
}

void ShardServer::onVerdict(Connection& c, const Verdict& v) {
  ClientState& client = clientOf(c);
  if (v.admit) {
    counters_.clientsVerified.add();
    serverSession(c).admit(c);
    resumeInput(c);
    return;
  }
  counters_.reject(v.reason);
  const Nanos now = clock_.now();
  if (now - rejectLogWindow_ >= kSecond) {
    if (rejectsUnlogged_ > 0) {
      logWarn("shard %d: %llu more clients rejected in the last second (not logged)", id_,
              static_cast<unsigned long long>(rejectsUnlogged_));
    }
    rejectLogWindow_ = now;
    rejectLogLines_ = 0;
    rejectsUnlogged_ = 0;
  }
  if (rejectLogLines_ < kRejectLogLinesPerSecond) {
    rejectLogLines_++;
    logWarn("client %s from %s rejected (%s): %s", client.key.toString(),
            net::formatIp(client.peer.ip), rejectReasonName(v.reason), v.detail);
  } else {
    rejectsUnlogged_++;
  }
  close(c, CloseReason::kRejected);
}

}  // namespace derpd::relay
