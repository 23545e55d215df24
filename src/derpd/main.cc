// derpd: wiring. Parses the derper-compatible command line, loads the key,
// sets up TLS, starts the shards and waits for signals and certificate changes.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/log.h"
#include "config/config.h"
#include "derp/key_file.h"
#include "derpd/bootstrap_resolver.h"
#include "derpd/service_notify.h"
#include "derpd/tls_setup.h"
#include "tls/certificate.h"
#include "derpd_config.h"
#include "net/socket_address.h"
#include "relay/periodic_stats.h"
#include "relay/mesh_state.h"
#include "relay/mesh_targets.h"
#include "relay/rate_limit.h"
#include "relay/server.h"
#include "runtime/io_uring_probe.h"
#include "tls/client_context.h"
#include "verify/client_verifier.h"
#include "client/http_response.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace {

constexpr int kExitUsage = 2;
// tailscaled's LocalAPI socket on Linux (derper's -socket default).
constexpr const char* kTailscaledSocket = "/var/run/tailscale/tailscaled.sock";

// Reloads the manual certificates (SIGHUP, or a change in -certdir): a good
// new pair is used by new handshakes; a bad one is refused and the old kept.
// With ACME, SIGHUP retries at once the names that have no certificate or
// whose last attempt failed.
void applyRateConfig(derpd::relay::RateLimitSetting& setting, const derpd::relay::RateConfig& c) {
  setting.set(c);
  derpd::logInfo("rate config applied: client-rate=%llu bytes/sec, client-burst=%llu bytes",
                 static_cast<unsigned long long>(c.bytesPerSecond),
                 static_cast<unsigned long long>(c.burst));
}

// Each served certificate's names, expiry and fingerprint; a warning (and
// derpd_tls_cert_expiring_loads_total) for one expired or expiring soon.
void logCertificates(derpd::tls::ServerTls& t, const char* when) {
  using namespace derpd;
  std::shared_ptr<const tls::CertSet> set = t.certs();
  if (!set) return;
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  for (const tls::CertifiedKey& c : set->certs) {
    if (tls::expiresSoon(c, now)) {
      t.expiringLoads.fetch_add(1, std::memory_order_relaxed);
      logWarn("%s certificate %s: renew it (derpd serves it as it is)", when,
              tls::describeCertificate(c, now));
    } else {
      logInfo("%s certificate %s", when, tls::describeCertificate(c, now));
    }
  }
}

void reloadCertificates(derpd::TlsSetup& t, const char* why) {
  using namespace derpd;
  if (t.acme) {
    logInfo("%s: ACME: trying again now for names without a certificate or after a failure", why);
    t.acme->retryNow();
    return;
  }
  if (!t.manual) {
    logInfo("%s: no certificate files to reload", why);
    return;
  }
  if (absl::Status st = t.manual->reload(*t.tls); !st.ok()) {
    t.tls->reloadsFailed.fetch_add(1, std::memory_order_relaxed);
    logError("%s: certificates not reloaded, keeping the current ones: %s", why, st.message());
    return;
  }
  t.tls->reloadsOk.fetch_add(1, std::memory_order_relaxed);
  logInfo("%s: certificates reloaded; new connections use them", why);
  logCertificates(*t.tls, "reloaded");
}

// How SIGTERM's drain went: clients told, how many left on their own, and
// whether the drain timeout (timeout; -1: a second signal) ended it.
void logDrainEnd(std::span<derpd::relay::ShardCounters* const> shards, derpd::Nanos took,
                 derpd::Nanos timeout) {
  using namespace derpd;
  uint64_t told = 0;
  uint64_t forced = 0;
  for (const relay::ShardCounters* c : shards) {
    told += c->drainTold.get();
    forced += c->drainTimedOut.get();
  }
  const double seconds = static_cast<double>(took) / kSecond;
  if (timeout < 0) {
    logInfo(
        "drain: %llu clients told to reconnect elsewhere; a second signal ended it after "
        "%.1fs",
        static_cast<unsigned long long>(told), seconds);
  } else if (forced == 0) {
    logInfo("drain: %llu clients told to reconnect elsewhere, all left on their own in %.1fs",
            static_cast<unsigned long long>(told), seconds);
  } else {
    logInfo(
        "drain: %llu clients told to reconnect elsewhere, %llu left on their own; the drain "
        "timeout (%.1fs) closed the %llu still connected",
        static_cast<unsigned long long>(told),
        static_cast<unsigned long long>(told > forced ? told - forced : 0),
        static_cast<double>(timeout) / kSecond, static_cast<unsigned long long>(forced));
  }
}

