#include "config/config.h"

#include <charconv>
#include <functional>
#include "absl/strings/string_view.h"

#include "absl/strings/str_cat.h"
#include "config/duration.h"

namespace derpd {
namespace {

enum class Kind { kString, kBool, kInt, kDuration };

struct FlagSpec {
  absl::string_view name;
  Kind kind;
  absl::string_view group;
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
    if (name.find('/') != absl::string_view::npos) {
      return "a name/txt-record rollout entry is not supported by this derpd build yet";
    }
    for (char ch : name) {
      if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
        return "want comma-separated host names";
      }
    }
    names.emplace_back(name);
  }
  out = std::move(names);
  return "";
}

std::string notYet(absl::string_view what) {
  return absl::StrCat(what, " is not supported by this derpd build yet");
}

const std::vector<FlagSpec>& flagSpecs() {
  static const std::vector<FlagSpec> specs = {
      {"a", Kind::kString, "listening", "server HTTP/HTTPS listen address, host:port or :port",
       [](Config& c, absl::string_view v) {
         c.addr = std::string(v);
         return std::string();
       }},
      {"http-port", Kind::kInt, "listening",
       "port for the plain-HTTP listener when serving TLS; -1 disables it",
       [](Config& c, absl::string_view v) { return setInt(c.httpPort, v, -1, 65535); }},
      {"dev", Kind::kBool, "listening",
       "development mode: TLS (self-signed, made at start) on 127.0.0.1:3340, STUN on",
       [](Config& c, absl::string_view v) {
         c.dev = v == "true";
         return std::string();
       }},
      {"shards", Kind::kInt, "listening", "number of shards (0: one per CPU in the affinity mask)",
       [](Config& c, absl::string_view v) { return setInt(c.shards, v, 0, 1024); }},
      {"c", Kind::kString, "identity", "config (private key) file path; created if missing",
       [](Config& c, absl::string_view v) {
         if (v.empty()) return std::string("want a file path");
         c.keyFile = std::string(v);
         return std::string();
       }},
      {"certmode", Kind::kString, "tls", "mode for getting a cert: letsencrypt or manual",
       [](Config& c, absl::string_view v) {
         if (v != "letsencrypt" && v != "manual") return std::string("want letsencrypt or manual");
         c.certMode = std::string(v);
         return std::string();
       }},
      {"certdir", Kind::kString, "tls",
       "directory of <hostname>.crt and <hostname>.key (default ~/.cache/tailscale/derper-certs)",
       [](Config& c, absl::string_view v) {
         c.certDir = std::string(v);
         return std::string();
       }},
      {"hostname", Kind::kString, "tls",
       "TLS host name; an IP address gets a self-signed certificate; a comma-separated list "
       "serves one certificate per name, chosen by SNI (the first is the default)",
       [](Config& c, absl::string_view v) {
         if (v.empty()) return std::string("want a host name or IP address");
         c.hostname = std::string(v);
         return std::string();
       }},
      {"stun", Kind::kBool, "stun", "run a STUN server (UDP, on the IP of -a)",
       [](Config& c, absl::string_view v) {
         c.stun = v == "true";
         return std::string();
       }},
      {"stun-port", Kind::kInt, "stun", "UDP port for STUN (0 picks a free one)",
       [](Config& c, absl::string_view v) { return setInt(c.stunPort, v, 0, 65535); }},
      {"derp", Kind::kBool, "derp", "run the DERP server",
       [](Config&, absl::string_view v) {
         if (v == "false") return notYet("-derp=false (STUN-only mode)");
         return std::string();
       }},
      {"tcp-write-timeout", Kind::kDuration, "tcp",
       "time a write to a client may take before it is disconnected",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpWriteTimeout, v); }},
      {"tcp-keepalive-time", Kind::kDuration, "tcp", "TCP keep-alive idle time (0 disables)",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpKeepAliveTime, v); }},
      {"tcp-user-timeout", Kind::kDuration, "tcp", "TCP_USER_TIMEOUT (0 keeps the kernel's)",
       [](Config& c, absl::string_view v) { return setDuration(c.tcpUserTimeout, v); }},
      {"drain-timeout", Kind::kDuration, "lifecycle",
       "on SIGTERM: how long clients told Restarting may stay before they are closed",
       [](Config& c, absl::string_view v) { return setDuration(c.drainTimeout, v); }},
      {"home", Kind::kString, "http",
       "what / serves: empty for the default page, \"blank\" for a blank page, or an "
       "http(s) URL to redirect to",
       [](Config& c, absl::string_view v) { return setHome(c.home, v); }},
      {"bootstrap-dns-names", Kind::kString, "http",
       "comma-separated host names whose addresses /bootstrap-dns serves (resolved in the "
       "background every 5 minutes)",
       [](Config& c, absl::string_view v) { return setNameList(c.bootstrapDnsNames, v); }},
      {"unpublished-bootstrap-dns-names", Kind::kString, "http",
       "comma-separated host names /bootstrap-dns answers only when asked for by ?q=<name>",
       [](Config& c, absl::string_view v) {
         return setNameList(c.unpublishedBootstrapDnsNames, v);
       }},
      {"metrics-addr", Kind::kString, "http",
       "loopback host:port for a plain-HTTP listener serving /metrics and /debug/ "
       "(empty: off)",
       [](Config& c, absl::string_view v) {
         c.metricsAddr = std::string(v);
         return std::string();
       }},
  };
  return specs;
}

