// Mesh peers found by DNS (issue 8, "Beyond derper"): every node lists one
// name in -mesh-with that resolves to an address per node (a Kubernetes
// headless Service), resolved again every --mesh-resolve-interval. Nodes on
// 127.0.0.1-3 share one port; the test adds and removes addresses and checks
// that the links, the metrics and the routes follow, that a node never links
// to itself, and that a node dropped from the name is no longer reachable
// through the others even though it still runs. Also the production layout:
// TLS nodes each addressed by a name of their own, listing every name (their
// own skipped by -hostname) and linking by name under --mesh-ca.
//
// DNS is the test's own: each derpd runs in a mount namespace of its own with
// a test-owned hosts file bound over /etc/hosts (glibc's files backend answers
// every address listed for a name). The file is rewritten in place, keeping
// its inode, so the bind mounts see each change. Exits 77 (skipped) when not
// root or unshare, mount or getent are missing. Every wait is bounded.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/unique_fd.h"
#include "client/derp_client.h"
#include "derp/frame.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/mesh_cluster.h"
#include "integration/metrics_text.h"
#include "integration/test_pki.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr char kName[] = "derp-region.test";
constexpr char kResolveInterval[] = "1s";
// A change to the hosts file is followed within one resolve interval plus a
// connect; this is the slack.
constexpr Nanos kFollow = 10 * kSecond;
constexpr Nanos kQuiet = 300 * kMillisecond;  // long enough for a wrongly relayed packet to show
constexpr size_t kPayloadSize = kMeshPayloadSize;
constexpr int kPortAttempts = 4;
// Binds the hosts file ($1) over /etc/hosts, then execs $0 with the rest.
constexpr char kBindHostsScript[] = "mount --bind \"$1\" /etc/hosts && shift && exec \"$0\" \"$@\"";

// Set by main() once it has checked that the tools work here.
std::string gUnshare;
std::string gSh;

Nanos now() {
  static const RealClock clock;
  return clock.now();
}

Nanos until(Nanos deadline) { return std::max<Nanos>(deadline - now(), 0); }

std::string ip(int n) { return absl::StrCat("127.0.0.", n); }

// Node n's peer="..." label on the others: the entry, then the address (the
// name resolves to several).
std::string label(int n) { return absl::StrCat(kName, "/", ip(n)); }

// argv run in a fresh mount namespace where hostsFile is /etc/hosts.
std::vector<std::string> withHostsFile(const std::string& hostsFile,
                                       const std::vector<std::string>& argv) {
  std::vector<std::string> out = {gUnshare, "--mount", "--propagation",  "private",  "--",
                                  gSh,      "-c",      kBindHostsScript, argv.at(0), hostsFile};
  out.insert(out.end(), argv.begin() + 1, argv.end());
  return out;
}

// Node n's own name for the TLS case: its -hostname, its certificate's only
// name, and its -mesh-with item (so also its peer="..." label on the other).
std::string hostname(int n) { return absl::StrCat("derp", n, ".test"); }

