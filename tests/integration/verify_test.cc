// -verify-clients and -verify-client-url against real HTTP servers: a
// LocalAPI stand-in on a unix socket (real tailscaled cannot run here: it
// needs a control server and is not packaged in Debian; see
// verify_standins.py) and an admission URL server, both Python http.server
// processes that log every request they get. Each case checks who is
// admitted, what is counted in /metrics, and what the services were asked.
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/fd_wait.h"
#include "integration/child_process.h"
#include "integration/derpd_process.h"
#include "integration/mesh_cluster.h"
#include "integration/metrics_text.h"
#include "integration/pebble.h"
#include "integration/test_pki.h"
#include "integration/test_net.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr char kRejected[] = "derpd_clients_rejected_total";
constexpr char kVerified[] = "derpd_clients_verified_total";

uint8_t typeByte(derp::FrameType t) { return static_cast<uint8_t>(t); }

// One stand-in process: "localapi" (listening on a unix socket) or
// "admission" (on a TCP port of 127.0.0.1).
class StandIn {
 public:
  static absl::StatusOr<std::unique_ptr<StandIn>> start(const std::string& mode,
                                                        const std::string& dir) {
    const char* script = std::getenv("DERPD_VERIFY_STANDINS");
    if (script == nullptr) return absl::FailedPreconditionError("DERPD_VERIFY_STANDINS unset");
    auto s = std::unique_ptr<StandIn>(new StandIn);
    s->rules_ = absl::StrCat(dir, "/", mode, "-rules.json");
    s->log_ = absl::StrCat(dir, "/", mode, "-requests.jsonl");
    s->addr_ = absl::StrCat(dir, "/", mode, mode == "localapi" ? ".sock" : ".port");
    if (absl::Status st = s->setRules(nlohmann::json::object()); !st.ok()) return st;
    absl::StatusOr<pid_t> pid =
        launchLogged({"/usr/bin/python3", script, mode, s->addr_, s->rules_, s->log_}, {},
                     absl::StrCat(dir, "/", mode, ".log"));
    if (!pid.ok()) return pid.status();
    s->pid_ = *pid;
    for (int i = 0; i < 100; i++) {
      if (::access(s->addr_.c_str(), F_OK) == 0) {
        if (mode == "admission") {
          std::ifstream f(s->addr_);
          f >> s->port_;
        }
        return s;
      }
      ::usleep(50 * 1000);
    }
    return absl::DeadlineExceededError(absl::StrCat(mode, " stand-in did not start"));
  }
  ~StandIn() { stopChild(pid_); }

  absl::Status setRules(const nlohmann::json& rules) {
    return replaceFileAtomically(rules_.substr(0, rules_.rfind('/')),
                                 rules_.substr(rules_.rfind('/') + 1), rules.dump());
  }
  // Every request so far, in order.
  std::vector<nlohmann::json> requests() const {
    std::vector<nlohmann::json> out;
    std::ifstream f(log_);
    for (std::string line; std::getline(f, line);) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }
  // Requests about one node key.
  size_t requestsAbout(const derp::NodeKey& key) const {
    size_t n = 0;
    for (const nlohmann::json& r : requests()) {
      if (r["target"].get<std::string>().find(key.hex()) != std::string::npos ||
          r["body"].get<std::string>().find(key.hex()) != std::string::npos) {
        n++;
      }
    }
    return n;
  }
  const std::string& socketPath() const { return addr_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/derp/admit"); }

 private:
  StandIn() = default;
  pid_t pid_ = -1;
  std::string rules_, log_, addr_;
  uint16_t port_ = 0;
};

struct Client {
  client::ClientOptions opts;
  std::string hex() const { return opts.key.publicKey().hex(); }
};

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, makeTempDir()); }
  void TearDown() override { removeTree(dir_); }

  absl::StatusOr<MetricsNode> startDerpd(std::vector<std::string> args) {
    DerpdOptions o;
    o.extraArgs = {"--metrics-addr", "127.0.0.1:0", "-stun=false"};
    o.extraArgs.insert(o.extraArgs.end(), args.begin(), args.end());
    return startWithMetrics(o);
  }
  Client newClient(uint16_t port) {
    Client c;
    c.opts = clientOptions(port);
    c.opts.timeout = 15 * kSecond;  // longer than any check
    return c;
  }
  double metric(uint16_t metricsPort, const char* name, const Labels& filter = {}) {
    absl::StatusOr<double> v = scrapeMetric(metricsPort, name, filter);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  std::string dir_;
};

