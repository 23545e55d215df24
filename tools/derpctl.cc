// derpctl: operator's tool for derpd (and any DERP server).
//
//   derpctl key -c FILE          print the public key of a derper key file
//   derpctl probe [--timeout D] [TLS flags] URL
//                                connect two clients, relay a packet each way,
//                                ping, print each step's latency and the TLS
//                                version/fast start used
//   derpctl derpmap [--region-id N] [--region-code C] NODE...
//                                the derpMap for Tailscale's policy file and
//                                headscale's derp.paths file
//
// Flags use Go's syntax (-c X, -c=X, --c X) like derper's.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_format.h"
#include "base/clock.h"
#include "client/client_tls.h"
#include "client/derp_client.h"
#include "derp/key.h"
#include "derp/key_file.h"
#include "derpd_config.h"
#include "derpmap.h"

namespace derpd {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr Nanos kDefaultProbeTimeout = 5 * kSecond;
constexpr size_t kProbePayloadLen = 64;

constexpr const char* kUsage =
    "usage: derpctl <command> [flags]\n"
    "\n"
    "commands:\n"
    "  key -c FILE                 print the public key (nodekey:<hex>) of a derper key file\n"
    "  probe [--timeout D] [--insecure] [--pin sha256-raw:HEX] [--ca FILE]\n"
    "        [--server-name NAME] URL\n"
    "                              check a DERP server: connect two clients, relay a packet\n"
    "                              each way, ping; print each step's latency, the TLS version\n"
    "                              and whether the meta-cert and fast start were used. URL is\n"
    "                              http://host:port[/derp] or https://host[:port][/derp]\n"
    "                              (port 443 by default). D is a Go duration (default 5s)\n"
    "                              bounding the whole probe. Exit 0 on success, 1 on failure.\n"
    "                              TLS flags (https only):\n"
    "                                --insecure          accept any certificate\n"
    "                                --pin sha256-raw:HEX\n"
    "                                                    accept only the server whose leaf\n"
    "                                                    certificate has this SHA-256 (a\n"
    "                                                    derpMap CertName); no CA check\n"
    "                                --ca FILE           PEM CAs to verify against (default\n"
    "                                                    /etc/ssl/certs/ca-certificates.crt)\n"
    "                                --server-name NAME  SNI and name to verify (default: the\n"
    "                                                    URL's host; an IP gets no SNI)\n"
    "  derpmap [--region-id N] [--region-code CODE] [--region-name NAME]\n"
    "          [--format tailscale|headscale|both] NODE...\n"
    "                              print the DERP map that makes clients use these nodes as one\n"
    "                              region: the \"derpMap\" of Tailscale's policy file (JSON)\n"
    "                              and/or headscale's derp.paths file (YAML). Region 900, code\n"
    "                              \"home\" by default. NODE is HOST[:DERPPORT] with options\n"
    "                              ,stun=PORT|off ,certname=sha256-raw:HEX (IP certificates:\n"
    "                              derpd logs it) ,ipv4=ADDR ,ipv6=ADDR. Then check it from a\n"
    "                              client with `tailscale netcheck`.\n"
    "  help, --help                this text\n"
    "\n"
    "Flags take Go's forms: -c X, -c=X, --c X; switches: --insecure, --insecure=false.\n";

int usageError(absl::string_view msg) {
  std::fprintf(stderr, "derpctl: %.*s\n\n%s", static_cast<int>(msg.size()), msg.data(), kUsage);
  return kExitUsage;
}

// Parsed "-name value" style arguments of one command.
struct CommandLine {
  std::vector<std::pair<std::string, std::string>> flags;
  std::vector<std::string> positional;
};

// Splits args into flags and positionals. Every flag in valueFlags takes a
// value; one in boolFlags takes "=true|false" or nothing (meaning true), as
// Go's boolean flags do; any other flag is an error naming it.
absl::StatusOr<CommandLine> parseArgs(const std::vector<std::string>& args,
                                      const std::vector<std::string>& valueFlags,
                                      const std::vector<std::string>& boolFlags = {}) {
  CommandLine cl;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      cl.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (std::find(boolFlags.begin(), boolFlags.end(), name) != boolFlags.end()) {
      bool on = true;
      if (value.has_value() && !absl::SimpleAtob(*value, &on)) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid boolean for -", name, ": ", *value));
      }
      cl.flags.emplace_back(name, on ? "true" : "false");
      continue;
    }
    if (std::find(valueFlags.begin(), valueFlags.end(), name) == valueFlags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag: ", a));
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag needs a value: -", name));
      }
      value = args[++i];
    }
    cl.flags.emplace_back(name, *value);
  }
  return cl;
}

