#include "config/config.h"

#include <arpa/inet.h>

#include <charconv>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "config/config_file.h"
#include "config/duration.h"
#include "config/derper_compat.h"
#include "config/names.h"
#include "net/socket_address.h"

namespace derpd {
namespace {

enum class Kind { kString, kBool, kInt, kFloat, kDuration };

struct FlagSpec {
  absl::string_view name;
  Kind kind;
  absl::string_view group;
  // The default as --help and README.md show it, in Go flag syntax ("" when
  // empty). Config's initialisers are the real defaults; a test checks that
  // giving this text changes nothing.
  absl::string_view defaultText;
  absl::string_view help;
  // Applies the (validated) text; returns an error message or "".
  std::function<std::string(Config&, absl::string_view)> apply;
};

std::string setInt(int& out, absl::string_view v, int lo, int hi) {
  int n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < lo || n > hi) {
    return absl::StrCat("want an integer from ", lo, " to ", hi);
  }
  out = n;
  return "";
}

std::string setInt64(int64_t& out, absl::string_view v, int64_t lo) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < lo) {
    return absl::StrCat("want an integer from ", lo, " to 9223372036854775807");
  }
  out = n;
  return "";
}

// Go's strconv.ParseFloat forms derper's float flags take: "10", "0.5",
// "1e3", "+Inf"; here positive only.
std::string setRate(double& out, absl::string_view v) {
  absl::string_view t = v;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  double d = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || !(d > 0)) {
    return "want a positive number per second, or +Inf for no limit";
  }
  out = d;
  return "";
}

std::string setDuration(Nanos& out, absl::string_view v) {
  auto d = parseGoDuration(std::string_view(v.data(), v.size()));
  if (!d || *d < 0) return "want a Go duration such as 2s, 500ms or 10m";
  out = *d;
  return "";
}

// derper's -home values: "", "blank", or an http(s) URL. The URL goes into a
// Location header, so it may hold no spaces or control characters.
std::string setHome(std::string& out, absl::string_view v) {
  const bool url = v.substr(0, 7) == "http://" || v.substr(0, 8) == "https://";
  if (!v.empty() && v != "blank" && !url) {
    return "want empty (default page), blank, or an http:// or https:// URL";
  }
  for (char ch : v) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
      return "the URL may not contain spaces or control characters";
    }
  }
  out = std::string(v);
  return "";
}

// A comma-separated list of host names (empty entries skipped). derper's
// name/txt-record rollout syntax needs TXT lookups derpd does not make.
std::string setNameList(std::vector<std::string>& out, absl::string_view v) {
  std::vector<std::string> names;
  while (!v.empty()) {
    const size_t comma = v.find(',');
    absl::string_view name = v.substr(0, comma);
    v = comma == absl::string_view::npos ? absl::string_view() : v.substr(comma + 1);
    if (name.empty()) continue;
    for (char ch : name) {
      if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
        return "want comma-separated host names";
      }
    }
    // derper's "name/txtname" (the rollout share comes from txtname's TXT
    // record): exactly one slash with a name on each side.
    if (const size_t slash = name.find('/'); slash != absl::string_view::npos) {
      if (slash == 0 || slash + 1 == name.size() ||
          name.find('/', slash + 1) != absl::string_view::npos) {
        return absl::StrCat("\"", name, "\": want name or name/txtname");
      }
    }
    names.emplace_back(name);
  }
  out = std::move(names);
  return "";
}

// -mesh-with: a comma-separated list (empty items skipped), each item checked
// here so that a typo stops startup rather than a mesh link.
std::string setMeshWith(std::vector<std::string>& out, absl::string_view v) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(v, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) continue;
    absl::StatusOr<MeshEntry> entry = parseMeshEntry(std::string_view(item.data(), item.size()));
    if (!entry.ok()) return std::string(entry.status().message());
    items.push_back(std::move(entry->text));
  }
  out = std::move(items);
  return "";
}