// A client is admitted when its handshake completes and it relays; refused
// when the server closes the connection before ServerInfo.
void expectRelays(DerpClient& a, DerpClient& b) {
  std::vector<uint8_t> payload = taggedPayload(1, 2, 100);
  ASSERT_OK(a.sendPacket(b.publicKey(), payload));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, b.recvPacket(5 * kSecond));
  EXPECT_EQ(p.src, a.publicKey());
  EXPECT_EQ(p.payload, payload);
}

TEST_F(VerifyTest, TailscaledAdmitsExactlyTheNodesItKnows) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath()}));
  const uint16_t port = node.process->port();
  Client known1 = newClient(port), known2 = newClient(port), unknown = newClient(port),
         failing = newClient(port);
  ASSERT_OK(localapi->setRules(
      {{known1.hex(), "known"}, {known2.hex(), "known"}, {failing.hex(), "error"}}));

  ASSERT_OK_AND_ASSIGN(auto c1, DerpClient::connect(known1.opts));
  ASSERT_OK_AND_ASSIGN(auto c2, DerpClient::connect(known2.opts));
  expectRelays(*c1, *c2);
  expectRelays(*c2, *c1);
  EXPECT_FALSE(DerpClient::connect(unknown.opts).ok()) << "a key tailscaled does not know";
  EXPECT_FALSE(DerpClient::connect(failing.opts).ok()) << "tailscaled's 500 must fail closed";

  EXPECT_EQ(metric(node.metricsPort, kVerified), 2);
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "not_in_tailnet"}}), 1);
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "tailscaled_error"}}), 1);
  EXPECT_EQ(
      metric(node.metricsPort, "derpd_connections_closed_total", {{"reason", "client_rejected"}}),
      2);
  EXPECT_TRUE(node.process->waitForLog(
      absl::StrCat("client nodekey:", unknown.hex(), " from 127.0.0.1 rejected (not_in_tailnet)"),
      5 * kSecond))
      << node.process->logText();

  // The request is the one Tailscale's LocalAPI client sends for WhoIsNodeKey.
  std::vector<nlohmann::json> reqs = localapi->requests();
  ASSERT_EQ(reqs.size(), 4u);
  const nlohmann::json& r = reqs[0];
  EXPECT_EQ(r["method"], "GET");
  EXPECT_EQ(r["version"], "HTTP/1.1");
  EXPECT_EQ(r["target"], "/localapi/v0/whois?addr=nodekey%3A" + known1.hex());
  std::map<std::string, std::string> headers;
  for (const auto& h : r["headers"]) headers[h[0].get<std::string>()] = h[1].get<std::string>();
  EXPECT_EQ(headers["Host"], "local-tailscaled.sock");
  EXPECT_EQ(headers["Tailscale-Cap"], "130");
  EXPECT_EQ(headers.count("Content-Length"), 0u) << "a GET without a body";

  // Answers are cached: reconnecting costs no request.
  c1.reset();
  for (int i = 0; i < 5; i++) {
    ASSERT_OK_AND_ASSIGN(auto again, DerpClient::connect(known1.opts));
  }
  EXPECT_FALSE(DerpClient::connect(unknown.opts).ok());
  EXPECT_EQ(localapi->requestsAbout(known1.opts.key.publicKey()), 1u);
  EXPECT_EQ(localapi->requestsAbout(unknown.opts.key.publicKey()), 1u);
}

