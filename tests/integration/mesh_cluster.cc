#include "integration/mesh_cluster.h"

#include "integration/test_support.h"

#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/hex.h"
#include "base/unique_fd.h"
#include "integration/test_pki.h"

namespace derpd::testing {
namespace {

constexpr Nanos kPollInterval = 50 * kMillisecond;
constexpr int kPortAttempts = 4;
// After a SIGKILL the kernel releases the listening port at once; this is slack.
constexpr Nanos kRestartWindow = 5 * kSecond;

Nanos now() {
  static const RealClock clock;
  return clock.now();
}



}  // namespace

// A port nothing listens on at 127.0.0.1 right now (the nodes bind it on
// other loopback addresses too; a node that still cannot bind it makes
// start() try another).
absl::StatusOr<uint16_t> freePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError("bind 127.0.0.1:0");
  }
  return ntohs(addr.sin_port);
}

std::vector<uint8_t> meshPayload(uint32_t seq, uint32_t tag) {
  return taggedPayload(seq, tag, kMeshPayloadSize);
}

absl::StatusOr<uint32_t> recvTagged(client::DerpClient& to, const derp::NodeKey& src, uint32_t tag,
                                    Nanos timeout) {
  RealClock clock;
  const Nanos deadline = clock.now() + timeout;
  for (;;) {
    absl::StatusOr<client::DerpClient::Packet> p =
        to.recvPacket(std::max<Nanos>(deadline - clock.now(), 0));
    if (!p.ok()) return p.status();
    if (p->src != src || payloadTag(p->payload) != tag) continue;
    if (p->payload != meshPayload(payloadSeq(p->payload), tag)) {
      return absl::DataLossError(absl::StrCat("packet tagged ", tag, " corrupted"));
    }
    return payloadSeq(p->payload);
  }
}

absl::Status sendUntilDelivered(client::DerpClient& from, client::DerpClient& to, uint32_t tag,
                                Nanos timeout) {
  RealClock clock;
  const Nanos deadline = clock.now() + timeout;
  for (uint32_t seq = 0;; ++seq) {
    if (absl::Status st = from.sendPacket(to.publicKey(), meshPayload(seq, tag)); !st.ok()) {
      return st;
    }
    absl::StatusOr<uint32_t> got = recvTagged(to, from.publicKey(), tag, kMeshRetryEvery);
    if (got.ok()) return absl::OkStatus();
    if (!absl::IsDeadlineExceeded(got.status())) return got.status();
    if (clock.now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("none of ", seq + 1, " packets tagged ", tag,
                                                      " from ", from.publicKey().toString(),
                                                      " reached ", to.publicKey().toString()));
    }
  }
}

std::string randomMeshKey() {
  std::array<uint8_t, 32> bytes;
  randombytes_buf(bytes.data(), bytes.size());
  return hexEncode(bytes);
}

uint64_t raiseFdLimit() {
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0) return 0;
  if (nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
    ::getrlimit(RLIMIT_NOFILE, &nofile);
  }
  return nofile.rlim_cur;
}

absl::StatusOr<double> waitForMetricWhere(uint16_t port, std::string_view name,
                                          const Labels& filter,
                                          const std::function<bool(double)>& pred, Nanos timeout) {
  const Nanos deadline = now() + timeout;
  for (;;) {
    absl::StatusOr<double> v = scrapeMetric(port, name, filter);
    if (!v.ok() || pred(*v) || now() >= deadline) return v;
    ::usleep(kPollInterval / kMicrosecond);
  }
}


// ---- MeshCluster ----

absl::StatusOr<std::unique_ptr<MeshCluster>> MeshCluster::start(Options opts) {
  std::unique_ptr<MeshCluster> c(new MeshCluster(std::move(opts)));
  absl::StatusOr<std::string> dir = makeTempDir();
  if (!dir.ok()) return dir.status();
  c->dir_ = *dir;
  c->meshKey_ = randomMeshKey();
  // With surrounding whitespace, which derpd trims, as an editor might leave it.
  if (absl::Status st = replaceFileAtomically(c->dir_, "mesh.psk", "  " + c->meshKey_ + "\n");
      !st.ok()) {
    return st;
  }
  c->pskFile_ = c->dir_ + "/mesh.psk";
  absl::Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    absl::StatusOr<uint16_t> port = freePort();
    if (!port.ok()) return port.status();
    c->port_ = *port;
    last = c->startAll();
    if (last.ok()) return c;
    c->nodes_.clear();
  }
  return last;
}

MeshCluster::~MeshCluster() {
  nodes_.clear();
  if (!dir_.empty()) removeTree(dir_);
}

absl::Status MeshCluster::startAll() {
  for (int n = 1; n <= opts_.nodes; ++n) {
    absl::StatusOr<Node> node = startNode(n);
    if (!node.ok()) return node.status();
    nodes_.push_back(*std::move(node));
  }
  return absl::OkStatus();
}

