// ShardServer: everything one shard does — accept, HTTP, DERP handshake,
// relay, timers — on its own io_uring ring and thread.
//
// Created on the main thread; init() and run() are called on the shard's own
// thread (the ring is SINGLE_ISSUER). requestStop() may be called from any
// thread. Other shards reach it only through the Mailbox.
#pragma once

#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "base/clock.h"
#include "base/ip_prefix.h"
#include "base/unique_fd.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "http/acme_challenges.h"
#include "http/bootstrap_dns.h"
#include "http/request_parser.h"
#include "http/routes.h"
#include "net/listener.h"
#include "relay/accept_limits.h"
#include "relay/client_check.h"
#include "relay/connection.h"
#include "relay/client_apps.h"
#include "relay/counters.h"
#include "relay/directory_replica.h"
#include "relay/key_directory.h"
#include "relay/mail.h"
#include "relay/mesh_state.h"
#include "relay/rate_limit.h"
#include "relay/session.h"
#include "relay/shard_loop.h"
#include "relay/stun_server.h"
#include "relay/tls_transport.h"
#include "relay/transport.h"
#include "runtime/buffer_ring.h"
#include "runtime/io_ring.h"
#include "runtime/mailbox.h"
#include "runtime/packet_pool.h"
#include "runtime/timer_wheel.h"
#include "tls/server_tls.h"