const std::vector<FlagSpec>& flagSpecs() {
  static const std::vector<FlagSpec> specs = {
      {"a", Kind::kString, "listening", ":443",
       "server HTTP/HTTPS listen address, host:port or :port; HTTPS when the port is 443 or "
       "-certmode is manual, otherwise HTTP",
       [](Config& c, absl::string_view v) {
         if (absl::StatusOr<net::SocketAddress> a = net::parseListenAddress(v); !a.ok()) {
           return std::string(a.status().message());
         }
         c.addr = std::string(v);
         return std::string();
       }},
      {"http-port", Kind::kInt, "listening", "80",
       "port for the plain-HTTP listener when serving TLS; -1 disables it",
       [](Config& c, absl::string_view v) { return setInt(c.httpPort, v, -1, 65535); }},
      {"dev", Kind::kBool, "listening", "false",
       "development mode: TLS (self-signed, made at start) on 127.0.0.1:3340, STUN on; unlike "
       "derper's -dev (plain HTTP on :3340, every interface), it stays on loopback and speaks "
       "TLS as production does",
       [](Config& c, absl::string_view v) {
         c.dev = v == "true";
         return std::string();
       }},
      {"shards", Kind::kInt, "listening", "0",
       "number of shards (0: one per CPU in the affinity mask, or fewer under a cgroup CPU quota)",
       [](Config& c, absl::string_view v) { return setInt(c.shards, v, 0, 1024); }},
      {"c", Kind::kString, "identity", "/var/lib/derper/derper.key",
       "config (private key) file path; created if missing",
       [](Config& c, absl::string_view v) {
         if (v.empty()) return std::string("want a file path");
         c.keyFile = std::string(v);
         return std::string();
       }},
      {"certmode", Kind::kString, "tls", "letsencrypt",
       "mode for getting a cert. possible options: manual, letsencrypt, gcp (letsencrypt and gcp "
       "obtain and renew certificates over ACME, keeping them in -certdir as derper does)",
       [](Config& c, absl::string_view v) {
         if (v != "letsencrypt" && v != "manual" && v != "gcp") {
           return std::string("want manual, letsencrypt or gcp");
         }
         c.certMode = std::string(v);
         return std::string();
       }},
      {"acme-directory", Kind::kString, "tls", "",
       "ACME directory URL (default: Let's Encrypt's, or Google's with -certmode gcp); for "
       "staging or a private CA. Its HTTPS certificate is checked against the system's CAs, or "
       "SSL_CERT_FILE / SSL_CERT_DIR",
       [](Config& c, absl::string_view v) {
         if (!v.empty() && !absl::StartsWith(v, "https://") && !absl::StartsWith(v, "http://")) {
           return std::string("want an https:// URL");
         }
         c.acmeDirectory = std::string(v);
         return std::string();
       }},
      {"acme-email", Kind::kString, "tls", "",
       "email address for the ACME account (the CA's expiry notices); required with -certmode gcp",
       [](Config& c, absl::string_view v) {
         if (!v.empty() && (v.find('@') == absl::string_view::npos ||
                            v.find_first_of(" \t\r\n,<>") != absl::string_view::npos)) {
           return std::string("want an email address");
         }
         c.acmeEmail = std::string(v);
         return std::string();
       }},
      {"acme-eab-kid", Kind::kString, "tls", "",
       "ACME External Account Binding (EAB) key ID (required for -certmode gcp)",
       [](Config& c, absl::string_view v) {
         c.acmeEabKid = std::string(v);
         return std::string();
       }},
      {"acme-eab-key", Kind::kString, "tls", "",
       "ACME External Account Binding (EAB) HMAC key, base64url-encoded (required for -certmode "
       "gcp)",
       [](Config& c, absl::string_view v) {
         c.acmeEabKey = std::string(v);
         return std::string();
       }},
      {"certdir", Kind::kString, "tls", "~/.cache/tailscale/derper-certs",
       "directory of <hostname>.crt and <hostname>.key (manual), or derper's letsencrypt cache",
       [](Config& c, absl::string_view v) {
         c.certDir = std::string(v);
         return std::string();
       }},
      {"hostname", Kind::kString, "tls", kDerperHostname,
       "TLS host name; an IP address gets a self-signed certificate; a comma-separated list "
       "serves one certificate per name, chosen by SNI (the first is the default)",
       [](Config& c, absl::string_view v) {
         if (v.empty()) return std::string("want a host name or IP address");
         c.hostname = std::string(v);
         return std::string();
       }},
      {"require-sni", Kind::kBool, "tls", "false",
       "refuse TLS handshakes without SNI or with a name -hostname does not serve (as "
       "derper does); not with an IP -hostname, which clients cannot send as SNI",
       [](Config& c, absl::string_view v) {
         c.requireSni = v == "true";
         return std::string();
       }},
      {"stun", Kind::kBool, "stun", "true", "run a STUN server (UDP, on the IP of -a)",
       [](Config& c, absl::string_view v) {
         c.stun = v == "true";
         return std::string();
       }},
      {"stun-port", Kind::kInt, "stun", "3478", "UDP port for STUN (0 picks a free one)",
       [](Config& c, absl::string_view v) { return setInt(c.stunPort, v, 0, 65535); }},
      {"derp", Kind::kBool, "derp", "true",
       "run the DERP server; -derp=false serves STUN only (/derp answers 404; the other "
       "HTTP endpoints stay)",
       [](Config& c, absl::string_view v) {
         c.derp = v == "true";
         return std::string();
       }},
      {"verify-clients", Kind::kBool, "who may connect", "false",
       "admit only clients the local tailscaled knows (asks its LocalAPI WhoIs for the node "
       "key over -socket); fail closed",
       [](Config& c, absl::string_view v) {
         c.verifyClients = v == "true";
         return std::string();
       }},
      {"socket", Kind::kString, "who may connect", "",
       "tailscaled's LocalAPI socket for -verify-clients (empty: "
       "/var/run/tailscale/tailscaled.sock)",
       [](Config& c, absl::string_view v) {
         c.socket = std::string(v);
         return std::string();
       }},
      {"verify-client-url", Kind::kString, "who may connect", "",
       "admission URL: each client's node key and address are POSTed to it and it answers "
       "{\"Allow\": true} to admit; answers cached briefly",
       [](Config& c, absl::string_view v) {
         if (!v.empty() && v.substr(0, 7) != "http://" && v.substr(0, 8) != "https://") {
           return std::string("want an http:// or https:// URL");
         }
         c.verifyClientUrl = std::string(v);
         return std::string();
       }},
      {"verify-client-url-fail-open", Kind::kBool, "who may connect", "true",
       "admit clients when -verify-client-url cannot be reached (no answer at all; a bad "
       "answer always rejects)",
       [](Config& c, absl::string_view v) {
         c.verifyClientUrlFailOpen = v == "true";
         return std::string();
       }},
      {"rate-config", Kind::kString, "limits", "",
       "JSON file of derper's per-client receive limit ({\"PerClientRateLimitBytesPerSec\": N, "
       "\"PerClientRateBurstBytes\": N}); reloaded on SIGHUP; mesh peers are exempt",
       [](Config& c, absl::string_view v) {
         c.rateConfig = std::string(v);
         return std::string();
       }},
      {"accept-connection-limit", Kind::kFloat, "limits", "+Inf",
       "TCP connections accepted per second on the main listener, all clients together; over "
       "it a connection is closed at once (counted)",
       [](Config& c, absl::string_view v) { return setRate(c.acceptConnectionLimit, v); }},
      {"accept-connection-burst", Kind::kInt, "limits", "9223372036854775807",
       "how many accepts -accept-connection-limit lets through at once",
       [](Config& c, absl::string_view v) { return setInt64(c.acceptConnectionBurst, v, 1); }},
      {"max-conns-per-ip", Kind::kInt, "limits", "1024",
       "open connections one source address may hold; more are closed at once (counted); 0: "
       "no cap (raise it when many nodes share an address, or behind a local proxy)",
       [](Config& c, absl::string_view v) { return setInt(c.maxConnsPerIp, v, 0, 1 << 30); }},
      {"max-handshakes-per-shard", Kind::kInt, "limits", "4096",
       "connections each shard holds before they finish their handshake (HTTP and DERP); "
       "more are closed at once (counted); 0: no cap",
       [](Config& c, absl::string_view v) {
         return setInt(c.maxHandshakesPerShard, v, 0, 1 << 30);
       }},
      {"mesh-with", Kind::kString, "mesh", "",
       "comma-separated DERP servers of this region to mesh with: host, host:port, [v6]:port "
       "or http(s)://host[:port]; a bare host uses this server's own scheme and port; this "
       "server's -hostname may be listed (it is skipped); names are re-resolved, each address "
       "a peer. Needs -mesh-psk-file",
       [](Config& c, absl::string_view v) { return setMeshWith(c.meshWith, v); }},
      {"mesh-psk-file", Kind::kString, "mesh", "",
       "file holding the region's mesh pre-shared key (64 hex characters; whitespace "
       "trimmed). Without -mesh-with the server accepts mesh peers but dials none",
       [](Config& c, absl::string_view v) {
         c.meshPskFile = std::string(v);
         c.meshPskFileGiven = true;
         return std::string();
       }},
      {"mesh-insecure", Kind::kBool, "mesh", "false",
       "accept any certificate from mesh peers (tests only)",
       [](Config& c, absl::string_view v) {
         c.meshInsecure = v == "true";
         return std::string();
       }},
      {"mesh-ca", Kind::kString, "mesh", "/etc/ssl/certs/ca-certificates.crt",
       "PEM bundle the mesh peers' certificates are verified against",
       [](Config& c, absl::string_view v) {
         if (v.empty()) return std::string("want a file path");
         c.meshCa = std::string(v);
         return std::string();
       }},
      {"mesh-resolve-interval", Kind::kDuration, "mesh", "30s",
       "how often the -mesh-with names are resolved again (at least 1s)",
       [](Config& c, absl::string_view v) {
         Nanos d = 0;
         if (std::string err = setDuration(d, v); !err.empty()) return err;
         if (d < kSecond) return std::string("want at least 1s");
         c.meshResolveInterval = d;
         return std::string();
       }},
      {"mesh-watcher-queue-kb", Kind::kInt, "mesh", "65536",
       "KiB of PeerPresent/PeerGone frames (about 18 per KiB) a mesh peer watching this "
       "server may fall behind by before it is disconnected to resync (16 to 1048576)",
       [](Config& c, absl::string_view v) { return setInt(c.meshWatcherQueueKb, v, 16, 1 << 20); }},
      {"batch-wait", Kind::kDuration, "tcp", "0s",
       "how long a shard about to sleep lets completions gather before it handles them, "
       "when they arrive that soon (io_uring min_wait, Linux 6.13; 0 or an older kernel: off). "
       "Fewer wake-ups per packet under sparse load; adds at most this to latency",
       [](Config& c, absl::string_view v) {
         if (std::string err = setDuration(c.batchWait, v); !err.empty()) return err;
         if (c.batchWait > kMillisecond) return std::string("at most 1ms");
         return std::string();
       }},
      {"packet-memory-mb", Kind::kInt, "tcp", "256",
       "MiB of packet buffers each shard may hold: packets queued for slow receivers, frames "
       "being read, TLS records being written (4 to 65536). Past it new packets are dropped "
       "(derpd_packets_dropped_total{reason=\"no_memory\"}) while handshakes and control "
       "frames draw on a small reserve; derpd's own (derper has no cap)",
       [](Config& c, absl::string_view v) { return setInt(c.packetMemoryMb, v, 4, 65536); }},
      {"tcp-write-timeout", Kind::kDuration, "tcp", "2s",
       "time a write to a client may take before it is disconnected (0: no limit)",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpWriteTimeout, v); }},
      {"tcp-keepalive-time", Kind::kDuration, "tcp", "10m", "TCP keep-alive idle time (0 disables)",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpKeepAliveTime, v); }},
      {"tcp-user-timeout", Kind::kDuration, "tcp", "15s", "TCP_USER_TIMEOUT (0 keeps the kernel's)",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpUserTimeout, v); }},
      {"drain-timeout", Kind::kDuration, "lifecycle", "10s",
       "on SIGTERM: how long clients told Restarting may stay before they are closed",
       [](Config& c, absl::string_view v) { return setDuration(c.drainTimeout, v); }},
      {"home", Kind::kString, "http", "",
       "what / serves: empty for the default page, \"blank\" for a blank page, or an "
       "http(s) URL to redirect to",
       [](Config& c, absl::string_view v) { return setHome(c.home, v); }},
      {"bootstrap-dns-names", Kind::kString, "http", "",
       "comma-separated host names whose addresses /bootstrap-dns serves (resolved in the "
       "background every 5 minutes; a /txtname suffix is accepted, as derper does, and unused)",
       [](Config& c, absl::string_view v) { return setNameList(c.bootstrapDnsNames, v); }},
      {"unpublished-bootstrap-dns-names", Kind::kString, "http", "",
       "comma-separated host names /bootstrap-dns answers only when asked for by ?q=<name>; "
       "name/txtname gives the name to the share of clients (0-100 percent, chosen by client "
       "address as derper does) that txtname's TXT record says",
       [](Config& c, absl::string_view v) {
         return setNameList(c.unpublishedBootstrapDnsNames, v);
       }},
      {"metrics-addr", Kind::kString, "http", "",
       "host:port for a plain-HTTP listener serving /metrics and /debug/ (empty: off); "
       "answers loopback, tailnet and --metrics-allow peers only",
       [](Config& c, absl::string_view v) {
         if (absl::StatusOr<net::SocketAddress> a = net::parseListenAddress(v);
             !v.empty() && !a.ok()) {
           return std::string(a.status().message());
         }
         c.metricsAddr = std::string(v);
         return std::string();
       }},
      {"metrics-allow", Kind::kString, "http", "",
       "comma-separated address prefixes (10.0.0.0/8,fd00::/8) that may read /metrics and "
       "/debug/ besides loopback and the tailnet (100.64.0.0/10, fd7a:115c:a1e0::/48)",
       [](Config& c, absl::string_view v) {
         absl::StatusOr<std::vector<IpPrefix>> list = parseIpPrefixList(v);
         if (!list.ok()) return std::string(list.status().message());
         c.metricsAllow = std::move(*list);
         return std::string();
       }},
      {"log-format", Kind::kString, "logging", "text",
       "log line format: text, or json (one object per line: time, level, msg)",
       [](Config& c, absl::string_view v) {
         if (v == "text") {
           c.logFormat = LogFormat::kText;
         } else if (v == "json") {
           c.logFormat = LogFormat::kJson;
         } else {
           return std::string("want text or json");
         }
         return std::string();
       }},
      {"stats-interval", Kind::kDuration, "logging", "60s",
       "how often to log a stats line (connections, packets, bytes, closes by reason since "
       "the last line); 0 disables",
       [](Config& c, absl::string_view v) { return setDuration(c.statsInterval, v); }},
      // Read before everything else, so it is handled by parseCommandLine, not here.
      {"config", Kind::kString, "config file", "",
       "TOML file of settings keyed by flag name (a = \":443\", stun-port = 3478, "
       "dev = true); DERP_* variables and flags override it. Command line only",
       [](Config& c, absl::string_view v) {
         c.configFile = std::string(v);
         return std::string();
       }},
  };
  return specs;
}

