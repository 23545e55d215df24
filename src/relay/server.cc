#include "relay/server.h"

#include <pthread.h>
#include <sched.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

#include <ctime>
#include <latch>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/hex.h"
#include "base/log.h"
#include "net/listener.h"

namespace derpd::relay {

std::vector<int> allowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int i = 0; i < CPU_SETSIZE; i++) {
      if (CPU_ISSET(i, &set)) cpus.push_back(i);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

namespace {

// Fds kept out of the accepted sockets' budget for everything else derpd
// opens while it runs: mesh links, certificate and key files on reload, the
// resolver's sockets, /proc reads, sd_notify.
constexpr size_t kFdReserve = 128;

size_t openFds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

}  // namespace

void raiseOpenFileLimit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
  const rlim_t was = r.rlim_cur;
  r.rlim_cur = r.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &r) == 0) {
    logDebug("open-file limit raised from %llu to %llu", static_cast<unsigned long long>(was),
             static_cast<unsigned long long>(r.rlim_max));
  }
}

size_t acceptedSocketBudget(size_t fdsInUse) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  const size_t limit = static_cast<size_t>(r.rlim_cur);
  const size_t kept = fdsInUse + kFdReserve;
  return limit > kept ? limit - kept : 0;
}

Server::Server(Options opts) : opts_(std::move(opts)) {}

Server::~Server() { stop(); }

ShardPlan planShards(size_t requested, size_t affinityCpus, std::optional<CpuQuota> quota) {
  ShardPlan plan;
  if (requested > 0) {
    plan.shards = requested;
    plan.why = "--shards";
    plan.pin = true;
    return plan;
  }
  plan.shards = affinityCpus;
  plan.why = absl::StrCat(affinityCpus, " CPUs in the affinity mask");
  plan.pin = true;
  if (quota && cpusForQuota(quota->cpus) < affinityCpus) {
    // The quota lets this process use that much CPU time, spread over CPUs it
    // shares with others: pinning would pile every shard onto the first few
    // CPUs of the mask, so the scheduler places them.
    plan.shards = cpusForQuota(quota->cpus);
    plan.why = absl::StrFormat("cgroup CPU quota %.2f CPUs (%s) of %d CPUs in the affinity mask",
                               quota->cpus, quota->file, affinityCpus);
    plan.pin = false;
  }
  return plan;
}

