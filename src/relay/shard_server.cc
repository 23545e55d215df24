#include "relay/shard_server.h"

#include "relay/mesh_link.h"

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "derp/frame.h"

namespace derpd::relay {
namespace {

constexpr uint16_t kBufferGroup = 1;
constexpr uint16_t kStunBufferGroup = 2;
// Receive memory per shard: 8 MiB. Consumed incrementally where the kernel
// can (a receive takes only its bytes), 16 KiB buffers, so a bulk reader gets
// a TLS record per receive; else smaller buffers, so that more receives can
// wait at once before the ring runs dry (ENOBUFS, counted).
constexpr uint16_t kRecvBuffers = 512;
constexpr uint32_t kRecvBufferSize = 16 * 1024;
constexpr uint16_t kRecvBuffersWhole = 2048;
constexpr uint32_t kRecvBufferSizeWhole = 4 * 1024;
// Completions handled per loop turn before queued writes are submitted: small
// enough that a receive flood cannot starve the writers, large enough to batch.
constexpr size_t kCompletionsPerTurn = 32;
// The packet pool keeps this much of wholly free slabs per size class; beyond
// it, free slabs go back to the system a second after the pool grew past
// three times it (a flood's 64 KiB bodies do not pin memory that 2 KiB
// packets may need later).
constexpr size_t kPoolKeepBytes = 2 << 20;
constexpr Nanos kPoolTrimDelay = kSecond;
constexpr Nanos kTimerTick = 10 * kMillisecond;

// A timer wheel whose revolution holds the keep-alive, the timer every client
// has armed: a timer further out than a revolution is kept correctly but makes
// the wheel's search for the earliest deadline walk every timer when no nearer
// one exists, and a connect storm of N clients then cost O(N^2) (11% of the
// server's CPU at 10k clients with 4096 slots = 41 s).
size_t timerSlots(const RelayConfig& config) {
  const Nanos longest = config.keepAliveInterval + config.keepAliveJitter;
  size_t slots = 4096;
  while (static_cast<Nanos>(slots) * kTimerTick <= longest + kSecond) slots *= 2;
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
                       Timer::Callback keepAliveCb, Timer::Callback writeCb)
    : idx(index),
      gen(generation),
      fd(socket),
      disco(config.queuePackets, config.queueBytes),
      packets(config.queuePackets, config.queueBytes),
      deadline(deadlineCb, this),
      keepAlive(keepAliveCb, this),
      writeTimeout(writeCb, this),
      recvOp(s, this, ConnOp::kRecv),
      sendOp(s, this, ConnOp::kSend) {}

void ShardServer::WakeOp::complete(int res, uint32_t) {
  if (res < 0 && res != -EINTR && res != -EAGAIN) return;
  if (server->stopRequested_.load(std::memory_order_acquire) && !server->stopping_) {
    server->beginShutdown();
  } else if (server->drainRequested_.load(std::memory_order_acquire) && !server->draining_) {
    server->beginDrain();
  }
  if (server->shared_.mesh != nullptr && !server->stopping_ && !server->draining_ &&
      server->shared_.mesh->targets->generation() != server->meshTargetsSeen_) {
    server->reconcileMesh();
  }
  if (!server->stopping_) server->armWakeRead();
}

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
      pool_(id, shared.config.poolBytes),
      timers_(clock, kTimerTick, timerSlots(shared.config)),
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
      timers_.cancel(c->deadline);
      timers_.cancel(c->keepAlive);
      timers_.cancel(c->writeTimeout);
    }
  }
  timers_.cancel(acceptRetry_);
  timers_.cancel(drainDeadline_);
  timers_.cancel(poolTrim_);
}

