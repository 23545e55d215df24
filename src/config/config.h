// Config: every setting derpd runs with, and the derper-compatible command
// line that fills it.
#pragma once

#include <cstdint>
#include <optional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "base/ip_prefix.h"
#include "base/log.h"

namespace derpd {

// derper's default -hostname (Tailscale's own relay).
inline constexpr absl::string_view kDerperHostname = "derp.tailscale.com";

struct Config {
  std::string addr = ":443";                       // -a
  std::string keyFile = "/var/lib/derper/derper.key";  // -c
  int httpPort = 80;                               // -http-port (-1 disables)
  int stunPort = 3478;                             // -stun-port
  bool stun = true;                                // -stun
  bool derp = true;                                // -derp
  bool dev = false;                                // -dev
  std::string certMode = "letsencrypt";            // -certmode
  std::string certDir;                             // -certdir
  std::string hostname = std::string(kDerperHostname);  // -hostname
  // ACME (-certmode letsencrypt or gcp). acmeDirectory "" means the mode's
  // CA: Let's Encrypt's production directory, or Google's for gcp.
  std::string acmeDirectory;                       // --acme-directory
  std::string acmeEmail;                           // -acme-email
  std::string acmeEabKid;                          // -acme-eab-kid
  std::string acmeEabKey;                          // -acme-eab-key (base64url)
  bool requireSni = false;                         // --require-sni
  int shards = 0;                                  // --shards (0: one per CPU)
  Nanos tcpWriteTimeout = 2 * kSecond;             // -tcp-write-timeout
  Nanos tcpKeepAliveTime = 600 * kSecond;          // -tcp-keepalive-time
  Nanos tcpUserTimeout = 15 * kSecond;             // -tcp-user-timeout
  Nanos drainTimeout = 10 * kSecond;               // --drain-timeout
  // -home: "" the default page, "blank" an empty page, or an http(s) URL that
  // / redirects to.
  std::string home;
  std::vector<std::string> bootstrapDnsNames;             // -bootstrap-dns-names
  std::vector<std::string> unpublishedBootstrapDnsNames;  // -unpublished-bootstrap-dns-names
  // --metrics-addr: a host:port serving /metrics and /debug/ over plain HTTP
  // ("" = off). Whatever the listener, only loopback, tailnet and
  // --metrics-allow peers are answered.
  std::string metricsAddr;
  // --metrics-allow: more peers than loopback and the tailnet's ranges that
  // may read /metrics and /debug/ (a Prometheus on the pod network).
  std::vector<IpPrefix> metricsAllow;
  // Who may connect.
  bool verifyClients = false;           // -verify-clients
  std::string socket;                   // -socket ("": tailscaled's default)
  std::string verifyClientUrl;          // -verify-client-url
  bool verifyClientUrlFailOpen = true;  // -verify-client-url-fail-open
  // Admission limits.
  std::string rateConfig;  // -rate-config: derper's RateConfig JSON ("": no limit)
  double acceptConnectionLimit =
      std::numeric_limits<double>::infinity();                          // -accept-connection-limit
  int64_t acceptConnectionBurst = std::numeric_limits<int64_t>::max();  // -accept-connection-burst
  int maxConnsPerIp = 1024;          // --max-conns-per-ip (0: no cap)
  int maxHandshakesPerShard = 4096;  // --max-handshakes-per-shard (0: no cap)
  // Regional mesh. -mesh-with: the items of the comma-separated list, trimmed,
  // empty ones dropped, each accepted by parseMeshEntry. Given together with
  // -mesh-psk-file or not at all.
  std::vector<std::string> meshWith;
  std::string meshPskFile;    // -mesh-psk-file: read at startup (relay::loadMeshKey)
  // Not set at all: derper's default, the first of /home/derp/keys/derp-mesh.key
  // and $HOME/keys/derp-mesh.key that exists (parseCommandLine fills it in).
  bool meshPskFileGiven = false;
  std::string devMeshKey;     // -dev: $TAILSCALE_DERPER_MESH_KEY (derper's), instead of the file
  bool meshInsecure = false;  // --mesh-insecure
  std::string meshCa = "/etc/ssl/certs/ca-certificates.crt";  // --mesh-ca
  Nanos meshResolveInterval = 30 * kSecond;                   // --mesh-resolve-interval
  int meshWatcherQueueKb = 64 * 1024;                         // --mesh-watcher-queue-kb
  int packetMemoryMb = 256;                                   // --packet-memory-mb
  Nanos batchWait = 0;                                        // --batch-wait
  LogFormat logFormat = LogFormat::kText;  // --log-format
  Nanos statsInterval = 60 * kSecond;      // --stats-interval (0: no stats lines)
  // --config: the TOML file read before the environment and the flags ("": none).
  std::string configFile;