TEST_F(VerifyTest, SlowOrMissingTailscaledRejects) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath()}));
  Client slow = newClient(node.process->port());
  ASSERT_OK(localapi->setRules({{slow.hex(), "slow"}}));
  // tailscaled answers after 8 s; derpd gives up after 5 s (within the 10 s
  // handshake deadline) and fails closed.
  const Nanos start = client::monotonicNow();
  EXPECT_FALSE(DerpClient::connect(slow.opts).ok());
  EXPECT_LT(client::monotonicNow() - start, 8 * kSecond);
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "tailscaled_error"}}), 1);

  ASSERT_OK_AND_ASSIGN(MetricsNode none,
                       startDerpd({"-verify-clients", "-socket", dir_ + "/no-such.sock"}));
  EXPECT_FALSE(DerpClient::connect(newClient(none.process->port()).opts).ok());
  EXPECT_EQ(metric(none.metricsPort, kRejected, {{"reason", "tailscaled_error"}}), 1);
}

TEST_F(VerifyTest, TailscaledTooOldIsSaidOnce) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK(localapi->setRules({{"*", "tooold"}}));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath()}));
  for (int i = 0; i < 3; i++) {
    EXPECT_FALSE(DerpClient::connect(newClient(node.process->port()).opts).ok());
  }
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "tailscaled_too_old"}}), 3);
  ASSERT_TRUE(node.process->waitForLog("tailscaled too old for -verify-clients", 5 * kSecond));
  size_t said = 0;
  for (const std::string& line : node.process->logLines()) {
    if (line.find("error") != std::string::npos &&
        line.find("tailscaled too old for -verify-clients") != std::string::npos) {
      said++;
    }
  }
  EXPECT_EQ(said, 1u) << node.process->logText();
}

TEST_F(VerifyTest, MeshPeersSkipVerification) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  const std::string psk = randomMeshKey();
  ASSERT_OK(replaceFileAtomically(dir_, "mesh.psk", psk));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath(),
                                   "-mesh-psk-file", dir_ + "/mesh.psk"}));
  Client peer = newClient(node.process->port());
  peer.opts.meshKey = psk;
  ASSERT_OK_AND_ASSIGN(auto p, DerpClient::connect(peer.opts));
  EXPECT_EQ(localapi->requestsAbout(peer.opts.key.publicKey()), 0u);
  EXPECT_FALSE(DerpClient::connect(newClient(node.process->port()).opts).ok());
}

// Frames a client sends behind its ClientInfo, before it has read a byte,
// wait (unread) while it is verified and are served once it is admitted.
TEST_F(VerifyTest, FramesBehindClientInfoWaitForTheVerdict) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath()}));
  const uint16_t port = node.process->port();
  Client receiver = newClient(port);
  derp::PrivateKey key = derp::PrivateKey::generate();
  ASSERT_OK(localapi->setRules({{receiver.hex(), "known"}, {key.publicKey().hex(), "delayed"}}));
  ASSERT_OK_AND_ASSIGN(auto r, DerpClient::connect(receiver.opts));
  ASSERT_OK_AND_ASSIGN(derp::NodeKey serverKey, serverKeyOf(*node.process));

  std::vector<uint8_t> tail = clientInfoFrameBytes(key, serverKey, R"({"version":2})");
  std::vector<uint8_t> payload = taggedPayload(7, 9, 1000);
  const derp::NodeKey dst = receiver.opts.key.publicKey();
  std::vector<uint8_t> send(dst.bytes.begin(), dst.bytes.end());
  send.insert(send.end(), payload.begin(), payload.end());
  const std::vector<uint8_t> pingData(8, 0x42);
  for (const std::vector<uint8_t>& f :
       std::vector<std::vector<uint8_t>>{frameBytes(typeByte(derp::FrameType::kSendPacket), send),
                                         frameBytes(typeByte(derp::FrameType::kPing), pingData)}) {
    tail.insert(tail.end(), f.begin(), f.end());
  }
  ASSERT_OK_AND_ASSIGN(TcpConn c, TcpConn::connect(port));
  const Nanos start = client::monotonicNow();
  ASSERT_OK_AND_ASSIGN(derp::NodeKey sent, rawUpgrade(c, port, 5 * kSecond, tail));
  EXPECT_TRUE(sent == serverKey);
  ASSERT_OK_AND_ASSIGN(RawFrame info, readRawFrame(c, 5 * kSecond));
  EXPECT_EQ(info.type, typeByte(derp::FrameType::kServerInfo));
  EXPECT_GE(client::monotonicNow() - start, 900 * kMillisecond) << "admitted before the answer";
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, r->recvPacket(5 * kSecond));
  EXPECT_EQ(p.payload, payload);
  for (;;) {
    ASSERT_OK_AND_ASSIGN(RawFrame f, readRawFrame(c, 5 * kSecond));
    if (f.type != typeByte(derp::FrameType::kPong)) continue;
    EXPECT_EQ(f.body, std::string(8, 0x42));
    break;
  }
}