// The type word Go's flag package prints after a flag's name in -help.
absl::string_view typeName(Kind kind) {
  switch (kind) {
    case Kind::kBool:
      return "";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kDuration:
      return "duration";
    case Kind::kString:
      return "string";
  }
  return "";
}

bool isBoolText(absl::string_view v) { return v == "true" || v == "false"; }

std::string normalizeBool(absl::string_view v) {
  if (v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True" || v == "true") return "true";
  if (v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "False" || v == "false") {
    return "false";
  }
  return std::string(v);
}

// The DERP_* variables of the popular derper container images and the flag
// each one stands for.
struct EnvFlag {
  absl::string_view var;
  absl::string_view flag;
};
constexpr EnvFlag kEnvFlags[] = {
    {"DERP_DOMAIN", "hostname"},
    {"DERP_HOSTNAME", "hostname"},
    {"DERP_CERT_MODE", "certmode"},
    {"DERP_CERTMODE", "certmode"},
    {"DERP_CERT_DIR", "certdir"},
    {"DERP_ADDR", "a"},
    {"DERP_HTTP_PORT", "http-port"},
    {"DERP_STUN", "stun"},
    {"DERP_STUN_PORT", "stun-port"},
    {"DERP_VERIFY_CLIENTS", "verify-clients"},
    {"DERP_VERIFY_CLIENT_URL", "verify-client-url"},
    {"DERP_MESH_WITH", "mesh-with"},
    {"DERP_MESH_PSK_FILE", "mesh-psk-file"},
    {"DERP_ACME_EMAIL", "acme-email"},
    {"DERP_ACME_EAB_KID", "acme-eab-kid"},
    {"DERP_ACME_EAB_KEY", "acme-eab-key"},
};

// A flag from a command line: a known, built flag with its value text
// (booleans normalised to true/false), not yet validated or applied.
struct FlagValue {
  const FlagSpec* spec;
  std::string value;
};

absl::Status scanFlags(const std::vector<std::string>& args, CommandLineAction& action,
                       std::vector<FlagValue>& flags);
absl::Status applyFlagValues(const std::vector<FlagValue>& flags, Config& config);
absl::Status applyFlags(const std::vector<std::string>& args, ParsedCommandLine& out);
absl::Status applyConfigFile(const std::string& path, Config& config);

// Checks between settings, once every source has been applied.
absl::Status checkCombinations(const Config& config) {
  if (!config.derp && !config.stun) {
    return absl::InvalidArgumentError(
        "-derp=false and -stun=false leave nothing to serve; keep one of them on");
  }
  // Peers prove they belong to the region with the key. A key alone is
  // derper's accepting-only node: peers may mesh with it, it dials none.
  if (!config.meshWith.empty() && config.meshPskFile.empty() && config.devMeshKey.empty()) {
    return absl::InvalidArgumentError(
        "-mesh-with needs -mesh-psk-file (the region's shared mesh key)");
  }
  if (config.acmeEabKid.empty() != config.acmeEabKey.empty()) {
    return absl::InvalidArgumentError(
        "-acme-eab-kid and -acme-eab-key go together (the CA gives both)");
  }
  if (config.certMode == "gcp" && (config.acmeEabKid.empty() || config.acmeEmail.empty())) {
    return absl::InvalidArgumentError(
        "-certmode gcp needs -acme-eab-kid, -acme-eab-key and -acme-email (Google's CA "
        "requires external account binding: gcloud publicca external-account-keys create)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedCommandLine> parseCommandLine(const std::vector<std::string>& args,
                                                   const std::vector<std::string>& env) {
  ParsedCommandLine out;
  std::vector<FlagValue> flags;
  if (absl::Status st = scanFlags(args, out.action, flags); !st.ok()) return st;
  if (out.action == CommandLineAction::kHelp || out.action == CommandLineAction::kVersion) {
    return out;
  }
  // Lowest precedence first: the config file, the environment, then the
  // command line, each overriding what came before.
  std::string configPath;
  for (const FlagValue& f : flags) {
    if (f.spec->name == "config") configPath = f.value;
  }
  if (!configPath.empty()) {
    if (absl::Status st = applyConfigFile(configPath, out.config); !st.ok()) return st;
  }
  for (const EnvFlag& e : kEnvFlags) {
    for (const std::string& entry : env) {
      absl::string_view kv = entry;
      if (kv.size() <= e.var.size() || kv.substr(0, e.var.size()) != e.var ||
          kv[e.var.size()] != '=') {
        continue;
      }
      std::string value(kv.substr(e.var.size() + 1));
      // Set but empty, as compose templates leave them: unset, not an error.
      if (value.empty()) continue;
      absl::Status st = applyFlags({absl::StrCat("-", e.flag, "=", value)}, out);
      if (!st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("environment variable ", e.var, "=", value,
                                                       " (for -", e.flag, "): ", st.message()));
      }
      const bool secret = e.flag == "acme-eab-key";
      out.environment.push_back(absl::StrCat(e.var, "=", secret ? "(set)" : value));
    }
  }
  if (absl::Status st = applyFlagValues(flags, out.config); !st.ok()) return st;
  applyMeshKeyDefaults(env, out);
  if (absl::Status st = checkCombinations(out.config); !st.ok()) return st;
  return out;
}

absl::Status checkServable(const Config& config) {
  // derper's default name is Tailscale's own relay: no CA issues it to anyone
  // else, so Let's Encrypt on it can only fail, at the first client, forever.
  // A fresh install (all settings still commented out) stops here instead.
  absl::StatusOr<net::SocketAddress> addr = net::parseListenAddress(config.addr);
  if (!config.dev && config.certMode == "letsencrypt" && config.hostname == kDerperHostname &&
      addr.ok() && addr->port() == 443) {
    return absl::FailedPreconditionError(absl::StrCat(
        "-hostname is still derper's default, ", kDerperHostname,
        ", Tailscale's own relay, for which Let's Encrypt will issue you no certificate: set "
        "-hostname (DERP_HOSTNAME, e.g. in /etc/default/derpd) to this relay's DNS name"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status scanFlags(const std::vector<std::string>& args, CommandLineAction& action,
                       std::vector<FlagValue>& flags) {
  for (size_t i = 0; i < args.size(); i++) {
    absl::string_view arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\" (flags start with -)"));
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    absl::string_view name = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
    }
    if (name == "help" || name == "h") {
      action = CommandLineAction::kHelp;
      return absl::OkStatus();
    }
    if (name == "version") {
      action = CommandLineAction::kVersion;
      return absl::OkStatus();
    }
    if (name == "check-config" && !value) {
      action = CommandLineAction::kCheck;
      continue;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : flagSpecs()) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      if (std::optional<std::string> why = derperFlagNotBuilt(name)) {
        return absl::InvalidArgumentError(why.value());
      }
      return absl::InvalidArgumentError(
          absl::StrCat("flag provided but not defined: -", name));
    }
    if (spec->kind == Kind::kBool) {
      std::string v = value ? normalizeBool(*value) : "true";
      if (!isBoolText(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid boolean value \"", *value, "\" for -", name));
      }
      value = v;
    } else if (!value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag needs an argument: -", name));
      }
      value = args[++i];
    }
    flags.push_back({spec, std::move(*value)});
  }
  return absl::OkStatus();
}