absl::Status ShardServer::init() {
  auto ring = IoRing::create(4096);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  auto buffers =
      BufferRing::create(ring_->raw(), kBufferGroup, kRecvBuffers, kRecvBufferSize, true);
  if (buffers.ok() && !(*buffers)->incremental()) {
    buffers->reset();  // unregisters the group
    buffers = BufferRing::create(ring_->raw(), kBufferGroup, kRecvBuffersWhole,
                                 kRecvBufferSizeWhole);
  }
  if (!buffers.ok()) return buffers.status();
  buffers_ = std::move(*buffers);
  if (id_ == 0) {
    logInfo("receive buffers: %s, %u x %u KiB per shard",
            buffers_->incremental() ? "incremental" : "whole (no incremental consumption here)",
            buffers_->count(), buffers_->bufferSize() / 1024);
  }
  if (stun_) {
    if (absl::Status st = stun_->init(*ring_, kStunBufferGroup); !st.ok()) return st;
  }
  shared_.ringFds[id_].store(ring_->fd(), std::memory_order_release);
  return absl::OkStatus();
}

// Writes to shard `to`'s eventfd, which its ring reads: a stop, a drain, or
// (without MSG_RING) mail.
void ShardServer::signalShard(size_t to) const {
  uint64_t one = 1;
  ssize_t unused = ::write(shared_.wakeFds[to], &one, sizeof(one));
  (void)unused;
}

void ShardServer::wake() { signalShard(id_); }

// Wakes shard `to` from its wait: mail for it, or room for ours.
void ShardServer::wakeShard(size_t to) {
  if (ring_->features().msgRing) {
    ring_->wake(shared_.ringFds[to].load(std::memory_order_acquire));
  } else {
    signalShard(to);
  }
}

void ShardServer::armWakeRead() {
  io_uring_sqe* s = ring_->sqe();
  io_uring_prep_read(s, shared_.wakeFds[id_], &wakeOp_.value, sizeof(wakeOp_.value), 0);
  IoRing::setCompletion(s, &wakeOp_);
}

void ShardServer::run() {
  logDebug("shard %d: ring %s", id_, ring_->features().describe());
  armWakeRead();
  armAccept();
  if (stun_) stun_->start();
  if (stopRequested_.load(std::memory_order_acquire)) beginShutdown();
  if (drainRequested_.load(std::memory_order_acquire)) beginDrain();
  for (;;) {
    Nanos timeout = -1;
    if (auto next = timers_.nextDeadline()) {
      timeout = std::max<Nanos>(0, *next - clock_.now());
    }
    // Mail held back for a full ring needs no retry here: its destination
    // wakes this shard once it has read (Mailbox::raiseWaiting), or on exit.
    if (outbox_.hasBacklog() ||
        shared_.exitedShards.load(std::memory_order_acquire) != exitedSeen_) {
      discardMailToExited();
    }
    if (!dirty_.empty() || ring_->ready() > 0) timeout = 0;
    if (stopping_ && (timeout < 0 || timeout > 50 * kMillisecond)) timeout = 50 * kMillisecond;
    ring_->runOnce(timeout, kCompletionsPerTurn);
    drainMailbox();
    timers_.expire();
    buffers_->commit();
    flushDirty();
    if (stun_) stun_->flush();
    reapClosed();
    publishLoopStats();
    outbox_.flush([this](size_t to) { wakeShard(to); });
    // A draining node keeps its mesh links while any shard has clients to
    // serve (a client on one shard may need a link owned by another).
    if (draining_ && !stopping_ && liveLinks_ > 0 && liveConnections_ == liveLinks_ &&
        !nodeHasClients()) {
      beginShutdown();
    }
    if ((stopping_ || draining_) && liveConnections_ == 0) break;
  }
  shared_.exited[id_].store(true, std::memory_order_release);
  shared_.exitedShards.fetch_add(1, std::memory_order_acq_rel);
  // A shard waiting for room in its ring to us must learn that there will be
  // none (it then discards what it holds for us).
  for (size_t from = 0; from < shared_.mailbox->shards(); from++) {
    if (from != id_ && shared_.mailbox->takeWaitingSender(from, id_)) wakeShard(from);
  }
  // Let the kernel finish what we submitted (wake-ups to other shards).
  ring_->runOnce(0);
}

void ShardServer::setState(Connection& c, Connection::State s) {
  counters_.connectionsByState[static_cast<size_t>(c.state)].sub();
  counters_.connectionsByState[static_cast<size_t>(s)].add();
  c.state = s;
}

