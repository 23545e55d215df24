#include "relay/shard_server.h"

#include "relay/mesh_link.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"

namespace derpd::relay {
namespace {

constexpr uint16_t kStunBufferGroup = 2;
// The packet pool keeps this much of wholly free slabs per size class; beyond
// it, free slabs go back to the system a second after the pool grew past
// three times it (a flood's 64 KiB bodies do not pin memory that 2 KiB
// packets may need later).
constexpr size_t kPoolKeepBytes = 2 << 20;
constexpr Nanos kPoolTrimDelay = kSecond;

// A timer wheel whose revolution holds the keep-alive, the timer every client
// has armed: a timer further out than a revolution is kept correctly but makes
// the wheel's search for the earliest deadline walk every timer when no nearer
// one exists, and a connect storm of N clients then cost O(N^2) (11% of the
// server's CPU at 10k clients with 4096 slots = 41 s).
size_t timerSlots(const RelayConfig& config) {
  const Nanos longest = config.keepAliveInterval + config.keepAliveJitter;
  size_t slots = 4096;
  while (static_cast<Nanos>(slots) * ShardLoop::kTimerTick <= longest + kSecond) slots *= 2;
  return slots;
}

}  // namespace

void ConnOp::complete(int res, uint32_t flags) {
  if (kind == kRecv) {
    server->onRecv(*conn, res, flags);
  } else {
    server->onSendDone(*conn, res);
  }
}

Connection::Connection(ShardServer* s, uint32_t index, uint32_t generation, int socket,
                       const RelayConfig& config, Timer::Callback deadlineCb,
                       Timer::Callback keepAliveCb, Timer::Callback writeCb,
                       Timer::Callback resumeCb)
    : idx(index),
      gen(generation),
      fd(socket),
      disco(config.queuePackets, config.queueBytes),
      packets(config.queuePackets, config.queueBytes),
      deadline(deadlineCb, this),
      keepAlive(keepAliveCb, this),
      writeTimeout(writeCb, this),
      resume(resumeCb, this),
      recvOp(s, this, ConnOp::kRecv),
      sendOp(s, this, ConnOp::kSend) {}

ShardServer::ShardServer(uint16_t id, SharedState& shared, UniqueFd listener, UniqueFd stunSocket,
                         UniqueFd port80Listener, UniqueFd metricsListener, ShardCounters& counters,
                         const Clock& clock)
    : id_(id),
      shared_(shared),
      listener_(std::move(listener)),
      port80Listener_(std::move(port80Listener)),
      metricsListener_(std::move(metricsListener)),
      counters_(counters),
      clock_(clock),
      loop_(id, shared, clock, timerSlots(shared.config)),
      pool_(id, shared.config.poolBytes),
      outbox_(*shared.mailbox, id),
      replica_(id, shared.mailbox->shards(), *this),
      tlsEngine_(id, pool_, counters, *this),
      acceptRetry_([](Timer*, void* ctx) { static_cast<ShardServer*>(ctx)->armAccept(); }, this),
      drainDeadline_(&ShardServer::onDrainDeadline, this),
      poolTrim_(
          [](Timer*, void* ctx) {
            auto* s = static_cast<ShardServer*>(ctx);
            s->pool_.trim(kPoolKeepBytes);
          },
          this),
      rng_(0x9e3779b9u + id) {
  for (size_t k = 0; k < acceptOps_.size(); k++) {
    for (AcceptOp& op : acceptOps_[k]) {
      op.server = this;
      op.kind = static_cast<ListenerKind>(k);
    }
  }
  dirty_.reserve(4096);
  if (stunSocket.valid()) stun_ = std::make_unique<StunServer>(std::move(stunSocket), counters);
}

ShardServer::~ShardServer() {
  for (auto& c : conns_) {
    if (c) {
      loop_.timers().cancel(c->deadline);
      loop_.timers().cancel(c->keepAlive);
      loop_.timers().cancel(c->writeTimeout);
      loop_.timers().cancel(c->resume);
    }
  }
  loop_.timers().cancel(acceptRetry_);
  loop_.timers().cancel(drainDeadline_);
  loop_.timers().cancel(poolTrim_);
}

absl::Status ShardServer::init() {
  if (absl::Status st = loop_.init(); !st.ok()) return st;
  if (stun_) {
    if (absl::Status st = stun_->init(loop_.ring(), kStunBufferGroup); !st.ok()) return st;
  }
  return absl::OkStatus();
}

void ShardServer::wake() { ShardLoop::signal(shared_, id_); }

void ShardServer::run() {
  armAccept();
  if (stun_) stun_->start();
  if (stopRequested_.load(std::memory_order_acquire)) beginShutdown();
  if (drainRequested_.load(std::memory_order_acquire)) beginDrain();
  loop_.run(*this);
  shared_.exited[id_].store(true, std::memory_order_release);
  shared_.exitedShards.fetch_add(1, std::memory_order_acq_rel);
  // A shard waiting for room in its ring to us must learn that there will be
  // none (it then discards what it holds for us).
  for (size_t from = 0; from < shared_.mailbox->shards(); from++) {
    if (from != id_ && shared_.mailbox->takeWaitingSender(from, id_)) {
      loop_.wakeShard(from, false);
    }
  }
  // Let the kernel finish what we submitted (wake-ups to other shards).
  loop_.ring().runOnce(0);
}

// The eventfd: a stop, a drain, new mesh targets to take up, or verdicts.
bool ShardServer::onSignal() {
  if (verdictsPosted_.load(std::memory_order_acquire)) takeVerdicts();
  if (stopRequested_.load(std::memory_order_acquire) && !stopping_) {
    beginShutdown();
  } else if (drainRequested_.load(std::memory_order_acquire) && !draining_) {
    beginDrain();
  }
  if (shared_.mesh != nullptr && !stopping_ && !draining_ &&
      shared_.mesh->targets->generation() != meshTargetsSeen_) {
    reconcileMesh();
  }
  return !stopping_;
}

bool ShardServer::mailWaiting() {
  for (size_t from = 0; from < shared_.mailbox->shards(); from++) {
    if (from == id_) continue;
    const Mailbox::Ring* ring = shared_.mailbox->incoming(from, id_);
    if (ring != nullptr && !ring->empty()) return true;
  }
  return false;
}

void ShardServer::beforeWait() {
  // Mail held back for a full ring needs no retry here: its destination
  // wakes this shard once it has read (Mailbox::raiseWaiting), or on exit.
  if (outbox_.hasBacklog() || shared_.exitedShards.load(std::memory_order_acquire) != exitedSeen_) {
    discardMailToExited();
  }
}

bool ShardServer::endOfTurn() {
  flushDirty();
  if (stun_) stun_->flush();
  reapClosed();
  retiredSessions_.clear();
  publishLoopStats();
  outbox_.flush([this](size_t to) { loop_.wakeShard(to); });
  // A draining node keeps its mesh links while any shard has clients to
  // serve (a client on one shard may need a link owned by another).
  if (draining_ && !stopping_ && liveLinks_ > 0 && liveConnections_ == liveLinks_ &&
      !nodeHasClients()) {
    beginShutdown();
  }
  return !((stopping_ || draining_) && liveConnections_ == 0);
}

void ShardServer::setState(Connection& c, Connection::State s) {
  counters_.connectionsByState[static_cast<size_t>(c.state)].sub();
  counters_.connectionsByState[static_cast<size_t>(s)].add();
  c.state = s;
}

void ShardServer::publishLoopStats() {
  if (!poolTrim_.armed() && pool_.bytesAllocated() > 3 * kPoolKeepBytes) {
    loop_.timers().arm(poolTrim_, clock_.now() + kPoolTrimDelay);
  }
  counters_.cqOverflow.set(loop_.ring().cqOverflow());
  counters_.mailboxBacklog.set(outbox_.heldTotal());
  counters_.wakesSent.set(loop_.wakesSent());
  counters_.wakesSkipped.set(loop_.wakesSkipped());
  counters_.poolBytes.set(pool_.bytesAllocated());
  counters_.poolBuffersInUse.set(pool_.inUse());
  for (size_t k = 0; k < PacketPool::kClassCount; k++) {
    counters_.poolFailures[k].set(pool_.failures()[k]);
  }
}

void ShardServer::armRecv(Connection& c) {
  io_uring_sqe* s = loop_.ring().sqe();
  if (c.singleRecv) {
    io_uring_prep_recv(s, c.fd, nullptr, 0, 0);
  } else {
    io_uring_prep_recv_multishot(s, c.fd, nullptr, 0, 0);
  }
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = loop_.buffers().groupId();
  IoRing::setCompletion(s, &c.recvOp);
  c.recvArmed = true;
}

void ShardServer::onRecv(Connection& c, int res, uint32_t flags) {
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) c.recvArmed = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    bool done = false;
    uint8_t* data = loop_.buffers().consume(bid, static_cast<size_t>(res), flags, done);
    if (c.state != Connection::State::kClosing) {
      c.transport->onReceived(c, data, static_cast<size_t>(res));
    }
    if (done) loop_.buffers().recycle(bid);
  } else if (c.state != Connection::State::kClosing) {
    if (res == 0) {
      close(c, CloseReason::kEof);
    } else if (res == -ENOBUFS) {
      counters_.recvNoBuffers.add();
    } else if (res < 0 && res != -ECANCELED) {  // cancelled: pauseInput's
      close(c, CloseReason::kReadError);
    }
  }
  if (c.state == Connection::State::kClosing) return;
  // Out of provided buffers (or the kernel ended the multishot): ask again.
  if (!c.recvArmed && !c.inputPaused) armRecv(c);
}