absl::Status applyFlagValues(const std::vector<FlagValue>& flags, Config& config) {
  for (const FlagValue& f : flags) {
    std::string err = f.spec->apply(config, f.value);
    if (!err.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value \"", f.value, "\" for flag -", f.spec->name, ": ", err));
    }
  }
  return absl::OkStatus();
}

absl::Status applyFlags(const std::vector<std::string>& args, ParsedCommandLine& out) {
  std::vector<FlagValue> flags;
  if (absl::Status st = scanFlags(args, out.action, flags); !st.ok()) return st;
  return applyFlagValues(flags, out.config);
}

// The file's keys are the flag names, and its values go through the same
// apply functions as flag text, so a setting is validated the same way
// wherever it comes from.
absl::Status applyConfigFile(const std::string& path, Config& config) {
  absl::StatusOr<std::vector<FileSetting>> settings = readConfigFile(path);
  if (!settings.ok()) return settings.status();
  for (const FileSetting& s : *settings) {
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, " line ", s.line, ": key \"", s.key, "\": ", why));
    };
    if (s.key == "config") {
      return fail("a config file cannot name another; give --config on the command line");
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : flagSpecs()) {
      if (f.name == s.key) spec = &f;
    }
    if (spec == nullptr) return fail("unknown key (keys are the flag names, as in -help)");
    const absl::string_view want = spec->kind == Kind::kBool    ? "boolean"
                                   : spec->kind == Kind::kInt   ? "integer"
                                   : spec->kind == Kind::kFloat ? "float"
                                                                : "string";
    // A float setting may be written as an integer, or as "+Inf".
    const bool floatOk = spec->kind == Kind::kFloat && (s.type == "integer" || s.type == "string");
    if (s.type != want && !floatOk) {
      return fail(absl::StrCat("wants ", want == "integer" ? "an " : "a ", want,
                               spec->kind == Kind::kDuration ? " (a Go duration such as \"2s\")"
                                                             : "",
                               "; found ", s.type));
    }
    std::string err = spec->apply(config, s.text);
    if (!err.empty()) return fail(absl::StrCat("invalid value \"", s.text, "\": ", err));
  }
  return absl::OkStatus();
}

}  // namespace

