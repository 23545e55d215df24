#include "integration/pebble.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"
#include "client/http_fetch.h"
#include "integration/child_process.h"
#include "integration/derpd_process.h"

namespace derpd::testing {
namespace {

constexpr Nanos kStartTimeout = 15 * kSecond;

}  // namespace

// A port picked by bind(0) comes from the ephemeral range, which every
// outgoing connect on the machine draws from too: between our close and the
// child's bind, a client of a test running beside this one can take it
// (pebble: "bind: address already in use"). So pick below that range, at
// random, where only explicit binds go.
absl::StatusOr<uint16_t> freeLoopbackPort() {
  int low = 32768;
  if (absl::StatusOr<std::string> range = readFile("/proc/sys/net/ipv4/ip_local_port_range");
      range.ok()) {
    absl::SimpleAtoi(range->substr(0, range->find_first_of(" \t")), &low);
  }
  const int first = 10000;
  if (low - first < 1000) low = first + 1000;
  std::random_device seed;
  std::mt19937 rng(seed());
  std::uniform_int_distribution<int> pick(first, low - 1);
  for (int attempt = 0; attempt < 100; attempt++) {
    const uint16_t port = static_cast<uint16_t>(pick(rng));
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ::close(fd);
    if (free) return port;
  }
  return absl::InternalError("no free port on 127.0.0.1");
}

std::string Pebble::missingReason() {
  for (const char* tool : {"pebble", "pebble-challtestsrv"}) {
    if (!findOnPath(tool).has_value()) {
      return absl::StrCat(tool, " not found (Debian package pebble)");
    }
  }
  return {};
}

absl::StatusOr<std::unique_ptr<Pebble>> Pebble::start(const std::string& dir, TestPki& pki,
                                                      PebbleOptions options) {
  std::unique_ptr<Pebble> p(new Pebble());
  p->dir_ = dir;
  p->caFile_ = pki.caCrt();
  absl::StatusOr<LeafFiles> leaf =
      pki.issue("pebble", "pebble", "IP:127.0.0.1,DNS:localhost", KeyType::kEcdsaP256);
  if (!leaf.ok()) return leaf.status();
  absl::StatusOr<uint16_t> acme =
      options.acmePort != 0 ? absl::StatusOr<uint16_t>(options.acmePort) : freeLoopbackPort();
  absl::StatusOr<uint16_t> mgmt = freeLoopbackPort();
  absl::StatusOr<uint16_t> dns = freeLoopbackPort();
  absl::StatusOr<uint16_t> dnsMgmt = freeLoopbackPort();
  for (const auto* port : {&acme, &mgmt, &dns, &dnsMgmt}) {
    if (!port->ok()) return port->status();
  }
  p->acmePort_ = *acme;
  p->managementPort_ = *mgmt;
  nlohmann::json cfg = {{"listenAddress", absl::StrCat("127.0.0.1:", *acme)},
                        {"managementListenAddress", absl::StrCat("127.0.0.1:", *mgmt)},
                        {"certificate", leaf->crt},
                        {"privateKey", leaf->key},
                        {"httpPort", options.httpPort},
                        {"tlsPort", options.tlsPort},
                        {"ocspResponderURL", ""},
                        {"externalAccountBindingRequired", !options.eabKeys.empty()}};
  if (!options.eabKeys.empty()) cfg["externalAccountMACKeys"] = options.eabKeys;
  const std::string cfgPath = dir + "/pebble-config.json";
  if (absl::Status st =
          replaceFileAtomically(dir, "pebble-config.json", nlohmann::json{{"pebble", cfg}}.dump());
      !st.ok()) {
    return st;
  }
  const std::string log = dir + "/pebble.log";
  // The DNS server only: its own HTTP-01 and TLS-ALPN-01 responders stay off.
  absl::StatusOr<pid_t> dnsPid = launchLogged(
      {*findOnPath("pebble-challtestsrv"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
       "-dns01", absl::StrCat("127.0.0.1:", *dns), "-management",
       absl::StrCat("127.0.0.1:", *dnsMgmt), "-http01", "", "-https01", "", "-tlsalpn01", ""},
      {}, log);
  if (!dnsPid.ok()) return dnsPid.status();
  p->dns_ = *dnsPid;
  absl::StatusOr<pid_t> pebblePid = launchLogged(
      {*findOnPath("pebble"), "-config", cfgPath, "-dnsserver", absl::StrCat("127.0.0.1:", *dns)},
      {{"PEBBLE_VA_NOSLEEP", "1"},
       {"PEBBLE_WFE_NONCEREJECT", absl::StrCat(options.nonceRejectPercent)}},
      log);
  if (!pebblePid.ok()) return pebblePid.status();
  p->pebble_ = *pebblePid;
  const Nanos deadline = client::monotonicNow() + kStartTimeout;
  client::TrustStore trust{p->caFile_, ""};
  for (;;) {
    client::HttpRequest req;
    req.url = p->directoryUrl();
    req.timeout = kSecond;
    absl::StatusOr<client::HttpResponse> r = client::fetch(req, trust);
    if (r.ok() && r->status == 200) break;
    if (client::monotonicNow() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "pebble did not answer at ", req.url, " (",
          r.ok() ? absl::StrCat("HTTP ", r->status) : std::string(r.status().message()),
          "): ", p->log()));
    }
    ::usleep(100 * 1000);
  }
  return p;
}

Pebble::~Pebble() {
  stopChild(pebble_);
  stopChild(dns_);
}

std::string Pebble::directoryUrl() const {
  return absl::StrCat("https://127.0.0.1:", acmePort_, "/dir");
}

absl::StatusOr<std::string> Pebble::issuingRootPem() const {
  client::HttpRequest req;
  req.url = absl::StrCat("https://127.0.0.1:", managementPort_, "/roots/0");
  absl::StatusOr<client::HttpResponse> r = client::fetch(req, {caFile_, ""});
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::UnavailableError(absl::StrCat("roots/0: HTTP ", r->status));
  return r->body;
}

std::string Pebble::log() const {
  absl::StatusOr<std::string> text = readFile(dir_ + "/pebble.log");
  return text.ok() ? *text : std::string("(no log)");
}

}  // namespace derpd::testing