// A hosts file giving each node of the TLS case its own name.
std::string namedHostsText(int nodes) {
  std::string text = "127.0.0.1 localhost\n";
  for (int n = 1; n <= nodes; ++n) absl::StrAppend(&text, ip(n), " ", hostname(n), "\n");
  return text;
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string hostsText(const std::vector<int>& nodes) {
  std::string text = "127.0.0.1 localhost\n";
  for (int n : nodes) absl::StrAppend(&text, ip(n), " ", kName, "\n");
  return text;
}

// Rewrites path in place (O_TRUNC, same inode): a bind mount of it sees the
// new contents, which a rename would not give it.
absl::Status rewriteInPlace(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return absl::InternalError(absl::StrCat("write ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

// Sends from -> to until from hears PeerGone(to, not_here): to's key has left
// from's node. Other frames are skipped.
absl::Status sendUntilNotHere(DerpClient& from, const derp::NodeKey& to, uint32_t tag) {
  const Nanos deadline = now() + kFollow;
  for (uint32_t seq = 0; now() < deadline; ++seq) {
    if (absl::Status st = from.sendPacket(to, meshPayload(seq, tag)); !st.ok()) return st;
    // PeerGone is rate-limited to one a second after the first three.
    const Nanos wait = std::min<Nanos>(until(deadline), kSecond);
    const Nanos waitEnd = now() + wait;
    while (now() < waitEnd) {
      absl::StatusOr<client::OwnedFrame> f = from.recv(until(waitEnd));
      if (absl::IsDeadlineExceeded(f.status())) break;
      if (!f.ok()) return f.status();
      absl::StatusOr<derp::Frame> parsed = f->parse();
      if (!parsed.ok()) return parsed.status();
      const auto* gone = std::get_if<derp::PeerGoneFrame>(&*parsed);
      if (gone != nullptr && gone->key == to && gone->reason == derp::PeerGoneReason::kNotHere) {
        return absl::OkStatus();
      }
    }
  }
  return absl::DeadlineExceededError("no PeerGone(not_here) for the removed node's client");
}

// derpd_mesh_peer_up{peer=label}, or nullopt when the node does not list that peer.
std::optional<double> peerUp(const std::vector<MetricSample>& samples, const std::string& label) {
  for (const MetricSample& s : samples) {
    if (s.name != "derpd_mesh_peer_up") continue;
    for (const auto& [k, v] : s.labels) {
      if (k == "peer" && v == label) return s.value;
    }
  }
  return std::nullopt;
}

// Every peer="..." label of derpd_mesh_peer_up, in order.
std::vector<std::string> peerUpLabels(const std::vector<MetricSample>& samples) {
  std::vector<std::string> out;
  for (const MetricSample& s : samples) {
    if (s.name != "derpd_mesh_peer_up") continue;
    for (const auto& [k, v] : s.labels) {
      if (k == "peer") out.push_back(v);
    }
  }
  return out;
}

std::string describe(std::optional<double> v) {
  return v.has_value() ? absl::StrCat(*v) : std::string("absent");
}

class MeshDnsTest : public ::testing::Test {
 protected:
  using Node = MetricsNode;

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, makeTempDir());
    ASSERT_OK_AND_ASSIGN(std::string derpd, binaryFromEnv("DERPD_BINARY"));
    hostsFile_ = dir_ + "/hosts";
    ASSERT_OK(rewriteInPlace(hostsFile_, hostsText({})));
    ASSERT_OK(replaceFileAtomically(dir_, "mesh.psk", randomMeshKey() + "\n"));
    // DerpdProcess runs $DERPD_BINARY: here a script that execs derpd (same
    // pid, so signals reach it) inside its own view of /etc/hosts.
    std::vector<std::string> argv = withHostsFile(hostsFile_, {derpd});
    std::string script = "#!/bin/sh\nexec";
    for (const std::string& a : argv) absl::StrAppend(&script, " ", shellQuote(a));
    absl::StrAppend(&script, " \"$@\"\n");
    ASSERT_OK(replaceFileAtomically(dir_, "derpd-with-hosts", script));
    ASSERT_EQ(::chmod((dir_ + "/derpd-with-hosts").c_str(), 0755), 0) << strerror(errno);
    realDerpd_ = derpd;
    ::setenv("DERPD_BINARY", (dir_ + "/derpd-with-hosts").c_str(), 1);
  }

  void TearDown() override {
    nodes_.clear();
    if (!realDerpd_.empty()) ::setenv("DERPD_BINARY", realDerpd_.c_str(), 1);
    if (!dir_.empty()) removeTree(dir_);
  }

  absl::Status setHosts(const std::vector<int>& nodes) {
    std::vector<std::string> ips;
    for (int n : nodes) ips.push_back(ip(n));
    std::fprintf(stderr, "[test] %s -> %s\n", kName, absl::StrJoin(ips, ", ").c_str());
    return rewriteInPlace(hostsFile_, hostsText(nodes));
  }

  // Node n on 127.0.0.n at the shared port, with the mesh key and metrics
  // every test uses, and the arguments nodeArgs_ adds for it.
  absl::StatusOr<Node> startNode(int n) {
    DerpdOptions o;
    o.defaultArgs = false;
    const std::string key = absl::StrCat(dir_, "/node", n, ".key");
    o.keyPath = key;
    o.extraArgs = {"-a",
                   absl::StrCat(ip(n), ":", port_),
                   "-http-port",
                   "-1",
                   "-stun=false",
                   "--shards",
                   "2",
                   "-c",
                   key,
                   "-mesh-psk-file",
                   dir_ + "/mesh.psk",
                   "--metrics-addr",
                   "127.0.0.1:0"};
    std::vector<std::string> extra = nodeArgs_(n);
    o.extraArgs.insert(o.extraArgs.end(), extra.begin(), extra.end());
    return startWithMetrics(std::move(o));
  }

  // Starts nodes 1..count, the first on a free port the others then share.
  void startNodes(int count) {
    absl::Status last;
    for (int attempt = 0; attempt < kPortAttempts && nodes_.empty(); ++attempt) {
      ASSERT_OK_AND_ASSIGN(port_, freePort());
      absl::StatusOr<Node> first = startNode(1);
      if (first.ok()) {
        nodes_.push_back(*std::move(first));
      } else {
        last = first.status();
      }
    }
    ASSERT_FALSE(nodes_.empty()) << last;
    while (static_cast<int>(nodes_.size()) < count) startOneMore();
  }

  void startOneMore() {
    ASSERT_OK_AND_ASSIGN(Node node, startNode(static_cast<int>(nodes_.size()) + 1));
    nodes_.push_back(std::move(node));
  }

  DerpdProcess& node(int n) { return *nodes_.at(n - 1).process; }
  uint16_t metricsPort(int n) const { return nodes_.at(n - 1).metricsPort; }

  // Waits until observer lists peerLabel with derpd_mesh_peer_up 1 (want =
  // 1) or not at all (want = nullopt).
  absl::Status waitPeer(int observer, const std::string& peerLabel, std::optional<double> want,
                        Nanos timeout = kFollow) {
    const Nanos deadline = now() + timeout;
    std::optional<double> seen;
    for (;;) {
      absl::StatusOr<std::vector<MetricSample>> m = scrapeMetrics(metricsPort(observer));
      if (!m.ok()) return m.status();
      seen = peerUp(*m, peerLabel);
      if (seen == want) return absl::OkStatus();
      if (now() >= deadline) break;
      ::usleep(50 * kMillisecond / kMicrosecond);
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "node ", observer, " reports derpd_mesh_peer_up{peer=\"", peerLabel, "\"} ", describe(seen),
        ", not ", describe(want), " after ", timeout / kMillisecond, " ms"));
  }
  // The same for node `peer` found through kName.
  absl::Status waitPeer(int observer, int peer, std::optional<double> want,
                        Nanos timeout = kFollow) {
    return waitPeer(observer, label(peer), want, timeout);
  }

  double metric(int n, std::string_view name, const Labels& filter = {}) {
    absl::StatusOr<double> v = scrapeMetric(metricsPort(n), name, filter);
    EXPECT_TRUE(v.ok()) << "node " << n << ": " << v.status();
    return v.ok() ? *v : -1;
  }

  absl::StatusOr<std::unique_ptr<DerpClient>> connect(int n) {
    client::ClientOptions o;
    o.host = ip(n);
    o.port = port_;
    return DerpClient::connect(o);
  }

  std::string dir_;
  std::string hostsFile_;
  std::string realDerpd_;
  // What node n adds to the common arguments: by default a mesh found
  // through kName, re-resolved every kResolveInterval.
  std::function<std::vector<std::string>(int n)> nodeArgs_ = [](int) {
    return std::vector<std::string>{"-mesh-with", kName, "--mesh-resolve-interval",
                                    kResolveInterval};
  };
  uint16_t port_ = 0;
  std::vector<Node> nodes_;
};

constexpr std::optional<double> kUp = 1;
constexpr std::optional<double> kUnlisted = std::nullopt;

TEST_F(MeshDnsTest, NodesFollowTheNameAsAddressesComeAndGo) {
  // A and B: the name lists both.
  ASSERT_OK(setHosts({1, 2}));
  startNodes(2);
  if (HasFatalFailure()) return;
  ASSERT_OK(waitPeer(1, 2, kUp));
  ASSERT_OK(waitPeer(2, 1, kUp));
  // Each found itself among the addresses (same server key) and dropped it.
  ASSERT_OK(waitPeer(1, 1, kUnlisted));
  ASSERT_OK(waitPeer(2, 2, kUnlisted));
  EXPECT_TRUE(node(1).findLog(absl::StrCat("mesh: ", label(1), " is this node")).has_value());
  ASSERT_OK_AND_ASSIGN(auto a, connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, connect(2));
  ASSERT_OK(sendUntilDelivered(*a, *b, 1, kFollow));
  ASSERT_OK(sendUntilDelivered(*b, *a, 2, kFollow));

  // C starts while the name still lists only A and B: it links to both.
  startOneMore();
  if (HasFatalFailure()) return;
  ASSERT_OK(waitPeer(3, 1, kUp));
  ASSERT_OK(waitPeer(3, 2, kUp));
  // Then its address appears: A and B link to it; C finds itself.
  const Nanos added = now();
  ASSERT_OK(setHosts({1, 2, 3}));
  ASSERT_OK(waitPeer(1, 3, kUp));
  ASSERT_OK(waitPeer(2, 3, kUp));
  ASSERT_OK(waitPeer(3, 3, kUnlisted));
  std::fprintf(stderr, "[test] A and B linked to C %lld ms after its address appeared\n",
               static_cast<long long>((now() - added) / kMillisecond));
  ASSERT_OK_AND_ASSIGN(auto c, connect(3));
  ASSERT_OK(sendUntilDelivered(*c, *a, 3, kFollow));
  ASSERT_OK(sendUntilDelivered(*a, *c, 4, kFollow));
  EXPECT_GE(metric(1, "derpd_mesh_peer_keys", {{"peer", label(2)}}), 1);

  // B's address goes: A and C drop their link to it and forget its clients,
  // though B still runs.
  const Nanos removed = now();
  ASSERT_OK(setHosts({1, 3}));
  ASSERT_OK(waitPeer(1, 2, kUnlisted));
  ASSERT_OK(waitPeer(3, 2, kUnlisted));
  std::fprintf(stderr, "[test] A and C dropped B %lld ms after its address went\n",
               static_cast<long long>((now() - removed) / kMillisecond));
  EXPECT_TRUE(node(2).running());
  EXPECT_TRUE(
      node(1).findLog(absl::StrCat("mesh: peer ", label(2), " is no longer listed")).has_value());
  EXPECT_GE(metric(1, "derpd_connections_closed_total", {{"reason", "mesh_removed"}}), 1);
  ASSERT_OK(sendUntilNotHere(*a, b->publicKey(), 5));
  // Once A says so, nothing more reaches B's client from A.
  ASSERT_OK(a->sendPacket(b->publicKey(), meshPayload(0, 6)));
  absl::Status late = recvTagged(*b, a->publicKey(), 6, kQuiet).status();
  EXPECT_TRUE(absl::IsDeadlineExceeded(late)) << "B's client still reached from A: " << late;
  // A and C still reach each other.
  ASSERT_OK(sendUntilDelivered(*a, *c, 7, kFollow));
  ASSERT_OK(sendUntilDelivered(*c, *a, 8, kFollow));
  ASSERT_OK(waitPeer(1, 3, kUp, 0));
  ASSERT_OK(waitPeer(3, 1, kUp, 0));

  // Every node met itself once and never dialled itself again, through all
  // the re-resolutions.
  for (int n = 1; n <= 3; ++n) {
    EXPECT_EQ(metric(n, "derpd_connections_closed_total", {{"reason", "mesh_self"}}), 1)
        << "node " << n;
  }
}

// The mesh as production runs it: each node is addressed by a name of its
// own, serves TLS with a certificate for that name only (derper's manual
// layout, <certdir>/<hostname>.crt and .key), and lists every node's bare
// name in -mesh-with, its own included. A bare name takes the node's own
// scheme and port. A node skips the entry equal to its -hostname (derper's
// rule: never resolved, never dialled, never a peer label) and links to the
// other by name: SNI and the certificate check use the name, not the
// address, and only --mesh-ca is trusted.
TEST_F(MeshDnsTest, TlsNodesLinkByNameAndSkipTheirOwn) {
  constexpr int kNodes = 2;
  std::optional<std::string> openssl = findOnPath("openssl");
  if (!openssl.has_value()) GTEST_SKIP() << "openssl is not on PATH (package openssl)";
  const std::string certDir = dir_ + "/certs";
  ASSERT_EQ(::mkdir(certDir.c_str(), 0700), 0) << strerror(errno);
  absl::StatusOr<TestPki> pki = TestPki::create(certDir, *openssl);
  ASSERT_TRUE(pki.ok()) << pki.status();
  for (int n = 1; n <= kNodes; ++n) {
    // No IP SAN: a link that checked the address would fail.
    absl::StatusOr<LeafFiles> leaf = pki->issue(
        hostname(n), hostname(n), absl::StrCat("DNS:", hostname(n)), KeyType::kEcdsaP256);
    ASSERT_TRUE(leaf.ok()) << leaf.status();
  }
  ASSERT_OK(rewriteInPlace(hostsFile_, namedHostsText(kNodes)));
  const std::string caCrt = pki->caCrt();
  nodeArgs_ = [certDir, caCrt](int n) {
    return std::vector<std::string>{
        "-certmode", "manual",    "-certdir",   certDir,
        "-hostname", hostname(n), "-mesh-with", absl::StrCat(hostname(1), ",", hostname(2)),
        "--mesh-ca", caCrt};
  };
  startNodes(kNodes);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(node(1).findLog("listening on https://").has_value()) << node(1).logText();
  for (int n = 1; n <= kNodes; ++n) {
    absl::Status linked = waitPeer(n, hostname(3 - n), kUp);
    ASSERT_TRUE(linked.ok()) << linked << "\n" << node(n).logText();
  }

  for (int n = 1; n <= kNodes; ++n) {
    // Its own entry never became a target: one address, the other node's.
    EXPECT_TRUE(node(n).findLog("mesh: 2 peers listed in -mesh-with, 1 addresses").has_value())
        << node(n).logText();
    ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(metricsPort(n)));
    EXPECT_EQ(peerUpLabels(m), std::vector<std::string>{hostname(3 - n)}) << "node " << n;
    // Skipped by name, so never dialled and found to be itself by key.
    EXPECT_FALSE(node(n).findLog("is this node").has_value()) << node(n).logText();
    EXPECT_EQ(metric(n, "derpd_connections_closed_total", {{"reason", "mesh_self"}}), 0)
        << "node " << n;
  }

  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int n = 1; n <= kNodes; ++n) {
    client::ClientOptions o;
    o.host = ip(n);
    o.port = port_;
    o.tls = true;
    o.serverName = hostname(n);
    o.caFile = caCrt;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpClient> c, DerpClient::connect(o));
    EXPECT_FALSE(c->tlsVersion().empty());
    clients.push_back(std::move(c));
  }
  ASSERT_OK(sendUntilDelivered(*clients[0], *clients[1], 1, kFollow));
  ASSERT_OK(sendUntilDelivered(*clients[1], *clients[0], 2, kFollow));
}