std::string describeConfig(const Config& c) {
  std::string out;
  auto line = [&](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&out, "  -", name, " ", value.empty() ? "\"\"" : value, "\n");
  };
  line("a", c.dev ? "127.0.0.1:3340 (-dev)" : c.addr);
  line("hostname", c.hostname);
  line("certmode", c.dev ? "self-signed (-dev)" : c.certMode);
  line("certdir", c.certDir.empty() ? "~/.cache/tailscale/derper-certs (the default)" : c.certDir);
  line("c", c.keyFile);
  line("stun", c.stun ? absl::StrCat("true, port ", c.stunPort) : "false");
  line("http-port", absl::StrCat(c.httpPort));
  line("shards", c.shards == 0 ? "0 (one per usable CPU)" : absl::StrCat(c.shards));
  line("mesh-with", absl::StrJoin(c.meshWith, ","));
  line("mesh-psk-file", c.meshPskFile);
  line("verify-clients", c.verifyClients ? absl::StrCat("true, socket ", c.socket) : "false");
  line("verify-client-url", c.verifyClientUrl);
  line("derp", c.derp ? "true" : "false (STUN only: /derp answers 404)");
  line("metrics-addr", c.metricsAddr);
  std::vector<std::string> allow;
  for (const IpPrefix& p : c.metricsAllow) allow.push_back(p.toString());
  line("metrics-allow", absl::StrJoin(allow, ","));
  return out;
}