// Over TLS, with the meta-cert's fast start (ClientInfo in the request's
// write), as Tailscale's clients connect.
TEST_F(VerifyTest, VerifiesOverTls) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK_AND_ASSIGN(MetricsNode node, startDerpd({"-verify-clients", "-socket",
                                                     localapi->socketPath(), "-certmode", "manual",
                                                     "-hostname", "127.0.0.1", "-certdir", dir_}));
  Client known = newClient(node.process->port()), other = newClient(node.process->port());
  known.opts.tls = other.opts.tls = true;
  known.opts.insecure = other.opts.insecure = true;
  ASSERT_OK(localapi->setRules({{known.hex(), "delayed"}, {other.hex(), "known"}}));
  ASSERT_OK_AND_ASSIGN(auto a, DerpClient::connect(known.opts));
  EXPECT_TRUE(a->usedFastStart());
  ASSERT_OK_AND_ASSIGN(auto b, DerpClient::connect(other.opts));
  expectRelays(*a, *b);
  expectRelays(*b, *a);
  EXPECT_FALSE(DerpClient::connect(newClient(node.process->port()).opts).ok());
}

// The admission URL's answers, with -verify-client-url-fail-open true (the
// default) and false: only a missing answer depends on it.
TEST_F(VerifyTest, AdmissionUrlAnswers) {
  ASSERT_OK_AND_ASSIGN(auto admission, StandIn::start("admission", dir_));
  for (bool failOpen : {true, false}) {
    SCOPED_TRACE(failOpen ? "fail open" : "fail closed");
    ASSERT_OK_AND_ASSIGN(
        MetricsNode node,
        startDerpd({"-verify-client-url", admission->url(),
                    absl::StrCat("-verify-client-url-fail-open=", failOpen ? "true" : "false")}));
    const uint16_t port = node.process->port();
    struct Case {
      const char* rule;
      bool admitted;
      const char* reason;
    };
    const Case cases[] = {
        {"allow", true, nullptr},
        {"deny", false, "url_denied"},
        {"status500", false, "url_status"},
        {"garbage", false, "url_bad_reply"},
        {"huge", false, "url_bad_reply"},
        // Last: a timeout keeps the URL from being asked for 2 s.
        {"hang", failOpen, failOpen ? nullptr : "url_unreachable"},
    };
    nlohmann::json rules = nlohmann::json::object();
    std::vector<Client> clients;
    for (const Case& c : cases) {
      clients.push_back(newClient(port));
      rules[clients.back().hex()] = c.rule;
    }
    ASSERT_OK(admission->setRules(rules));
    std::unique_ptr<DerpClient> allowed;
    for (size_t i = 0; i < std::size(cases); i++) {
      SCOPED_TRACE(cases[i].rule);
      const Nanos start = client::monotonicNow();
      absl::StatusOr<std::unique_ptr<DerpClient>> c = DerpClient::connect(clients[i].opts);
      EXPECT_EQ(c.ok(), cases[i].admitted) << c.status();
      EXPECT_LT(client::monotonicNow() - start, 7 * kSecond);
      if (cases[i].reason != nullptr) {
        double sofar = 0;  // garbage and huge are both url_bad_reply
        for (size_t j = 0; j <= i; j++) {
          if (cases[j].reason != nullptr && std::string(cases[j].reason) == cases[i].reason) {
            sofar++;
          }
        }
        EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", cases[i].reason}}), sofar);
      }
      if (c.ok() && allowed) expectRelays(**c, *allowed);
      if (c.ok() && !allowed) allowed = std::move(*c);
    }
    // What was POSTed: derper's DERPAdmitClientRequest.
    std::vector<nlohmann::json> reqs = admission->requests();
    ASSERT_FALSE(reqs.empty());
    const nlohmann::json& last = reqs.back();
    EXPECT_EQ(last["method"], "POST");
    EXPECT_EQ(last["target"], "/derp/admit");
    EXPECT_EQ(last["body"], absl::StrCat(R"({"NodePublic":"nodekey:)", clients.back().hex(),
                                         R"(","Source":"127.0.0.1"})"));
    // A new derpd for the second round, and a new log to count its requests.
    ::unlink((dir_ + "/admission-requests.jsonl").c_str());
  }
}