// Empty when this machine can run the test, else why not: root, the tools,
// and a hosts file bound over /etc/hosts in a mount namespace answering the
// name with both addresses it lists.
std::string whyCannotRun() {
  if (::geteuid() != 0) return "needs root (a mount namespace and a bind mount over /etc/hosts)";
  std::optional<std::string> unshare = findOnPath("unshare");
  std::optional<std::string> sh = findOnPath("sh");
  std::optional<std::string> getent = findOnPath("getent");
  if (!unshare || !sh || !getent || !findOnPath("mount")) {
    return "unshare, mount, sh and getent must be on PATH (util-linux, libc-bin)";
  }
  gUnshare = *unshare;
  gSh = *sh;
  absl::StatusOr<std::string> dir = makeTempDir();
  if (!dir.ok()) return std::string(dir.status().message());
  const std::string hosts = *dir + "/hosts";
  absl::StatusOr<CommandResult> probe = absl::InternalError("cannot write " + hosts);
  if (rewriteInPlace(hosts, hostsText({1, 2})).ok()) {
    probe = runCommand(withHostsFile(hosts, {*getent, "ahosts", kName}), {}, 10 * kSecond);
  }
  removeTree(*dir);
  if (!probe.ok()) return std::string(probe.status().message());
  if (probe->exitCode != 0 || probe->out.find("127.0.0.1 ") == std::string::npos ||
      probe->out.find("127.0.0.2 ") == std::string::npos) {
    return absl::StrCat("a hosts file bound over /etc/hosts in a mount namespace does not answer ",
                        kName, " with both addresses: ", probe->out, probe->err);
  }
  return "";
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  std::string why = derpd::testing::whyCannotRun();
  if (!why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
