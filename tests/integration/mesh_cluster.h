// MeshCluster: real derpd nodes meshed into one region for integration tests.
//
// Node n (1-based) runs on 127.0.0.n; all share one port P (every node lists
// "127.0.0.1:P,...,127.0.0.N:P" in -mesh-with, itself included, as an operator
// would) and one mesh key. Each node has its own key file in the cluster's
// directory, so a node restarted after a kill keeps its identity, and its
// metrics on 127.0.0.1 at a port the kernel chose (read from its log). The
// cluster owns the processes and the directory. One thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "client/derp_client.h"
#include "derp/key.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"

namespace derpd::testing {

inline constexpr Nanos kMeshFormTimeout = 15 * kSecond;

// Packets the mesh tests send: taggedPayload() of this size.
inline constexpr size_t kMeshPayloadSize = 200;
// How long sendUntilDelivered waits for each try before sending again.
inline constexpr Nanos kMeshRetryEvery = 150 * kMillisecond;

// A port nothing listens on at 127.0.0.1 right now (the nodes bind it on
// other loopback addresses too; a node that still cannot bind it makes
// MeshCluster::start() try another).
absl::StatusOr<uint16_t> freePort();

std::vector<uint8_t> meshPayload(uint32_t seq, uint32_t tag);
// The next packet on `to` from src carrying tag (late copies of earlier
// retries, with other tags, are skipped); checks it is intact; returns its seq.
absl::StatusOr<uint32_t> recvTagged(client::DerpClient& to, const derp::NodeKey& src, uint32_t tag,
                                    Nanos timeout);
// Sends from -> to until one arrives: the first sends may leave before to's
// key has reached from's node (dropped there as unknown_dest).
absl::Status sendUntilDelivered(client::DerpClient& from, client::DerpClient& to, uint32_t tag,
                                Nanos timeout);

// 64 lowercase hex characters of fresh randomness: a mesh key.
std::string randomMeshKey();

// Raises the RLIMIT_NOFILE soft limit to the hard limit (derpd processes
// started afterwards inherit it). Returns the resulting soft limit.
uint64_t raiseFdLimit();

// Scrapes derpd's /metrics on 127.0.0.1:port until pred(value of name with
// filter) holds or the timeout passes; returns the last value seen.
absl::StatusOr<double> waitForMetricWhere(uint16_t port, std::string_view name,
                                          const Labels& filter,
                                          const std::function<bool(double)>& pred, Nanos timeout);


class MeshCluster {
 public:
  struct Options {
    int nodes = 3;
    // "" (bare items: plain HTTP, as the nodes serve it) or "https://".
    std::string scheme;
    // Arguments added for node n (for example TLS certificates).
    std::function<std::vector<std::string>(int n)> nodeArgs;
    // Environment added for node n (for example an LD_PRELOAD).
    std::function<EnvVars(int n)> nodeEnv;
    // With "https://": the CA file clients verify the nodes against.
    std::string clientCaFile;
  };

  // Writes the key files and the PSK file and starts every node on a free
  // port (a fresh one when a node cannot bind it). Does not wait for the mesh.
  static absl::StatusOr<std::unique_ptr<MeshCluster>> start(Options opts);
  ~MeshCluster();

  MeshCluster(const MeshCluster&) = delete;
  MeshCluster& operator=(const MeshCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_; }
  const std::string& pskFile() const { return pskFile_; }
  const std::string& meshKey() const { return meshKey_; }  // what pskFile() holds
  static std::string ip(int n);
  // Node n's -mesh-with item, which is also its peer="..." label on the others.
  std::string label(int n) const;
  // The whole -mesh-with value.
  std::string meshWith() const;

  DerpdProcess& node(int n) { return *nodes_.at(n - 1).process; }
  uint16_t metricsPort(int n) const { return nodes_.at(n - 1).metricsPort; }
  const derp::NodeKey& serverKey(int n) const { return nodes_.at(n - 1).serverKey; }

  // What node n (or any other node, with its own key file) is started with.
  DerpdOptions nodeOptions(const std::string& ip, const std::string& keyFile,
                           const std::string& meshWith, const std::string& pskFile,
                           std::vector<std::string> extra) const;

  // Waits until every node reports every other node's link up.
  absl::Status waitFormed(Nanos timeout = kMeshFormTimeout);
  // Waits until node `observer` reports its link to `peer` as up (1) or down (0).
  absl::Status waitPeerUp(int observer, int peer, bool up, Nanos timeout = kMeshFormTimeout);

  // SIGKILL, then wait for the exit.
  absl::Status kill(int n);
  // Starts node n again with its key file and port, retrying while the port
  // is still taken (briefly, after a kill).
  absl::Status restart(int n);

  // Options for a client of node n (plain or TLS as the nodes serve).
  client::ClientOptions clientOptions(int n) const;
  absl::StatusOr<std::unique_ptr<client::DerpClient>> connect(int n) const;
  // The same with a given key (to reconnect as the same client).
  absl::StatusOr<std::unique_ptr<client::DerpClient>> connect(int n,
                                                              const derp::PrivateKey& key) const;

 private:
  struct Node : MetricsNode {
    derp::NodeKey serverKey;
  };

  explicit MeshCluster(Options opts) : opts_(std::move(opts)) {}
  std::string keyFile(int n) const;
  absl::StatusOr<Node> startNode(int n) const;
  absl::Status startAll();

  Options opts_;
  std::string dir_;
  std::string meshKey_;
  std::string pskFile_;
  uint16_t port_ = 0;
  std::vector<Node> nodes_;
};

}  // namespace derpd::testing