std::string usageText() {
  std::string text =
      "Usage: derpd [flags]\n\n"
      "derpd is a DERP relay for Tailscale and Headscale, a drop-in for derper.\n"
      "Flags take Go syntax: -name value, -name=value, --name value.\n"
      "Settings come, highest precedence first, from flags, DERP_* environment variables,\n"
      "a --config TOML file whose keys are the flag names, and the defaults.\n";
  absl::string_view group;
  for (const FlagSpec& s : flagSpecs()) {
    if (s.group != group) {
      group = s.group;
      absl::StrAppend(&text, "\n", group, ":\n");
    }
    absl::string_view type = typeName(s.kind);
    absl::StrAppend(&text, "  -", s.name, type.empty() ? "" : " ", type, "\n      ", s.help);
    // Go's flag package leaves out zero-value defaults.
    if (s.defaultText != "" && s.defaultText != "false" && s.defaultText != "0") {
      const bool quote = s.kind == Kind::kString;
      absl::StrAppend(&text, " (default ", quote ? "\"" : "", s.defaultText, quote ? "\"" : "",
                      ")");
    }
    absl::StrAppend(&text, "\n");
  }
  absl::StrAppend(&text,
                  "\nother:\n  -help\n  -version\n  -check-config\n"
                  "      read the flags, DERP_* variables and --config file as for a run, print\n"
                  "      the settings in effect and exit (0, or 2 naming what is wrong)\n");
  return text;
}

std::vector<FlagInfo> flagTable() {
  std::vector<FlagInfo> table;
  for (const FlagSpec& s : flagSpecs()) {
    table.push_back({std::string(s.name), std::string(s.group), std::string(typeName(s.kind)),
                     std::string(s.defaultText), std::string(s.help), true});
  }
  return table;
}

}  // namespace derpd