void ShardServer::publishLoopStats() {
  if (!poolTrim_.armed() && pool_.bytesAllocated() > 3 * kPoolKeepBytes) {
    timers_.arm(poolTrim_, clock_.now() + kPoolTrimDelay);
  }
  counters_.cqOverflow.set(ring_->cqOverflow());
  counters_.mailboxBacklog.set(outbox_.heldTotal());
  counters_.poolBytes.set(pool_.bytesAllocated());
  counters_.poolBuffersInUse.set(pool_.inUse());
  for (size_t k = 0; k < PacketPool::kClassCount; k++) {
    counters_.poolFailures[k].set(pool_.failures()[k]);
  }
}

void ShardServer::armRecv(Connection& c) {
  io_uring_sqe* s = ring_->sqe();
  io_uring_prep_recv_multishot(s, c.fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = buffers_->groupId();
  IoRing::setCompletion(s, &c.recvOp);
  c.recvArmed = true;
}

void ShardServer::onRecv(Connection& c, int res, uint32_t flags) {
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) c.recvArmed = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    bool done = false;
    uint8_t* data = buffers_->consume(bid, static_cast<size_t>(res), flags, done);
    if (c.state != Connection::State::kClosing) {
      c.transport->onReceived(c, data, static_cast<size_t>(res));
    }
    if (done) buffers_->recycle(bid);
  } else if (c.state != Connection::State::kClosing) {
    if (res == 0) {
      close(c, CloseReason::kEof);
    } else if (res == -ENOBUFS) {
      counters_.recvNoBuffers.add();
    } else if (res < 0) {
      close(c, CloseReason::kReadError);
    }
  }
  if (c.state == Connection::State::kClosing) return;
  // Out of provided buffers (or the kernel ended the multishot): ask again.
  if (!c.recvArmed) armRecv(c);
}

// Accepted sockets inherit their TCP options from the listener (Server::start).
Connection& ShardServer::newConnection(int fd, ListenerKind kind) {
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
                                             &ShardServer::onWriteTimeout);
  Connection& c = *conns_[idx];
  c.listener = kind;
  c.transport = &plain_;  // TLS, if any, is set up by the caller
  c.acceptedAt = clock_.now();
  counters_.connectionsByState[static_cast<size_t>(c.state)].add();
  liveConnections_++;
  publishClientSockets();
  return c;
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
  if (c.meshLink >= 0) countLinkDrops(c);
  setState(c, Connection::State::kClosing);
  c.closeReason = reason;
  timers_.cancel(c.deadline);
  timers_.cancel(c.keepAlive);
  timers_.cancel(c.writeTimeout);
  if (c.body) {
    releaseBuf(c.body);
    c.body = nullptr;
  }
  releaseChain(c.control.takeAll());
  dropChain(c.disco.takeAll(), DropReason::kGoneDisconnected);
  dropChain(c.packets.takeAll(), DropReason::kGoneDisconnected);
  c.http.release();
  // Wakes the pending receive (EOF) and any blocked send (EPIPE); the cancel
  // covers ops still queued inside io_uring.
  ::shutdown(c.fd, SHUT_RDWR);
  if (c.recvArmed || c.sending) {
    io_uring_sqe* s = ring_->sqe();
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
    if (c.meshLink >= 0) onLinkClosed(c, c.closeReason);
    if (c.watcher) dropWatcher(c);
    if (c.registered) unregister(c);
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
    if (c.meshLink >= 0) {
      liveLinks_--;
    } else if (c.listener != ListenerKind::kMetrics) {
      shared_.acceptedSockets.fetch_sub(1, std::memory_order_relaxed);
    }
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
  timers_.arm(c.keepAlive, clock_.now() + shared_.config.keepAliveInterval + jitter);
}

void ShardServer::onDeadline(Timer*, void* ctx) {
  Connection& c = *static_cast<Connection*>(ctx);
  ShardServer* s = c.recvOp.server;
  CloseReason reason = CloseReason::kHandshakeTimeout;
  if (c.state == Connection::State::kConnecting) {
    reason = CloseReason::kMeshConnect;
  } else if (c.state == Connection::State::kDerp) {
    reason = CloseReason::kReadTimeout;  // a mesh link heard nothing for too long
  } else if (c.state == Connection::State::kHttp && c.meshLink < 0) {
    reason = CloseReason::kHeaderTimeout;
  }
  s->close(c, reason);
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