int runServer(const derpd::Config& cfg) {
  using namespace derpd;
  // Before anything else: a container whose seccomp profile refuses io_uring
  // gets one line saying so, not a shard's error after the listeners are up.
  if (absl::Status st = probeIoUring(); !st.ok()) {
    logError("io_uring: %s", st.message());
    return 1;
  }
  std::string addrText = cfg.dev ? "127.0.0.1:3340" : cfg.addr;
  auto addr = net::parseListenAddress(addrText);
  if (!addr.ok()) {
    logError("flag -a: %s", addr.status().message());
    return kExitUsage;
  }
  // Metrics and /debug/ carry no authentication: whatever the listener, only
  // loopback, tailnet and --metrics-allow peers are answered (403 otherwise).
  std::optional<net::SocketAddress> metricsAddr;
  if (!cfg.metricsAddr.empty()) {
    auto m = net::parseListenAddress(cfg.metricsAddr);
    if (!m.ok()) {
      logError("flag --metrics-addr: %s", m.status().message());
      return kExitUsage;
    }
    metricsAddr = *m;
  }
  auto key = derp::loadOrCreateKeyFile(cfg.keyFile);
  if (!key.ok()) {
    logError("key file: %s", key.status().message());
    return 1;
  }
  TlsSetup tlsSetup;
  if (!tlsWanted(cfg, addr->port())) {
    logInfo("no TLS: plain HTTP on %s (TLS needs port 443 in -a, -certmode manual or -dev)",
            addrText);
  } else {
    auto t = setupTls(cfg, key->publicKey().hex());
    if (!t.ok()) {
      logError("TLS: %s", t.status().message());
      return t.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : 1;
    }
    tlsSetup = std::move(*t);
    if (cfg.dev) {
      logInfo("TLS: -dev (a self-signed certificate for 127.0.0.1, made now)");
    } else {
      logInfo("TLS: hostname %s, certmode %s, certdir %s", cfg.hostname, cfg.certMode,
              certDirOf(cfg));
    }
    for (const std::string& line : tlsSetup.notices) logInfo("%s", line);
    for (const std::string& line : tlsSetup.warnings) logWarn("%s", line);
    // Manual files, or what the ACME cache held (the rest is obtained later).
    if (tlsSetup.manual || tlsSetup.acme) {
      logCertificates(*tlsSetup.tls, tlsSetup.acme ? "cached" : "loaded");
    }
  }

  // Shard threads inherit this mask: signals are read from a signalfd below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  UniqueFd sigFd(signalfd(-1, &sigs, SFD_CLOEXEC));

  relay::Server::Options opts;
  opts.relay.serverKey = *key;
  opts.relay.writeTimeout = cfg.tcpWriteTimeout;
  opts.relay.watcherQueueBytes = static_cast<size_t>(cfg.meshWatcherQueueKb) * 1024;
  opts.relay.poolBytes = static_cast<size_t>(cfg.packetMemoryMb) << 20;
  opts.relay.batchWait = cfg.batchWait;
  opts.relay.maxConnsPerIp = static_cast<uint32_t>(cfg.maxConnsPerIp);
  opts.relay.maxHandshakesPerShard = static_cast<size_t>(cfg.maxHandshakesPerShard);
  opts.relay.acceptPerSecond = cfg.acceptConnectionLimit;
  opts.relay.acceptBurst = cfg.acceptConnectionBurst;
  opts.relay.tcp.keepAliveSeconds = static_cast<int>(cfg.tcpKeepAliveTime / kSecond);
  opts.relay.tcp.userTimeoutMs = static_cast<int>(cfg.tcpUserTimeout / kMillisecond);
  opts.relay.observers = cfg.metricsAllow;
  opts.listen = *addr;
  opts.shards = static_cast<size_t>(cfg.shards);
  opts.tls = tlsSetup.tls.get();
  if (opts.tls != nullptr && cfg.httpPort >= 0 && !cfg.dev) {
    net::SocketAddress httpAddr = *addr;
    httpAddr.setPort(static_cast<uint16_t>(cfg.httpPort));
    opts.httpListen = httpAddr;
  }
  if (cfg.stun) {
    // STUN listens on the IP of -a (both families when that is a wildcard).
    net::SocketAddress stunAddr = *addr;
    stunAddr.setPort(static_cast<uint16_t>(cfg.stunPort));
    opts.stunListen = stunAddr;
  }
  opts.metricsListen = metricsAddr;
  if (tlsSetup.acme) opts.acmeChallenges = &tlsSetup.acme->challenges();
  opts.home = cfg.home;
  opts.derp = cfg.derp;
  // /bootstrap-dns: resolved on a thread of its own, first right now.
  http::BootstrapDnsStore bootstrapDns;
  std::unique_ptr<BootstrapResolver> resolver;
  if (!cfg.bootstrapDnsNames.empty() || !cfg.unpublishedBootstrapDnsNames.empty()) {
    resolver = std::make_unique<BootstrapResolver>(cfg.bootstrapDnsNames,
                                                   cfg.unpublishedBootstrapDnsNames, bootstrapDns);
    resolver->start();
    opts.bootstrapDns = &bootstrapDns;
  }
  // The regional mesh: the PSK is checked now; the peers' names are resolved
  // off the shards, first right now so the shards start with their targets.
  relay::MeshState mesh;
  relay::MeshTargetStore meshTargets;
  bssl::UniquePtr<SSL_CTX> meshTls;
  std::vector<relay::MeshEntry> meshEntries;
  // derper's key sources (config): with -dev, $TAILSCALE_DERPER_MESH_KEY
  // when set; else -mesh-psk-file, or derper's default file if one exists.
  if (!cfg.devMeshKey.empty() || !cfg.meshPskFile.empty()) {
    auto meshKey = !cfg.devMeshKey.empty()
                       ? relay::parseMeshKey(cfg.devMeshKey, "TAILSCALE_DERPER_MESH_KEY")
                       : relay::loadMeshKey(cfg.meshPskFile);
    if (!meshKey.ok()) {
      logError("%s: %s", !cfg.devMeshKey.empty() ? "-dev" : "flag -mesh-psk-file",
               meshKey.status().message());
      return kExitUsage;
    }
    if (!cfg.devMeshKey.empty()) {
      logInfo("mesh key from TAILSCALE_DERPER_MESH_KEY (-dev)");
    } else if (!cfg.meshPskFileGiven) {
      logInfo("mesh key file: %s (derper's default location; -mesh-psk-file= turns it off)",
              cfg.meshPskFile);
    }
    std::vector<relay::MeshEntry> entries;
    bool anyTls = opts.tls != nullptr;
    for (const std::string& item : cfg.meshWith) {
      auto entry = relay::parseMeshEntry(item);
      if (!entry.ok()) {
        logError("flag -mesh-with: %s", entry.status().message());
        return kExitUsage;
      }
      anyTls = anyTls || entry->tls.value_or(false);
      entries.push_back(*entry);
    }
    if (anyTls) {
      auto ctx = tls::makeClientContext(cfg.meshInsecure ? "" : cfg.meshCa);
      if (!ctx.ok()) {
        logError("flag --mesh-ca: %s", ctx.status().message());
        return kExitUsage;
      }
      meshTls = std::move(*ctx);
    }
    mesh.meshKey = *meshKey;
    mesh.targets = &meshTargets;
    mesh.clientTls = meshTls.get();
    mesh.verifyPeers = !cfg.meshInsecure;
    opts.mesh = &mesh;
    meshEntries = std::move(entries);
  }
  // -rate-config: read now (a bad file stops startup) and again on SIGHUP.
  relay::RateLimitSetting rateLimit;
  if (!cfg.rateConfig.empty()) {
    absl::StatusOr<relay::RateConfig> rc = relay::loadRateConfig(cfg.rateConfig);
    if (!rc.ok()) {
      logError("flag -rate-config: %s", rc.status().message());
      return kExitUsage;
    }
    applyRateConfig(rateLimit, *rc);
    opts.rateLimit = &rateLimit;
  }
  // Who may connect: asked off the shards, answers posted back to them.
  relay::Server* running = nullptr;
  std::unique_ptr<verify::ClientVerifier> verifier;
  if (cfg.verifyClients || !cfg.verifyClientUrl.empty()) {
    verify::VerifierOptions vo;
    if (cfg.verifyClients)
      vo.tailscaledSocket = cfg.socket.empty() ? kTailscaledSocket : cfg.socket;
    if (!cfg.verifyClientUrl.empty()) {
      if (auto url = client::parseHttpUrl(cfg.verifyClientUrl); !url.ok()) {
        logError("flag -verify-client-url: %s", url.status().message());
        return kExitUsage;
      }
      vo.url = cfg.verifyClientUrl;
    }
    vo.failOpen = cfg.verifyClientUrlFailOpen;
    logInfo("verifying clients:%s%s; answers cached %llds (admitted), %llds (rejected)",
            vo.tailscaledSocket.empty() ? ""
                                        : absl::StrCat(" tailscaled at ", vo.tailscaledSocket,
                                                       vo.url.empty() ? "" : " and"),
            vo.url.empty() ? ""
                           : absl::StrCat(" admission URL ", vo.url,
                                          vo.failOpen ? " (fail open)" : " (fail closed)"),
            static_cast<long long>(vo.admitTtl / kSecond),
            static_cast<long long>(vo.rejectTtl / kSecond));
    verifier = std::make_unique<verify::ClientVerifier>(
        vo, [&running](const relay::CheckRequest& r, relay::Verdict v) {
          running->postVerdict(r, std::move(v));
        });
    opts.checker = verifier.get();
  }
  relay::Server server(opts);
  running = &server;
  if (verifier) verifier->start();
  if (absl::Status st = server.start(); !st.ok()) {
    logError("start: %s", st.message());
    return 1;
  }
  logInfo("derpd %s: public key %s", DERPD_VERSION, server.publicKey().toString());
  if (server.acceptedSocketLimit() != SIZE_MAX) {
    logInfo("open-file limit: up to %zu client connections at once", server.acceptedSocketLimit());
  }
  std::unique_ptr<relay::MeshResolver> meshResolver;
  if (!meshEntries.empty()) {
    // Every shard takes up its share of the peers now, and again whenever
    // the resolver publishes a changed set.
    meshResolver = std::make_unique<relay::MeshResolver>(
        std::move(meshEntries), cfg.hostname, opts.tls != nullptr, server.boundAddress().port(),
        meshTargets, cfg.meshResolveInterval, [&server] { server.meshTargetsChanged(); });
    meshResolver->resolveNow();
    meshResolver->start();
    server.meshTargetsChanged();
    logInfo("mesh: %zu peers listed in -mesh-with, %zu addresses", cfg.meshWith.size(),
            meshTargets.load()->size());
  }
  // STUN first: the listening line is what scripts wait for, so all is up by then.
  if (server.stunAddress()) {
    logInfo("derpd %s: STUN listening on udp://%s", DERPD_VERSION,
            server.stunAddress()->toString());
  }
  if (server.httpAddress()) {
    logInfo("derpd %s: plain HTTP (redirects, /generate_204%s) on http://%s", DERPD_VERSION,
            tlsSetup.acme ? ", ACME HTTP-01" : "", server.httpAddress()->toString());
  }
  if (server.metricsAddress()) {
    logInfo("derpd %s: /metrics and /debug/ on http://%s", DERPD_VERSION,
            server.metricsAddress()->toString());
    std::string allowed;
    for (const IpPrefix& p : cfg.metricsAllow) absl::StrAppend(&allowed, ", ", p.toString());
    logInfo(
        "/metrics and /debug/ answer loopback, the tailnet (100.64.0.0/10, "
        "fd7a:115c:a1e0::/48)%s; anyone else gets 403%s",
        allowed, cfg.metricsAllow.empty() ? " (--metrics-allow adds prefixes)" : "");
  }
  if (cfg.dev) {
    logInfo("dev mode: self-signed certificate %s; try: derpctl probe --pin %s https://%s",
            tlsSetup.devCertName, tlsSetup.devCertName, server.boundAddress().toString());
  }
  logInfo("derpd %s: %d shards; listening on %s://%s", DERPD_VERSION, server.shardCount(),
          opts.tls != nullptr ? "https" : "http", server.boundAddress().toString());
  RealClock clock;
  ServiceNotifier notify(clock);
  notify.ready(listeningStatus(server, opts.tls != nullptr));
  // After the listeners: the CA validates HTTP-01 on -http-port.
  if (tlsSetup.acme) tlsSetup.acme->start();
  std::optional<relay::PeriodicStats> stats;
  if (cfg.statsInterval > 0) stats.emplace(server.counters(), cfg.statsInterval, clock.now());

  // The main thread waits for signals and certificate changes, and logs the
  // periodic stats line. A change is acted on once the directory has been
  // quiet for a moment, so a renewal that writes the .crt and the .key one
  // after the other is read whole.
  const int watchFd = tlsSetup.manual ? tlsSetup.manual->fd() : -1;
  bool reloadPending = false;
  bool draining = false;
  Nanos drainStart = 0;
  for (;;) {
    pollfd fds[2] = {{sigFd.get(), POLLIN, 0}, {watchFd, POLLIN, 0}};
    const int wantedMs = reloadPending ? 300 : (draining ? 50 : -1);
    int statsMs = stats ? stats->msUntilDue(clock.now()) : -1;
    const int timeoutMs = notify.pollTimeoutMs(
        statsMs >= 0 && (wantedMs < 0 || statsMs < wantedMs) ? statsMs : wantedMs);
    int n = ::poll(fds, watchFd >= 0 ? 2 : 1, timeoutMs);
    if (n < 0 && errno != EINTR) break;
    notify.keepAlive();
    if (stats) {
      if (std::optional<std::string> line = stats->lineIfDue(clock.now())) logInfo("%s", *line);
    }
    if (draining && server.finished()) {
      logDrainEnd(server.counters(), clock.now() - drainStart, cfg.drainTimeout);
      break;
    }
    // A wake-up for the watchdog is not the end of the quiet period.
    if (n == 0 && reloadPending && timeoutMs == wantedMs) {
      reloadPending = false;
      reloadCertificates(tlsSetup, "certificate files changed");
      continue;
    }
    if (n > 0 && watchFd >= 0 && (fds[1].revents & POLLIN)) {
      if (tlsSetup.manual->onWatchEvent()) reloadPending = true;
    }
    if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo info{};
    if (::read(sigFd.get(), &info, sizeof(info)) != sizeof(info)) continue;
    int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGHUP) {
      notify.reloading();
      reloadCertificates(tlsSetup, "SIGHUP");
      if (opts.rateLimit != nullptr) {
        absl::StatusOr<relay::RateConfig> rc = relay::loadRateConfig(cfg.rateConfig);
        if (rc.ok()) {
          applyRateConfig(rateLimit, *rc);
        } else {
          logError("SIGHUP: -rate-config not reloaded, keeping the current limit: %s",
                   rc.status().message());
        }
      }
      notify.reloaded();
      continue;
    }
    if (draining) {
      logInfo("second signal: closing connections now");
      logDrainEnd(server.counters(), clock.now() - drainStart, -1);
      break;
    }
    if (sig == SIGINT) {
      logInfo("SIGINT: closing connections and stopping");
      break;
    }
    // SIGTERM is how systemd and Kubernetes restart a service: tell clients to
    // come back shortly and let them leave on their own, within the drain time.
    logInfo("SIGTERM: sending Restarting to every client; draining for up to %.1fs (a second "
            "signal stops at once)", static_cast<double>(cfg.drainTimeout) / kSecond);
    notify.stopping("draining: clients were sent Restarting");
    server.requestDrain(cfg.drainTimeout);
    draining = true;
    drainStart = clock.now();
  }
  notify.stopping("stopping: closing connections");
  if (verifier) verifier->stop();  // before the shards it posts to are gone
  server.stop();
  if (stats) logInfo("%s", stats->lineNow(clock.now()));
  logInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    const std::string_view entry(*e);
    if (entry.substr(0, 5) == "DERP_" || entry.substr(0, 5) == "HOME=" ||
        entry.substr(0, 26) == "TAILSCALE_DERPER_MESH_KEY=") {
      env.emplace_back(entry);
    }
  }
  auto parsed = derpd::parseCommandLine(args, env);
  if (!parsed.ok()) {
    derpd::logError("%s (derpd -help lists the flags)", parsed.status().message());
    return kExitUsage;
  }
  derpd::setLogFormat(parsed->config.logFormat);
  if (parsed->action == derpd::CommandLineAction::kRun ||
      parsed->action == derpd::CommandLineAction::kCheck) {
    if (absl::Status st = derpd::checkServable(parsed->config); !st.ok()) {
      derpd::logError("%s", st.message());
      return kExitUsage;
    }
  }
  derpd::relay::raiseOpenFileLimit();
  switch (parsed->action) {
    case derpd::CommandLineAction::kHelp:
      std::fputs(derpd::usageText().c_str(), stdout);
      return 0;
    case derpd::CommandLineAction::kVersion:
      std::printf("derpd %s\n", DERPD_VERSION);
      return 0;
    case derpd::CommandLineAction::kCheck:
      std::printf("derpd: configuration ok:\n%s", derpd::describeConfig(parsed->config).c_str());
      return 0;
    case derpd::CommandLineAction::kRun:
      break;
  }
  if (!parsed->environment.empty()) {
    derpd::logInfo("settings from the environment: %s", absl::StrJoin(parsed->environment, ", "));
  }
  return runServer(parsed->config);
}