TEST_F(VerifyTest, UnreachableAdmissionUrlFollowsFailOpen) {
  ASSERT_OK_AND_ASSIGN(uint16_t closed, freeLoopbackPort());
  const std::string url = absl::StrCat("http://127.0.0.1:", closed, "/verify");
  ASSERT_OK_AND_ASSIGN(MetricsNode open, startDerpd({"-verify-client-url", url}));
  EXPECT_TRUE(DerpClient::connect(newClient(open.process->port()).opts).ok());
  EXPECT_EQ(metric(open.metricsPort, kVerified), 1);
  ASSERT_OK_AND_ASSIGN(MetricsNode shut, startDerpd({"-verify-client-url", url,
                                                     "-verify-client-url-fail-open=false"}));
  EXPECT_FALSE(DerpClient::connect(newClient(shut.process->port()).opts).ok());
  EXPECT_EQ(metric(shut.metricsPort, kRejected, {{"reason", "url_unreachable"}}), 1);
}

TEST_F(VerifyTest, BothMustAdmit) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK_AND_ASSIGN(auto admission, StandIn::start("admission", dir_));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath(),
                                   "-verify-client-url", admission->url()}));
  const uint16_t port = node.process->port();
  Client both = newClient(port), urlSaysNo = newClient(port), notInTailnet = newClient(port);
  ASSERT_OK(localapi->setRules({{both.hex(), "known"}, {urlSaysNo.hex(), "known"}}));
  ASSERT_OK(admission->setRules({{urlSaysNo.hex(), "deny"}}));
  EXPECT_TRUE(DerpClient::connect(both.opts).ok());
  EXPECT_FALSE(DerpClient::connect(urlSaysNo.opts).ok());
  EXPECT_FALSE(DerpClient::connect(notInTailnet.opts).ok());
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "url_denied"}}), 1);
  EXPECT_EQ(metric(node.metricsPort, kRejected, {{"reason", "not_in_tailnet"}}), 1);
  // tailscaled said no: the URL was not asked.
  EXPECT_EQ(admission->requestsAbout(notInTailnet.opts.key.publicKey()), 0u);
}

// A reconnect storm: many connections of a few keys at once cost one request
// per key (the others wait for that answer or find it cached).
TEST_F(VerifyTest, StormCostsOneRequestPerKey) {
  ASSERT_OK_AND_ASSIGN(auto localapi, StandIn::start("localapi", dir_));
  ASSERT_OK(localapi->setRules({{"*", "known"}}));
  ASSERT_OK_AND_ASSIGN(MetricsNode node,
                       startDerpd({"-verify-clients", "-socket", localapi->socketPath()}));
  constexpr int kKeys = 5;
  constexpr int kPerKey = 40;
  std::vector<Client> keys;
  for (int i = 0; i < kKeys; i++) keys.push_back(newClient(node.process->port()));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kKeys * 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerKey / 4; i++) {
        if (DerpClient::connect(keys[t % kKeys].opts).ok()) ok++;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), kKeys * kPerKey);
  EXPECT_EQ(localapi->requests().size(), static_cast<size_t>(kKeys));
}

}  // namespace
}  // namespace derpd::testing