std::optional<std::string> flagValue(const CommandLine& cl, std::string_view name) {
  std::optional<std::string> v;
  for (const auto& [n, value] : cl.flags) {
    if (n == name) v = value;  // last one wins, as in Go
  }
  return v;
}

// A Go duration such as "5s", "1.5s", "300ms", "1m30s".
std::optional<Nanos> parseDuration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s == "0") return 0;
  Nanos total = 0;
  while (!s.empty()) {
    size_t n = 0;
    while (n < s.size() && (std::isdigit(static_cast<unsigned char>(s[n])) || s[n] == '.')) ++n;
    if (n == 0) return std::nullopt;
    double number = 0;
    if (!absl::SimpleAtod(std::string(s.substr(0, n)), &number)) return std::nullopt;
    s.remove_prefix(n);
    size_t u = 0;
    while (u < s.size() && !std::isdigit(static_cast<unsigned char>(s[u])) && s[u] != '.') ++u;
    std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xc2\xb5s") {
      scale = kMicrosecond;
    } else if (unit == "ms") {
      scale = kMillisecond;
    } else if (unit == "s") {
      scale = kSecond;
    } else if (unit == "m") {
      scale = 60.0 * kSecond;
    } else if (unit == "h") {
      scale = 3600.0 * kSecond;
    } else {
      return std::nullopt;
    }
    total += static_cast<Nanos>(number * scale);
  }
  return total;
}

std::string formatLatency(Nanos d) {
  if (d < kMillisecond) return absl::StrFormat("%.0fµs", static_cast<double>(d) / kMicrosecond);
  if (d < kSecond) return absl::StrFormat("%.2fms", static_cast<double>(d) / kMillisecond);
  return absl::StrFormat("%.3fs", static_cast<double>(d) / kSecond);
}

int runKey(const std::vector<std::string>& args) {
  absl::StatusOr<CommandLine> cl = parseArgs(args, {"c"});
  if (!cl.ok()) return usageError(cl.status().message());
  std::optional<std::string> path = flagValue(*cl, "c");
  if (!path.has_value() || !cl->positional.empty()) {
    return usageError("key: usage: derpctl key -c FILE");
  }
  std::ifstream in(*path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "derpctl key: cannot read %s: %s\n", path->c_str(), strerror(errno));
    return kExitFailure;
  }
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<derp::PrivateKey> key = derp::parseKeyFile(content);
  if (!key.ok()) {
    std::fprintf(stderr, "derpctl key: %s: %s\n", path->c_str(),
                 std::string(key.status().message()).c_str());
    return kExitFailure;
  }
  std::printf("%s\n", key->publicKey().toString().c_str());
  return 0;
}

// Where and how to connect: the URL's parts plus the TLS flags.
struct ProbeTarget {
  std::string host;
  uint16_t port = 80;
  bool tls = false;
  bool insecure = false;
  std::string pinCertName;
  std::string caFile = client::kDefaultCaFile;
  std::string serverName;
};

absl::StatusOr<ProbeTarget> parseProbeUrl(std::string_view url) {
  ProbeTarget t;
  std::string_view rest;
  if (url.starts_with("https://")) {
    t.tls = true;
    t.port = 443;
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("not an http:// or https:// URL: ", std::string(url)));
  }
  std::string_view authority = rest.substr(0, rest.find('/'));
  std::string_view path = rest.substr(authority.size());
  if (!path.empty() && path != "/" && path != "/derp") {
    return absl::InvalidArgumentError(
        absl::StrCat("URL path must be /derp, not ", std::string(path)));
  }
  std::string_view portText;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("unterminated [ in URL host");
    }
    t.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return absl::InvalidArgumentError("junk after ] in URL host");
      portText = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    t.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) portText = authority.substr(colon + 1);
  }
  if (t.host.empty()) return absl::InvalidArgumentError("URL has no host");
  if (!portText.empty()) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(std::string(portText), &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad port in URL: ", std::string(portText)));
    }
    t.port = static_cast<uint16_t>(port);
  }
  return t;
}

// Each probe step runs against one overall deadline.
class Prober {
 public:
  Prober(ProbeTarget target, Nanos timeout)
      : target_(std::move(target)), deadline_(clock_.now() + timeout) {}

