// Server: the set of shards. Binds the listeners, starts one pinned thread per
// shard, and stops them. Owned and called by the main thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "base/clock.h"
#include "base/cpu_quota.h"
#include "net/socket_address.h"
#include "relay/box_key_cache.h"
#include "relay/shard_server.h"

namespace derpd::relay {

// Go raises the soft RLIMIT_NOFILE to the hard limit at start, so derper does
// too; so does derpd (main, before anything is opened).
void raiseOpenFileLimit();
// How many accepted sockets the open-file limit allows when fdsInUse are
// held for the process's life (SIZE_MAX: no limit).
size_t acceptedSocketBudget(size_t fdsInUse);

class Server {
 public:
  struct Options {
    RelayConfig relay;
    net::SocketAddress listen;
    size_t shards = 0;  // 0: one per CPU in the affinity mask
    std::optional<net::SocketAddress> stunListen;  // UDP address for STUN, if on
    // TLS on `listen` (nullptr: plain HTTP). It must outlive the server.
    const tls::ServerTls* tls = nullptr;
    // With TLS: the plain-HTTP listener (-http-port), if on.
    std::optional<net::SocketAddress> httpListen;
    // The plain-HTTP listener for /metrics and /debug/ (--metrics-addr), if on.
    std::optional<net::SocketAddress> metricsListen;
    std::string home;  // -home
    bool derp = true;  // -derp: false answers /derp with 404 (STUN only)
    // /bootstrap-dns answers (nullptr: none configured). It must outlive the server.
    const http::BootstrapDnsStore* bootstrapDns = nullptr;
    // ACME HTTP-01 answers for -http-port (nullptr: none). It must outlive the server.
    const http::AcmeChallengeStore* acmeChallenges = nullptr;
    // The regional mesh (nullptr: none). It must outlive the server.
    MeshState* mesh = nullptr;
    // -verify-clients / -verify-client-url (nullptr: admit everyone). It must
    // outlive the server, and post its answers through postVerdict.
    ClientChecker* checker = nullptr;
    // -rate-config (nullptr: no limit). It must outlive the server; set() on it
    // applies to every client, connected ones included.
    const RateLimitSetting* rateLimit = nullptr;
  };

  explicit Server(Options opts);
  ~Server();

  // Binds, starts every shard and returns once all are serving.
  absl::Status start();
  // Closes every connection, joins the shards.
  void stop();
  // Graceful restart: every shard stops accepting, sends its clients
  // Restarting, serves them until they leave or `timeout` passes, then closes
  // the rest and returns. finished() says when all have; stop() then joins.
  void requestDrain(Nanos timeout);
  bool finished() const;
  // Any thread: the mesh target store has a new set; every shard takes up its share.
  void meshTargetsChanged();
  // Any thread, between start() and stop(): the checker's answer to a shard's request.
  void postVerdict(const CheckRequest& request, Verdict verdict);

  const net::SocketAddress& boundAddress() const { return bound_; }
  const std::optional<net::SocketAddress>& stunAddress() const { return stunBound_; }
  const std::optional<net::SocketAddress>& httpAddress() const { return httpBound_; }
  const std::optional<net::SocketAddress>& metricsAddress() const { return metricsBound_; }
  size_t shardCount() const { return shards_.size(); }
  size_t acceptedSocketLimit() const { return shared_->maxAcceptedSockets; }
  const derp::NodeKey& publicKey() const { return shared_->serverPublic; }
  // Every shard's counters (after start()). Relaxed atomics written by their
  // shards: any thread may read them.
  std::span<ShardCounters* const> counters() const { return shared_->counters; }

 private:
  void join();

  Options opts_;
  RealClock clock_;
  net::SocketAddress bound_;
  std::optional<net::SocketAddress> stunBound_;
  std::optional<net::SocketAddress> httpBound_;
  std::optional<net::SocketAddress> metricsBound_;
  std::unique_ptr<Mailbox> mailbox_;
  std::unique_ptr<BoxKeyCache> boxKeys_;
  std::unique_ptr<SharedState> shared_;
  std::vector<std::unique_ptr<ShardCounters>> counters_;
  std::vector<std::unique_ptr<ShardServer>> shards_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> exited_{0};
};

// CPUs in this process's affinity mask, in order.
std::vector<int> allowedCpus();

// How many shards to start and whether to pin them: --shards when given, else
// one per CPU of the affinity mask, or fewer when a cgroup CPU quota allows
// less (then unpinned).
struct ShardPlan {
  size_t shards = 1;
  bool pin = true;
  std::string why;  // for the log line
};
ShardPlan planShards(size_t requested, size_t affinityCpus, std::optional<CpuQuota> quota);

}  // namespace derpd::relay