  bool operator==(const Config&) const = default;
};

// kCheck (--check-config): parse everything as for a run, then print the
// settings instead of starting (for CI of deployment manifests).
enum class CommandLineAction { kRun, kHelp, kVersion, kCheck };

struct ParsedCommandLine {
  CommandLineAction action = CommandLineAction::kRun;
  Config config;
  // The DERP_* variables that set something, as "NAME=value" (secrets as
  // "NAME=(set)"), for the startup log.
  std::vector<std::string> environment;
};

// Go flag syntax: -name value, -name=value, --name value, --name=value;
// booleans take no value or =true/=false. Errors name the flag: unknown
// flags, bad values, and derper flags whose feature derpd does not have yet.
//
// env: the process environment ("NAME=value" entries). The DERP_* variables of
// the popular derper container images set the same settings as their flags;
// a flag on the command line wins. Errors name the variable.
//
// --config FILE (command line only) reads a TOML file whose keys are the flag
// names, applied through the same validation. Precedence: command line >
// environment > file > defaults. Errors name the file, the line and the key:
// unreadable file, malformed TOML, unknown key, wrong type, bad value.
absl::StatusOr<ParsedCommandLine> parseCommandLine(const std::vector<std::string>& args,
                                                   const std::vector<std::string>& env = {});

// The settings an operator checks first, one "  -flag value" line each
// (--check-config prints them).
std::string describeConfig(const Config& config);

// One -mesh-with item, parsed: host, host:port, [v6]:port, a bare IPv6
// address, or http://host[:port] / https://host[:port] with an optional /derp
// path. Here rather than in relay/ because the flag parser checks each item;
// relay/mesh_targets.h re-exports it.
struct MeshEntry {
  std::string text;         // as given (trimmed), for logs and metric labels
  std::string host;         // name (lowercased) or IP literal, without brackets
  uint16_t port = 0;        // 0: not given
  std::optional<bool> tls;  // from an explicit http:// or https://; nullopt: bare
  // derper's "host/dialhost": where to connect instead of host ("": host).
  std::string dialHost;

  bool operator==(const MeshEntry&) const = default;
};

// Errors quote the item and say what is wrong with it.
absl::StatusOr<MeshEntry> parseMeshEntry(std::string_view item);

// Settings that parse but cannot serve anyone, checked before derpd runs (and
// by -check-config): Let's Encrypt for derper's default -hostname, which is
// what a fresh install with every setting still commented out would try.
absl::Status checkServable(const Config& config);

// The --help text, grouped.
std::string usageText();

// One flag as --help and README.md describe it.
struct FlagInfo {
  std::string name;         // without the leading "-"
  std::string group;        // the --help heading it is listed under
  std::string type;         // Go's type word: "string", "int", "duration"; "" for booleans
  std::string defaultText;  // Go syntax ("2s", "true", ":443"); "" when empty
  std::string help;
  // false: a derper flag derpd recognises but refuses, its feature not built yet.
  bool built = true;
};

// Every flag parseCommandLine knows, in --help order (groups contiguous), for
// the documentation and the test that keeps README.md's flag table in step.
std::vector<FlagInfo> flagTable();

}  // namespace derpd