std::string MeshCluster::ip(int n) { return absl::StrCat("127.0.0.", n); }

std::string MeshCluster::label(int n) const {
  return absl::StrCat(opts_.scheme, ip(n), ":", port_);
}

std::string MeshCluster::meshWith() const {
  std::vector<std::string> items;
  for (int n = 1; n <= opts_.nodes; ++n) items.push_back(label(n));
  return absl::StrJoin(items, ",");
}

std::string MeshCluster::keyFile(int n) const { return absl::StrCat(dir_, "/node", n, ".key"); }

DerpdOptions MeshCluster::nodeOptions(const std::string& ip, const std::string& keyFile,
                                      const std::string& meshWith, const std::string& pskFile,
                                      std::vector<std::string> extra) const {
  DerpdOptions o;
  o.defaultArgs = false;
  o.keyPath = keyFile;
  o.extraArgs = {"-a", absl::StrCat(ip, ":", port_), "-c", keyFile, "--shards", "2"};
  o.extraArgs.insert(o.extraArgs.end(), {"-http-port", "-1", "-stun=false"});
  o.extraArgs.insert(o.extraArgs.end(), {"-mesh-with", meshWith, "-mesh-psk-file", pskFile});
  // On 127.0.0.1, where scrapeMetrics() looks, at a port the kernel picks.
  o.extraArgs.insert(o.extraArgs.end(), {"--metrics-addr", "127.0.0.1:0"});
  o.extraArgs.insert(o.extraArgs.end(), extra.begin(), extra.end());
  return o;
}


absl::StatusOr<MeshCluster::Node> MeshCluster::startNode(int n) const {
  std::vector<std::string> extra;
  if (opts_.nodeArgs) extra = opts_.nodeArgs(n);
  DerpdOptions o = nodeOptions(ip(n), keyFile(n), meshWith(), pskFile_, std::move(extra));
  if (opts_.nodeEnv) o.env = opts_.nodeEnv(n);
  absl::StatusOr<MetricsNode> started = startWithMetrics(std::move(o));
  if (!started.ok()) return started.status();
  Node node;
  static_cast<MetricsNode&>(node) = *std::move(started);
  absl::StatusOr<derp::NodeKey> key = serverKeyOf(*node.process);
  if (!key.ok()) return key.status();
  node.serverKey = *key;
  return node;
}

absl::Status MeshCluster::waitPeerUp(int observer, int peer, bool up, Nanos timeout) {
  const double want = up ? 1 : 0;
  absl::StatusOr<double> v = waitForMetricWhere(
      metricsPort(observer), "derpd_mesh_peer_up", {{"peer", label(peer)}},
      [want](double v) { return v == want; }, timeout);
  if (!v.ok()) return v.status();
  if (*v != want) {
    return absl::DeadlineExceededError(
        absl::StrCat("node ", observer, " reports derpd_mesh_peer_up{peer=\"", label(peer), "\"} ",
                     *v, ", not ", want, ", after ", timeout / kMillisecond, " ms"));
  }
  return absl::OkStatus();
}

absl::Status MeshCluster::waitFormed(Nanos timeout) {
  const Nanos deadline = now() + timeout;
  for (int observer = 1; observer <= size(); ++observer) {
    for (int peer = 1; peer <= size(); ++peer) {
      if (peer == observer) continue;
      absl::Status st = waitPeerUp(observer, peer, true, std::max<Nanos>(deadline - now(), 0));
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

absl::Status MeshCluster::kill(int n) {
  if (absl::Status st = node(n).sendSignal(SIGKILL); !st.ok()) return st;
  absl::StatusOr<int> code = node(n).waitExit(kRestartWindow);
  return code.ok() ? absl::OkStatus() : code.status();
}

absl::Status MeshCluster::restart(int n) {
  nodes_.at(n - 1).process.reset();
  const Nanos deadline = now() + kRestartWindow;
  for (;;) {
    absl::StatusOr<Node> node = startNode(n);
    if (node.ok()) {
      nodes_.at(n - 1) = *std::move(node);
      return absl::OkStatus();
    }
    if (now() >= deadline) return node.status();
    ::usleep(kPollInterval * 4 / kMicrosecond);
  }
}

client::ClientOptions MeshCluster::clientOptions(int n) const {
  client::ClientOptions o;
  o.host = ip(n);
  o.port = port_;
  if (opts_.scheme == "https://") {
    o.tls = true;
    o.caFile = opts_.clientCaFile;
  }
  return o;
}

absl::StatusOr<std::unique_ptr<client::DerpClient>> MeshCluster::connect(int n) const {
  return client::DerpClient::connect(clientOptions(n));
}

absl::StatusOr<std::unique_ptr<client::DerpClient>> MeshCluster::connect(
    int n, const derp::PrivateKey& key) const {
  client::ClientOptions o = clientOptions(n);
  o.key = key;
  return client::DerpClient::connect(o);
}

}  // namespace derpd::testing