// Accepted sockets inherit their TCP options from the listener (Server::start).
Connection& ShardServer::newConnection(int fd, ListenerKind kind,
                                       std::unique_ptr<Session> session) {
  counters_.openSockets.add();
  uint32_t idx;
  if (!freeSlots_.empty()) {
    idx = freeSlots_.back();
    freeSlots_.pop_back();
  } else {
    idx = static_cast<uint32_t>(conns_.size());
    conns_.emplace_back();
    gens_.push_back(0);
  }
  uint32_t gen = ++gens_[idx];
  conns_[idx] = std::make_unique<Connection>(this, idx, gen, fd, shared_.config,
                                             &ShardServer::onDeadline, &ShardServer::onKeepAlive,
                                             &ShardServer::onWriteTimeout, &ShardServer::onResume);
  Connection& c = *conns_[idx];
  c.listener = kind;
  c.transport = &plain_;  // TLS, if any, is set up by the caller
  c.session = std::move(session);
  c.acceptedAt = clock_.now();
  counters_.connectionsByState[static_cast<size_t>(c.state)].add();
  liveConnections_++;
  publishClientSockets();
  return c;
}

void ShardServer::replaceSession(Connection& c, std::unique_ptr<Session> next) {
  retiredSessions_.push_back(std::move(c.session));
  c.session = std::move(next);
}

