// Config: every setting derpd runs with, and the derper-compatible command
// line that fills it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"

namespace derpd {

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
  std::string hostname = "derp.tailscale.com";     // -hostname
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
  // --metrics-addr: a loopback host:port serving /metrics and /debug/ over
  // plain HTTP ("" = off). main checks that the address is loopback.
  std::string metricsAddr;
};

enum class CommandLineAction { kRun, kHelp, kVersion };

struct ParsedCommandLine {
  CommandLineAction action = CommandLineAction::kRun;
  Config config;
};

// Go flag syntax: -name value, -name=value, --name value, --name=value;
// booleans take no value or =true/=false. Errors name the flag: unknown
// flags, bad values, and derper flags whose feature derpd does not have yet.
//
// env: the process environment ("NAME=value" entries). The DERP_* variables of
// the popular derper container images set the same settings as their flags;
// a flag on the command line wins. Errors name the variable.
absl::StatusOr<ParsedCommandLine> parseCommandLine(const std::vector<std::string>& args,
                                                   const std::vector<std::string>& env = {});

// The --help text, grouped.
std::string usageText();

}  // namespace derpd