// derper flags whose features are not built yet: accepted names, rejected use.
constexpr absl::string_view kNotYetFlags[] = {
    "mesh-with",         "mesh-psk-file",           "verify-clients",
    "socket",            "verify-client-url",       "verify-client-url-fail-open",
    "accept-connection-limit", "accept-connection-burst", "acme-email",
    "acme-eab-kid",      "acme-eab-key",
};

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
    {"DERP_DOMAIN", "hostname"},         {"DERP_HOSTNAME", "hostname"},
    {"DERP_CERT_MODE", "certmode"},      {"DERP_CERTMODE", "certmode"},
    {"DERP_CERT_DIR", "certdir"},        {"DERP_ADDR", "a"},
    {"DERP_HTTP_PORT", "http-port"},     {"DERP_STUN", "stun"},
    {"DERP_STUN_PORT", "stun-port"},     {"DERP_VERIFY_CLIENTS", "verify-clients"},
    {"DERP_VERIFY_CLIENT_URL", "verify-client-url"},
};

absl::Status applyFlags(const std::vector<std::string>& args, ParsedCommandLine& out);

}  // namespace

absl::StatusOr<ParsedCommandLine> parseCommandLine(const std::vector<std::string>& args,
                                                   const std::vector<std::string>& env) {
  ParsedCommandLine out;
  // Environment first, so that flags given on the command line win.
  for (const EnvFlag& e : kEnvFlags) {
    for (const std::string& entry : env) {
      absl::string_view kv = entry;
      if (kv.size() <= e.var.size() || kv.substr(0, e.var.size()) != e.var ||
          kv[e.var.size()] != '=') {
        continue;
      }
      std::string value(kv.substr(e.var.size() + 1));
      // Images set these to their off values by default; off is derpd's
      // default too, so only turning a missing feature on is refused.
      if ((e.flag == "verify-clients" && normalizeBool(value) == "false") ||
          (e.flag == "verify-client-url" && value.empty())) {
        continue;
      }
      absl::Status st = applyFlags({absl::StrCat("-", e.flag, "=", value)}, out);
      if (!st.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("environment ", e.var, "=", value, ": ", st.message()));
      }
    }
  }
  if (absl::Status st = applyFlags(args, out); !st.ok()) return st;
  return out;
}

namespace {

absl::Status applyFlags(const std::vector<std::string>& args, ParsedCommandLine& out) {
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
      out.action = CommandLineAction::kHelp;
      return absl::OkStatus();
    }
    if (name == "version") {
      out.action = CommandLineAction::kVersion;
      return absl::OkStatus();
    }
    for (absl::string_view nf : kNotYetFlags) {
      if (name == nf) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag -", name, ": ", notYet(absl::StrCat("-", name))));
      }
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : flagSpecs()) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
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
    std::string err = spec->apply(out.config, *value);
    if (!err.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value \"", *value, "\" for flag -", name, ": ", err));
    }
  }
  return absl::OkStatus();
}

}  // namespace


std::string usageText() {
  std::string text =
      "Usage: derpd [flags]\n\n"
      "derpd is a DERP relay for Tailscale and Headscale, a drop-in for derper.\n"
      "Flags take Go syntax: -name value, -name=value, --name value.\n";
  absl::string_view group;
  for (const FlagSpec& s : flagSpecs()) {
    if (s.group != group) {
      group = s.group;
      absl::StrAppend(&text, "\n", group, ":\n");
    }
    absl::string_view kind = s.kind == Kind::kBool       ? ""
                            : s.kind == Kind::kInt      ? " int"
                            : s.kind == Kind::kDuration ? " duration"
                                                        : " string";
    absl::StrAppend(&text, "  -", s.name, kind, "\n      ", s.help, "\n");
  }
  absl::StrAppend(&text, "\nnot built yet (rejected when given):\n ");
  for (absl::string_view nf : kNotYetFlags) absl::StrAppend(&text, " -", nf);
  absl::StrAppend(&text, "\n\nother:\n  -help\n  -version\n");
  return text;
}

}  // namespace derpd
