// derpd: wiring. Parses the derper-compatible command line, loads the key,
// starts the shards and waits for SIGINT/SIGTERM.
#include <signal.h>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/log.h"
#include "config/config.h"
#include "derp/key_file.h"
#include "derpd_config.h"
#include "net/socket_address.h"
#include "relay/server.h"

namespace {

constexpr int kExitUsage = 2;

int runServer(const derpd::Config& cfg) {
  using namespace derpd;
  std::string addrText = cfg.dev ? "127.0.0.1:3340" : cfg.addr;
  auto addr = net::parseListenAddress(addrText);
  if (!addr.ok()) {
    logError("flag -a: %s", addr.status().message());
    return kExitUsage;
  }
  // derper serves TLS when the port is 443 (or -certmode manual): not built yet.
  if (!cfg.dev && addr->port() == 443) {
    logError(
        "flag -a: port 443 means TLS in derper, and this derpd build serves plain HTTP only; "
        "use another port (e.g. -a :3340)");
    return kExitUsage;
  }
  auto key = derp::loadOrCreateKeyFile(cfg.keyFile);
  if (!key.ok()) {
    logError("key file: %s", key.status().message());
    return 1;
  }

  // Shard threads inherit this mask: signals are taken only by sigwait below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  relay::Server::Options opts;
  opts.relay.serverKey = *key;
  opts.relay.writeTimeout = cfg.tcpWriteTimeout;
  opts.relay.tcp.keepAliveSeconds = static_cast<int>(cfg.tcpKeepAliveTime / kSecond);
  opts.relay.tcp.userTimeoutMs = static_cast<int>(cfg.tcpUserTimeout / kMillisecond);
  opts.listen = *addr;
  opts.shards = static_cast<size_t>(cfg.shards);
  if (cfg.stun) {
    // STUN listens on the IP of -a (both families when that is a wildcard).
    net::SocketAddress stunAddr = *addr;
    stunAddr.setPort(static_cast<uint16_t>(cfg.stunPort));
    opts.stunListen = stunAddr;
  }
  relay::Server server(opts);
  if (absl::Status st = server.start(); !st.ok()) {
    logError("start: %s", st.message());
    return 1;
  }
  logInfo("derpd %s: public key %s", DERPD_VERSION, server.publicKey().toString());
  // STUN first: the HTTP line is what scripts wait for, so all is up by then.
  if (server.stunAddress()) {
    logInfo("derpd %s: STUN listening on udp://%s", DERPD_VERSION,
            server.stunAddress()->toString());
  }
  logInfo("derpd %s: %d shards; listening on http://%s", DERPD_VERSION, server.shardCount(),
          server.boundAddress().toString());

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      logInfo("SIGHUP: nothing to reload in this build");
      continue;
    }
    if (sig == SIGINT) {
      logInfo("SIGINT: closing connections and stopping");
      break;
    }
    // SIGTERM is how systemd and Kubernetes restart a service: tell clients to
    // come back shortly and let them leave on their own, within the drain time.
    logInfo("SIGTERM: sending Restarting to every client; draining for up to %.1fs (a second "
            "signal stops at once)", static_cast<double>(cfg.drainTimeout) / kSecond);
    server.requestDrain(cfg.drainTimeout);
    while (!server.finished()) {
      timespec tick{0, 50 * 1000 * 1000};
      int again = sigtimedwait(&sigs, nullptr, &tick);
      if (again == SIGINT || again == SIGTERM) {
        logInfo("second signal: closing connections now");
        break;
      }
    }
    break;
  }
  server.stop();
  logInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    if (std::string_view(*e).substr(0, 5) == "DERP_") env.emplace_back(*e);
  }
  auto parsed = derpd::parseCommandLine(args, env);
  if (!parsed.ok()) {
    std::fprintf(stderr, "derpd: %s\nRun derpd -help for the flags.\n",
                 std::string(parsed.status().message()).c_str());
    return kExitUsage;
  }
  switch (parsed->action) {
    case derpd::CommandLineAction::kHelp:
      std::fputs(derpd::usageText().c_str(), stdout);
      return 0;
    case derpd::CommandLineAction::kVersion:
      std::printf("derpd %s\n", DERPD_VERSION);
      return 0;
    case derpd::CommandLineAction::kRun:
      break;
  }
  return runServer(parsed->config);
}