  absl::Status run() {
    absl::StatusOr<std::unique_ptr<client::DerpClient>> a = connectClient("connect client A");
    if (!a.ok()) return a.status();
    std::printf("server key %s\n", (*a)->serverKey().toString().c_str());
    reportTransport(**a);
    absl::StatusOr<std::unique_ptr<client::DerpClient>> b = connectClient("connect client B");
    if (!b.ok()) return b.status();
    if (absl::Status st = relay("relay A -> B", **a, **b); !st.ok()) return st;
    if (absl::Status st = relay("relay B -> A", **b, **a); !st.ok()) return st;
    absl::StatusOr<Nanos> rtt = (*a)->ping(remaining());
    if (!rtt.ok()) return stepError("ping", rtt.status());
    report("ping round trip", *rtt);
    return absl::OkStatus();
  }

 private:
  Nanos remaining() const { return std::max<Nanos>(deadline_ - clock_.now(), 0); }

  static absl::Status stepError(std::string_view step, const absl::Status& st) {
    return absl::Status(st.code(), absl::StrCat(std::string(step), ": ", st.message()));
  }

  static void report(std::string_view step, Nanos d) {
    std::printf("%-18.*s %s\n", static_cast<int>(step.size()), step.data(),
                formatLatency(d).c_str());
    std::fflush(stdout);
  }

  static void reportTransport(const client::DerpClient& c) {
    if (c.tlsVersion().empty()) {
      std::printf("transport          plain HTTP, fast start %s\n",
                  c.usedFastStart() ? "yes" : "no");
    } else {
      std::printf("transport          %s, meta-cert %s, fast start %s\n", c.tlsVersion().c_str(),
                  c.metaCertKey().has_value() ? "yes" : "no", c.usedFastStart() ? "yes" : "no");
    }
    std::fflush(stdout);
  }

  absl::StatusOr<std::unique_ptr<client::DerpClient>> connectClient(std::string_view step) {
    client::ClientOptions opts;
    opts.host = target_.host;
    opts.port = target_.port;
    opts.tls = target_.tls;
    opts.insecure = target_.insecure;
    opts.pinCertName = target_.pinCertName;
    opts.caFile = target_.caFile;
    opts.serverName = target_.serverName;
    opts.isProber = true;
    opts.timeout = remaining();
    Nanos start = clock_.now();
    absl::StatusOr<std::unique_ptr<client::DerpClient>> c = client::DerpClient::connect(opts);
    if (!c.ok()) return stepError(step, c.status());
    report(step, clock_.now() - start);
    return c;
  }

  absl::Status relay(std::string_view step, client::DerpClient& from, client::DerpClient& to) {
    std::vector<uint8_t> payload(kProbePayloadLen);
    randombytes_buf(payload.data(), payload.size());
    Nanos start = clock_.now();
    if (absl::Status st = from.sendPacket(to.publicKey(), payload); !st.ok()) {
      return stepError(step, st);
    }
    absl::StatusOr<client::DerpClient::Packet> p = to.recvPacket(remaining());
    if (!p.ok()) return stepError(step, p.status());
    if (p->src != from.publicKey()) {
      return stepError(
          step, absl::DataLossError(absl::StrCat("packet came from ", p->src.toString(),
                                                 ", expected ", from.publicKey().toString())));
    }
    if (p->payload != payload) {
      return stepError(step, absl::DataLossError("packet payload differs from what was sent"));
    }
    report(step, clock_.now() - start);
    return absl::OkStatus();
  }

  RealClock clock_;
  ProbeTarget target_;
  Nanos deadline_;
};