// Closing is two-phase. close() ends the connection's own life at once (no
// more reads, writes, timers or frames queued to it) and may be called from
// anywhere, including callbacks of loops over the directory or the watchers.
// What changes state shared with other connections (the directory and its
// broadcast, the watchers list, a mesh link's peers) waits for finishCloses()
// at the end of the loop turn, where nothing is being iterated.
void ShardServer::close(Connection& c, CloseReason reason) {
  if (c.state == Connection::State::kClosing) return;
  counters_.close(reason);
  chargePreAuth(c, 0);
  c.session->onClosing(c);
  setState(c, Connection::State::kClosing);
  c.closeReason = reason;
  loop_.timers().cancel(c.deadline);
  loop_.timers().cancel(c.keepAlive);
  loop_.timers().cancel(c.writeTimeout);
  loop_.timers().cancel(c.resume);
  if (c.reader.body) {
    releaseBuf(c.reader.body);
    c.reader.body = nullptr;
  }
  releaseChain(c.control.takeAll());
  dropChain(c.disco.takeAll(), DropReason::kGoneDisconnected);
  dropChain(c.packets.takeAll(), DropReason::kGoneDisconnected);
  c.http.release();
  // Wakes the pending receive (EOF) and any blocked send (EPIPE); the cancel
  // covers ops still queued inside io_uring.
  ::shutdown(c.fd, SHUT_RDWR);
  if (c.recvArmed || c.sending) {
    io_uring_sqe* s = loop_.ring().sqe();
    io_uring_prep_cancel_fd(s, c.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(s, 0);
  }
  closing_.push_back(c.idx);
}

// The second phase of close(). A teardown may close others (a watcher that
// overflows on the PeerGone it is sent): they join closing_ and are torn down
// in the same pass.
void ShardServer::finishCloses() {
  for (size_t i = 0; i < closing_.size(); i++) {
    Connection& c = *conns_[closing_[i]];
    if (c.tornDown) continue;
    c.tornDown = true;
    c.session->onTornDown(c);
  }
}

// Frees closed connections whose operations have all completed. Runs at the
// end of a loop turn, so no completion handler ever sees a freed connection.
void ShardServer::reapClosed() {
  finishCloses();
  size_t keep = 0;
  for (size_t i = 0; i < closing_.size(); i++) {
    uint32_t idx = closing_[i];
    Connection& c = *conns_[idx];
    if (c.recvArmed || c.sending) {
      closing_[keep++] = idx;
      continue;
    }
    dropChain(c.writing, DropReason::kGoneDisconnected);  // plain frames not (wholly) written
    c.writing = nullptr;
    ::close(c.fd);
    counters_.openSockets.sub();
    c.session->onReaped(c);
    if (c.holdsSocketBudget) shared_.acceptedSockets.fetch_sub(1, std::memory_order_relaxed);
    if (c.holdsIpSlot) shared_.perIp.release(c.peerIp);
    counters_.connectionsByState[static_cast<size_t>(c.state)].sub();
    gens_[idx]++;  // any ConnRef to the old connection is now stale
    conns_[idx].reset();
    freeSlots_.push_back(idx);
    liveConnections_--;
    publishClientSockets();
  }
  closing_.resize(keep);
}

void ShardServer::releaseBuf(PacketBuf* b) {
  if (b->ownerShard == id_) {
    pool_.release(b);
    return;
  }
  outbox_.send(b->ownerShard, mail(kMailReturnBuf, 0, 0, b));
}

void ShardServer::releaseChain(PacketBuf* b) {
  while (b != nullptr) {
    PacketBuf* next = b->next;
    releaseBuf(b);
    b = next;
  }
}

void ShardServer::dropChain(PacketBuf* b, DropReason reason) {
  while (b != nullptr) {
    PacketBuf* next = b->next;
    if (b->flags & kBufIsPacket) counters_.drop(reason, b->flags & kBufIsDisco);
    releaseBuf(b);
    b = next;
  }
}

void ShardServer::armKeepAlive(Connection& c) {
  Nanos jitter = shared_.config.keepAliveJitter > 0
                     ? static_cast<Nanos>(rng_() % static_cast<uint64_t>(
                                                       shared_.config.keepAliveJitter))
                     : 0;
  loop_.timers().arm(c.keepAlive, clock_.now() + shared_.config.keepAliveInterval + jitter);
}

void ShardServer::onDeadline(Timer*, void* ctx) {
  Connection& c = *static_cast<Connection*>(ctx);
  ShardServer* s = c.recvOp.server;
  s->close(c, c.session->deadlineReason(c));
}

void ShardServer::onKeepAlive(Timer*, void* ctx) {
  Connection& c = *static_cast<Connection*>(ctx);
  ShardServer* s = c.recvOp.server;
  s->queueFrame(c, derp::KeepAliveFrame{});
  s->armKeepAlive(c);
}

void ShardServer::onWriteTimeout(Timer*, void* ctx) {
  Connection& c = *static_cast<Connection*>(ctx);
  c.recvOp.server->close(c, CloseReason::kWriteTimeout);
}

}  // namespace derpd::relay