absl::Status Server::start() {
  std::vector<int> cpus = allowedCpus();
  const ShardPlan plan =
      planShards(opts_.shards, cpus.size(), opts_.shards > 0 ? std::nullopt : cgroupCpuQuota());
  const size_t n = plan.shards;
  logInfo("shards: %d (%s)%s", n, plan.why, plan.pin ? ", each pinned to a CPU" : ", not pinned");
  auto listeners = net::listenTcp(opts_.listen, n);
  if (!listeners.ok()) return listeners.status();
  bound_ = listeners->bound;
  std::vector<UniqueFd> stunSockets(n);
  if (opts_.stunListen) {
    auto udp = net::listenUdp(*opts_.stunListen, n);
    if (!udp.ok()) {
      return absl::Status(udp.status().code(), absl::StrCat("STUN: ", udp.status().message()));
    }
    stunBound_ = udp->bound;
    stunSockets = std::move(udp->fds);
  }
  std::vector<UniqueFd> port80Sockets(n);
  if (opts_.tls != nullptr && opts_.httpListen) {
    auto http = net::listenTcp(*opts_.httpListen, n);
    if (!http.ok()) {
      return absl::Status(http.status().code(),
                          absl::StrCat("-http-port: ", http.status().message()));
    }
    httpBound_ = http->bound;
    port80Sockets = std::move(http->fds);
  }
  std::vector<UniqueFd> metricsSockets(n);
  if (opts_.metricsListen) {
    auto metrics = net::listenTcp(*opts_.metricsListen, n);
    if (!metrics.ok()) {
      return absl::Status(metrics.status().code(),
                          absl::StrCat("--metrics-addr: ", metrics.status().message()));
    }
    metricsBound_ = metrics->bound;
    metricsSockets = std::move(metrics->fds);
  }

  // Accepted sockets inherit TCP_NODELAY, keep-alive and the user timeout from
  // their listener: set once here, not with five setsockopt calls per accept.
  for (const auto* set : {&listeners->fds, &port80Sockets, &metricsSockets}) {
    for (const UniqueFd& fd : *set) {
      if (fd.valid()) net::applyTcpOptions(fd.get(), opts_.relay.tcp);
    }
  }
  mailbox_ = std::make_unique<Mailbox>(n);
  shared_ = std::make_unique<SharedState>();
  shared_->config = opts_.relay;
  shared_->serverPublic = opts_.relay.serverKey.publicKey();
  shared_->serverPublicHex = shared_->serverPublic.hex();
  shared_->mailbox = mailbox_.get();
  boxKeys_ = std::make_unique<BoxKeyCache>(kBoxKeyCacheSlots);
  shared_->boxKeys = boxKeys_.get();
  shared_->tls = opts_.tls;
  shared_->httpsPort = bound_.port();
  shared_->home = opts_.home;
  shared_->derp = opts_.derp;
  shared_->bootstrapDns = opts_.bootstrapDns;
  shared_->acmeChallenges = opts_.acmeChallenges;
  shared_->mesh = opts_.mesh;
  shared_->checker = opts_.checker;
  shared_->rateLimit = opts_.rateLimit;
  shared_->startUnixSeconds = static_cast<int64_t>(::time(nullptr));
  shared_->ringFds = std::vector<std::atomic<int>>(n);
  shared_->sleeping = std::make_unique<SharedState::SleepFlag[]>(n);
  shared_->clientSockets = std::vector<std::atomic<size_t>>(n);
  shared_->exited = std::vector<std::atomic<bool>>(n);
  for (size_t i = 0; i < n; i++) {
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0) return absl::InternalError("eventfd failed");
    shared_->wakeFds.push_back(efd);
    counters_.push_back(std::make_unique<ShardCounters>());
    shared_->counters.push_back(counters_.back().get());
  }
  // What is open now, plus each shard's ring and the accepted fds its
  // accepts may be holding before it sees them, is held for the server's life.
  shared_->maxAcceptedSockets = acceptedSocketBudget(openFds() + n * (1 + 3 * kAcceptsInFlight));
  shared_->acceptRate.configure(opts_.relay.acceptPerSecond, opts_.relay.acceptBurst);
  if (shared_->maxAcceptedSockets < 64) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the open-file limit (ulimit -n) leaves ", shared_->maxAcceptedSockets,
        " sockets for clients; raise it (LimitNOFILE= in a systemd unit)"));
  }
  for (size_t i = 0; i < n; i++) {
    shards_.push_back(std::make_unique<ShardServer>(static_cast<uint16_t>(i), *shared_,
                                                    std::move(listeners->fds[i]),
                                                    std::move(stunSockets[i]),
                                                    std::move(port80Sockets[i]),
                                                    std::move(metricsSockets[i]), *counters_[i],
                                                    clock_));
  }

  // Every ring must exist (its fd published for MSG_RING) before any shard
  // can send to another, so shards init, meet, then run.
  // The rendezvous outlives start(): a thread may still be leaving the latch
  // after the main thread has passed it.
  struct Startup {
    explicit Startup(size_t n) : ready(static_cast<ptrdiff_t>(n) + 1), status(n) {}
    std::latch ready;
    std::vector<absl::Status> status;
  };
  auto startup = std::make_shared<Startup>(n);
  for (size_t i = 0; i < n; i++) {
    threads_.emplace_back([this, i, startup, pin = plan.pin, cpu = cpus[i % cpus.size()]] {
      if (pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
      }
      std::string name = absl::StrCat("derpd-shard", i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      absl::Status st = shards_[i]->init();
      startup->status[i] = st;
      startup->ready.arrive_and_wait();
      if (!st.ok()) return;
      shards_[i]->run();
      exited_.fetch_add(1, std::memory_order_release);
    });
  }
  startup->ready.arrive_and_wait();
  for (size_t i = 0; i < n; i++) {
    if (!startup->status[i].ok()) {
      absl::Status st = startup->status[i];
      stop();
      return absl::Status(st.code(), absl::StrCat("shard ", i, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

void Server::meshTargetsChanged() {
  for (auto& s : shards_) s->wake();
}

void Server::postVerdict(const CheckRequest& request, Verdict verdict) {
  if (request.shard < shards_.size())
    shards_[request.shard]->postVerdict(request, std::move(verdict));
}

void Server::requestDrain(Nanos timeout) {
  for (auto& s : shards_) s->requestDrain(timeout);
}

bool Server::finished() const {
  return exited_.load(std::memory_order_acquire) == threads_.size();
}

void Server::stop() {
  for (auto& s : shards_) s->requestStop();
  join();
}

void Server::join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  // Shards are destroyed only after every thread is gone: buffers move
  // between shards, so no pool may vanish while another shard runs.
  shards_.clear();
  if (shared_) {
    for (int fd : shared_->wakeFds) ::close(fd);
    shared_->wakeFds.clear();
  }
}

}  // namespace derpd::relay