int runProbe(const std::vector<std::string>& args) {
  absl::StatusOr<CommandLine> cl =
      parseArgs(args, {"timeout", "pin", "ca", "server-name"}, {"insecure"});
  if (!cl.ok()) return usageError(cl.status().message());
  if (cl->positional.size() != 1)
    return usageError("probe: usage: derpctl probe [--timeout D] [TLS flags] URL");
  Nanos timeout = kDefaultProbeTimeout;
  if (std::optional<std::string> t = flagValue(*cl, "timeout"); t.has_value()) {
    std::optional<Nanos> d = parseDuration(*t);
    if (!d.has_value() || *d <= 0) {
      return usageError(absl::StrCat("invalid value for -timeout: ", *t));
    }
    timeout = *d;
  }
  absl::StatusOr<ProbeTarget> target = parseProbeUrl(cl->positional[0]);
  if (!target.ok()) {
    std::fprintf(stderr, "derpctl probe: %s\n", std::string(target.status().message()).c_str());
    return kExitFailure;
  }
  for (const char* tlsFlag : {"insecure", "pin", "ca", "server-name"}) {
    if (!target->tls && flagValue(*cl, tlsFlag).has_value()) {
      return usageError(absl::StrCat("-", tlsFlag, " needs an https:// URL"));
    }
  }
  target->insecure = flagValue(*cl, "insecure") == "true";
  if (std::optional<std::string> pin = flagValue(*cl, "pin"); pin.has_value()) {
    if (absl::StatusOr<std::array<uint8_t, 32>> digest = client::parseCertNamePin(*pin);
        !digest.ok()) {
      return usageError(digest.status().message());
    }
    target->pinCertName = *pin;
  }
  if (target->insecure && !target->pinCertName.empty()) {
    return usageError("-insecure and -pin exclude each other");
  }
  if (std::optional<std::string> ca = flagValue(*cl, "ca"); ca.has_value()) {
    if (target->insecure || !target->pinCertName.empty()) {
      return usageError("-ca has no effect with -insecure or -pin");
    }
    target->caFile = *ca;
  }
  target->serverName = flagValue(*cl, "server-name").value_or("");
  std::printf("probing %s (timeout %s)\n", cl->positional[0].c_str(),
              formatLatency(timeout).c_str());
  const bool plain = !target->tls;
  absl::Status st = Prober(*std::move(target), timeout).run();
  if (!st.ok()) {
    std::fprintf(stderr, "derpctl probe: FAILED: %s\n", std::string(st.message()).c_str());
    if (plain && absl::StartsWith(st.message(), "connect client A") &&
        !absl::IsDeadlineExceeded(st) && st.message().find("refused") == absl::string_view::npos) {
      std::fprintf(stderr,
                   "derpctl probe: the server answered plain HTTP with something else: if this "
                   "port speaks TLS (derpd on port 443, -certmode manual or -dev), probe "
                   "https://%s instead\n",
                   std::string(absl::StripPrefix(cl->positional[0], "http://")).c_str());
    }
    if (st.code() == absl::StatusCode::kUnauthenticated) {
      std::fprintf(stderr,
                   "derpctl probe: a server with its own CA or a self-signed certificate needs "
                   "--ca FILE, --pin sha256-raw:HEX or --insecure\n");
    }
    return kExitFailure;
  }
  std::printf("ok\n");
  return 0;
}

int runDerpmap(const std::vector<std::string>& args) {
  absl::StatusOr<CommandLine> cl =
      parseArgs(args, {"region-id", "region-code", "region-name", "format"});
  if (!cl.ok()) return usageError(cl.status().message());
  derpmap::Region region;
  if (std::optional<std::string> id = flagValue(*cl, "region-id"); id.has_value()) {
    if (!absl::SimpleAtoi(*id, &region.id)) {
      return usageError(absl::StrCat("invalid value for -region-id: ", *id));
    }
  }
  region.code = flagValue(*cl, "region-code").value_or(region.code);
  region.name = flagValue(*cl, "region-name").value_or("");
  const std::string format = flagValue(*cl, "format").value_or("both");
  if (format != "tailscale" && format != "headscale" && format != "both") {
    return usageError("-format: want tailscale, headscale or both");
  }
  for (const std::string& spec : cl->positional) {
    absl::StatusOr<derpmap::Node> n = derpmap::parseNode(spec);
    if (!n.ok()) return usageError(n.status().message());
    const bool ipHost = n->hostName == n->ipv4 || n->hostName == n->ipv6;
    if (ipHost && n->certName.empty()) {
      std::fprintf(stderr,
                   "derpctl derpmap: %s is an IP: clients check its certificate by CertName; "
                   "add ,certname=sha256-raw:HEX (derpd logs it at start)\n",
                   n->hostName.c_str());
    }
    region.nodes.push_back(*std::move(n));
  }
  if (absl::Status st = derpmap::finish(region); !st.ok()) return usageError(st.message());
  const bool both = format == "both";
  if (format != "headscale") {
    if (both) std::printf("// Tailscale: the \"derpMap\" of the tailnet policy file\n");
    std::fputs(derpmap::tailscaleJson(region).c_str(), stdout);
  }
  if (format != "tailscale") {
    if (both) std::printf("\n# headscale: a file listed in derp.paths\n");
    std::fputs(derpmap::headscaleYaml(region).c_str(), stdout);
  }
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 2) return usageError("no command given");
  std::string_view command = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "help" || command == "-h" || command == "-help" || command == "--help") {
    std::printf("derpctl %s\n\n%s", DERPD_VERSION, kUsage);
    return 0;
  }
  if (sodium_init() < 0) {
    std::fprintf(stderr, "derpctl: libsodium failed to initialise\n");
    return kExitFailure;
  }
  if (command == "key") return runKey(rest);
  if (command == "probe") return runProbe(rest);
  if (command == "derpmap") return runDerpmap(rest);
  return usageError(absl::StrCat("unknown command: ", std::string(command)));
}

}  // namespace
}  // namespace derpd

int main(int argc, char** argv) { return derpd::run(argc, argv); }