namespace derpd::relay {

struct ClientState;
class BoxKeyCache;

// Accepts each shard keeps in flight on each of its listeners. Single-shot:
// at most this many accepted fds wait in a ring's completion queue before the
// shard sees them and checks the fd budget. (A multishot accept has no such
// bound: under a flood it takes every free fd before the shard runs.)
// Server::start keeps room for them in the open-file limit.
constexpr size_t kAcceptsInFlight = 8;

// BoxKeyCache's size: 16Ki client keys, 2 MiB for the whole process.
constexpr size_t kBoxKeyCacheSlots = 16384;

struct RelayConfig {
  derp::PrivateKey serverKey;
  Nanos writeTimeout = 2 * kSecond;
  Nanos batchWait = 0;  // --batch-wait: IoRing::runOnce's batchWait
  Nanos handshakeTimeout = 10 * kSecond;
  Nanos headerTimeout = 10 * kSecond;
  Nanos keepAliveInterval = 60 * kSecond;
  Nanos keepAliveJitter = 5 * kSecond;
  net::TcpOptions tcp;
  size_t queuePackets = 32;         // per destination, like derper
  size_t queueBytes = 1 << 20;      // per destination
  // A mesh watcher's backlog of PeerPresent/PeerGone frames before it is
  // closed to resync (--mesh-watcher-queue-kb).
  size_t watcherQueueBytes = 64 << 20;
  // The slab memory each shard's packet pool may hold (--packet-memory-mb).
  size_t poolBytes = 256 << 20;
  // Admission limits (0: none): open connections per source address
  // (--max-conns-per-ip), connections still in their HTTP phase or DERP
  // handshake per shard (--max-handshakes-per-shard), and derper's accept
  // rate on the main listener (-accept-connection-limit/-burst).
  uint32_t maxConnsPerIp = 0;
  size_t maxHandshakesPerShard = 0;
  double acceptPerSecond = std::numeric_limits<double>::infinity();
  int64_t acceptBurst = std::numeric_limits<int64_t>::max();
  // Who may read /metrics and /debug/ besides loopback and the tailnet's
  // ranges (--metrics-allow).
  std::vector<IpPrefix> observers;
};

// derper's rule for /debug/ (loopback, or a Tailscale address, so operators
// reach it over their tailnet), plus the operator's own prefixes.
bool mayObserve(const std::array<uint8_t, 16>& ip, const std::vector<IpPrefix>& extra);

// What all shards share, fixed before any shard runs.
struct SharedState {
  RelayConfig config;
  ClientApps clientApps;  // handshakes by AppName, for /debug/apps
  derp::NodeKey serverPublic;
  std::string serverPublicHex;
  Mailbox* mailbox = nullptr;
  // The handshake's X25519 per client key, for reconnects (nullptr: derive
  // every time).
  BoxKeyCache* boxKeys = nullptr;
  std::vector<ShardCounters*> counters;  // every shard's
  std::vector<std::atomic<int>> ringFds;  // every shard's ring fd, for MSG_RING
  // Every shard's "about to sleep or asleep in its ring": a shard that sends
  // it mail wakes it only then (ShardLoop::run and wakeShard, an eventcount).
  struct alignas(64) SleepFlag {
    std::atomic<bool> asleep{false};
  };
  std::unique_ptr<SleepFlag[]> sleeping;
  // Every shard's open connections other than its mesh links: a draining node
  // keeps its links until the whole node has no client left.
  std::vector<std::atomic<size_t>> clientSockets;
  // Every shard's "has left its loop": mail to it is discarded, not retried.
  std::vector<std::atomic<bool>> exited;
  std::atomic<uint32_t> exitedShards{0};  // how many have: a change makes the others sweep
  std::vector<int> wakeFds;              // every shard's eventfd (stop, MSG_RING fallback)
  // TLS on the main listener, or nullptr for plain HTTP. With TLS, port80 says
  // whether each shard also has a plain -http-port listener.
  const tls::ServerTls* tls = nullptr;
  uint16_t httpsPort = 443;
  std::string home;  // -home
  bool derp = true;  // -derp
  // /bootstrap-dns answers, refreshed off the shards; nullptr: none configured.
  const http::BootstrapDnsStore* bootstrapDns = nullptr;
  // ACME HTTP-01 answers (-certmode letsencrypt/gcp); nullptr: none.
  const http::AcmeChallengeStore* acmeChallenges = nullptr;
  int64_t startUnixSeconds = 0;  // for /debug/varz uptime
  // The regional mesh (-mesh-with), or nullptr when this node has no peers.
  MeshState* mesh = nullptr;
  // -verify-clients / -verify-client-url, or nullptr: everyone is admitted.
  ClientChecker* checker = nullptr;
  // -rate-config's current limit, or nullptr: clients are not limited.
  const RateLimitSetting* rateLimit = nullptr;
  // Accepted sockets open on every shard, and how many the open-file limit
  // lets them hold: the rest of the limit is kept for what derpd itself opens
  // (mesh links, certificate reloads, the resolver, metrics). A connection
  // over the budget is accepted and closed at once, counted, so accept never
  // runs into EMFILE and nothing else in the process is starved of fds. The
  // --metrics-addr listener, which keeps only loopback, tailnet and
  // --metrics-allow peers, is outside the budget: an operator can watch an fd
  // flood while it lasts.
  std::atomic<size_t> acceptedSockets{0};
  size_t maxAcceptedSockets = SIZE_MAX;
  AcceptRate acceptRate;  // from config.acceptPerSecond/acceptBurst
  PerIpCounts perIp;      // when config.maxConnsPerIp > 0
};

class ShardServer : private ShardLoop::Services,
                    private DirectoryReplica::Host,
                    private TransportUser {
 public:
  // The roles a connection may have (session.h) drive the shard's services.
  friend class HttpSession;
  friend class ServerSession;
  friend class LinkSession;

  // stunSocket: this shard's UDP socket for STUN, or an invalid fd for none.
  // port80Listener: the plain -http-port listener beside TLS, or invalid.
  // metricsListener: the plain --metrics-addr listener, or invalid.
  ShardServer(uint16_t id, SharedState& shared, UniqueFd listener, UniqueFd stunSocket,
              UniqueFd port80Listener, UniqueFd metricsListener, ShardCounters& counters,
              const Clock& clock);
  ~ShardServer();

  // On the shard thread, before run(): creates the ring and buffers and
  // publishes the ring fd in shared.ringFds.
  absl::Status init();
  // On the shard thread: serves until requestStop(), then closes every
  // connection and returns.
  void run();
  // Any thread. Stop: close every connection now. Drain (graceful restart):
  // stop accepting, send every client Restarting, keep relaying until the
  // clients have left or `timeout` has passed, then close the rest.
  void requestStop();
  void requestDrain(Nanos timeout);
  // Any thread: the mesh targets changed; the shard takes up the ones it owns.
  void wake();

  // Any thread: the checker's answer about a connection of this shard.
  void postVerdict(const CheckRequest& request, Verdict verdict);

  // Completion entry points (shard thread).
  void onRecv(Connection& c, int res, uint32_t flags);
  void onSendDone(Connection& c, int res);

 private:
  struct AcceptOp final : Completion {
    void complete(int res, uint32_t) override { server->onAccept(*this, res); }
    ShardServer* server = nullptr;
    ListenerKind kind = ListenerKind::kMain;
    bool armed = false;  // its accept is in flight
  };

  // Admission (admission.cc): accepts and the budgets of fds and pre-auth bytes.
  void armAccept();
  void armAcceptOn(int fd, AcceptOp& op);
  int listenerFd(ListenerKind kind) const;
  void onAccept(AcceptOp& op, int res);
  bool takeSocketBudget();
  // The admission limits' verdict on an accepted socket: nullopt admits it
  // (holding its per-address slot, if counted), else what refused it.
  std::optional<AcceptLimit> refuseByLimits(const Connection::Ip& ip, ListenerKind kind);
  void warnRefusing(const char* what, const std::string& detail);
  bool chargePreAuth(Connection& c, size_t bytes);

  // Reading paused and resumed (connection_io.cc): bytes that arrive while
  // paused are held, and fed to the reader when it resumes.
  void pauseInput(Connection& c);
  void cancelRecv(Connection& c);
  void resumeInput(Connection& c);
  void holdInput(Connection& c, const uint8_t* data, size_t n);
  // -rate-config: charges a client's frame of `length` bytes to its bucket;
  // one that runs out stops being read until its tokens are back.
  void limitRate(Connection& c, ClientState& client, uint32_t length);
  // The client's bucket at the current -rate-config (admit, and reloads).
  void takeRateLimit(Connection& c, ClientState& client);
  static void onResume(Timer* t, void* ctx);
  // Client verification (verification.cc): the answers posted from the
  // checker's threads, taken on the shard's signal.
  void takeVerdicts();
  void onVerdict(Connection& c, const Verdict& v);

  // The loop's turn (ShardLoop::Services; shard_server.cc).
  bool hasWork() override { return !dirty_.empty(); }
  bool mailWaiting() override;
  Nanos maxWait() override { return stopping_ ? 50 * kMillisecond : -1; }
  void beforeWait() override;
  bool onSignal() override;
  void afterCompletions() override { drainMailbox(); }
  bool endOfTurn() override;

  // Once a loop turn: pool, ring and mailbox gauges into the counters, and the
  // pool trim timer armed when the pool has grown.
  void publishLoopStats();
  void armRecv(Connection& c);

  // Input.
  void onBytes(Connection& c, const uint8_t* data, size_t n);
  // What the connection's transport calls (TransportUser; connection_io.cc).
  ReadTarget readTarget(Connection& c) override;
  bool onReadInto(Connection& c, ReadTarget::Kind kind, size_t n) override;
  void onPlaintext(Connection& c, const uint8_t* data, size_t n) override { onBytes(c, data, n); }
  void onTransportReady(Connection& c) override;
  void closeConnection(Connection& c, CloseReason reason) override { close(c, reason); }
  void wantWrite(Connection& c) override { markDirty(c); }
  void releaseFrame(PacketBuf* b) override { releaseBuf(b); }
  // The Date header for responses now: formatted once a second.
  std::string_view httpDate();
  // /metrics and /debug/ (debug_http.cc): the response, or nullopt when the
  // path is not one of them.
  std::optional<http::RouteResult> routeObservability(const Connection& c, const http::Request& req,
                                                      const http::RouteContext& ctx);
  void onDerpBytes(Connection& c, const uint8_t* data, size_t n);
  ReadTarget derpTarget(Connection& c);
  bool derpReadInto(Connection& c, ReadTarget::Kind kind, size_t n);
  // DERP over WebSocket (websocket_io.cc): the decoder's part of reading.
  ReadTarget wsTarget(Connection& c);
  bool wsReadInto(Connection& c, ReadTarget::Kind kind, size_t n);
  void onWebSocketBytes(Connection& c, const uint8_t* data, size_t n);
  bool onWebSocketEvent(Connection& c, const http::ws::Event& e);
  bool startFrame(Connection& c);
  void finishFrame(Connection& c);
  // A client's SendPacket (packet_path.cc).
  void onSendPacket(Connection& c, ClientState& client, PacketBuf* b);

  // Relay.
  void deliver(const ConnRef& ref, PacketBuf* b);
  void enqueuePacket(Connection& c, PacketBuf* b);
  void releaseBuf(PacketBuf* b);
  void releaseChain(PacketBuf* b);
  // releaseChain, counting the packets in it as dropped for `reason`.
  void dropChain(PacketBuf* b, DropReason reason);
  void sendPeerGone(const ConnRef& ref, const derp::NodeKey& gone, derp::PeerGoneReason reason);
  MailMessage mail(MailKind kind, uint32_t idx, uint32_t gen, void* ptr = nullptr) const {
    return makeMail(kind, id_, idx, gen, ptr);
  }
  void broadcast(const MailMessage& m);
  void announce(const MailMessage& about, const derp::NodeKey* key);
  // The replica's news (DirectoryReplica::Host; directory_mail.cc).
  void sendMail(size_t to, const MailMessage& m) override { outbox_.send(to, m); }
  void onInstancesChanged(const derp::NodeKey& key, const KeyDirectory::Change& change) override;
  void onPresence(const derp::NodeKey& key, const PeerInfo* info) override {
    notifyWatchers(key, info);
  }
  void onRegistered(uint32_t idx, uint32_t gen) override;
  void drainMailbox();
  void onMail(const MailMessage& m);

  // Output.
  bool queueControl(Connection& c, std::span<const uint8_t> bytes, uint8_t flags = 0);
  bool queueFrame(Connection& c, const derp::Frame& f, uint8_t flags = 0);
  void markDirty(Connection& c);
  void flushDirty();
  bool gatherWrite(Connection& c);
  void startWrite(Connection& c);
  void onWritten(Connection& c, size_t n);
  void writeFailed(Connection& c);

  // Regional mesh, incoming side (mesh.cc): watchers, forwarded packets, ClosePeer.
  bool checkMeshFrame(Connection& c);
  void onWatchConns(Connection& c);
  void onForwardPacket(Connection& c, ClientState& client, PacketBuf* b);
  void onClosePeer(const derp::NodeKey& key);
  void closeLocalInstances(const derp::NodeKey& key, CloseReason reason);
  void notifyWatchers(const derp::NodeKey& key, const PeerInfo* present);
  void queuePeerState(Connection& c, const derp::Frame& f);
  void dropWatcher(Connection& c);
  void relay(const ConnRef& to, PacketBuf* b);
  // Outgoing side (mesh_link.cc): one link per peer this shard owns.
  struct MeshLink;
  void reconcileMesh();
  void addLink(const MeshTarget& target);
  void removeLink(MeshLink& l);
  void connectLink(MeshLink& l);
  void scheduleLinkRetry(MeshLink& l);
  static void onLinkRetry(Timer* t, void* ctx);
  void forward(const MeshRef& ref, const derp::NodeKey& dst, PacketBuf* b);
  void forwardOnLink(uint32_t slot, uint32_t gen, PacketBuf* b);
  void applyRemotePresent(const derp::NodeKey& key, const MeshRef& ref);
  void applyRemoteGone(const derp::NodeKey& key, const MeshRef& ref);
  void applyLinkDown(const MeshRef& ref);
  void remoteKeyGone(const derp::NodeKey& key);

  // This shard's replica of the key directory (lookups; the mesh's remote entries).
  KeyDirectory& directory() { return replica_.directory(); }

  // Lifetime.
  Connection& newConnection(int fd, ListenerKind kind, std::unique_ptr<Session> session);
  Connection* find(uint32_t idx, uint32_t gen);
  // The connection takes a new role (an HTTP session upgraded): the old
  // session, whose call may still be running, is freed at the end of the turn.
  void replaceSession(Connection& c, std::unique_ptr<Session> next);
  void mailPacket(size_t to, const MailMessage& m);
  void noteDuplicateSend(Connection& c);
  void discardMailToExited();
  void setState(Connection& c, Connection::State s);
  void close(Connection& c, CloseReason reason);
  void finishCloses();
  void reapClosed();
  void unregister(Connection& c);
  static void onDeadline(Timer* t, void* ctx);
  static void onKeepAlive(Timer* t, void* ctx);
  static void onWriteTimeout(Timer* t, void* ctx);
  void armKeepAlive(Connection& c);
  void beginShutdown();
  void beginDrain();
  bool nodeHasClients() const;
  void publishClientSockets();
  static void onDrainDeadline(Timer* t, void* ctx);

  uint16_t id_;
  SharedState& shared_;
  UniqueFd listener_;
  UniqueFd port80Listener_;
  UniqueFd metricsListener_;
  ShardCounters& counters_;
  const Clock& clock_;
  ShardLoop loop_;  // the ring, its receive buffers, the timers, the eventfd
  std::unique_ptr<StunServer> stun_;
  PacketPool pool_;
  Outbox outbox_;
  DirectoryReplica replica_;
  // kAcceptsInFlight single-shot accepts per listener, by ListenerKind.
  std::array<std::array<AcceptOp, kAcceptsInFlight>, 3> acceptOps_;
  PlainTransport plain_{*this, pool_};
  TlsEngine tlsEngine_;

  Timer acceptRetry_;
  Nanos fdLimitWarnedAt_ = -kSecond;  // the last "fd budget full" warning
  int64_t dateSecond_ = -1;           // httpDate()'s cache: the second dateText_ shows
  std::string dateText_;
  Nanos limitWarnedAt_ = -kSecond;    // the last "refusing: admission limit" warning
  std::atomic<bool> stopRequested_{false};
  std::atomic<bool> drainRequested_{false};
  std::atomic<Nanos> drainTimeout_{0};
  bool draining_ = false;
  Timer drainDeadline_;
  Timer poolTrim_;  // armed while the pool holds more than it keeps; see publishLoopStats
  bool stopping_ = false;
  size_t liveConnections_ = 0;
  uint32_t exitedSeen_ = 0;  // shared_.exitedShards when mail to exited shards was last swept
  size_t preAuthBytes_ = 0;  // the sum of every connection's preAuthCharge

  // The checker's answers, posted from its threads (postVerdict).
  std::mutex verdictMu_;
  std::vector<std::pair<CheckRequest, Verdict>> verdicts_;
  std::vector<std::pair<CheckRequest, Verdict>> verdictsTaken_;
  std::atomic<bool> verdictsPosted_{false};
  Nanos rejectLogWindow_ = 0;  // rejection log lines: a few a second, the rest counted
  uint32_t rejectLogLines_ = 0;
  uint64_t rejectsUnlogged_ = 0;

  std::vector<std::unique_ptr<Connection>> conns_;  // slot index -> connection
  std::vector<uint32_t> gens_;                      // slot index -> current generation
  std::vector<uint32_t> freeSlots_;
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> closing_;  // closed, waiting for their last completions
  std::vector<std::unique_ptr<Session>> retiredSessions_;  // see replaceSession
  std::minstd_rand rng_;

  // Mesh.
  std::vector<uint32_t> watchers_;  // slots of this shard's WatchConns connections
  // Remote senders of forwarded packets -> the local keys they sent to, told
  // PeerGone when the sender leaves the region.
  absl::flat_hash_map<derp::NodeKey, absl::flat_hash_set<derp::NodeKey>> remoteSentTo_;
  std::vector<std::unique_ptr<MeshLink>> links_;  // slot -> link (nullptr: free)
  uint64_t meshTargetsSeen_ = 0;  // the target store generation last taken up
  uint32_t nextLinkGen_ = 0;
  size_t liveLinks_ = 0;  // link connections not yet reaped
};

}  // namespace derpd::relay
