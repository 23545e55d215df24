// Steady-state relaying allocates nothing per packet: derpd runs with the
// alloc_counter LD_PRELOAD library, and the count of heap allocations across
// 100,000 relayed packets must stay (far) below one per thousand packets. Run
// once for a pair on one shard, once for a pair across shards, and once for a
// pair on two nodes of a mesh region (both nodes counted).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/mesh_cluster.h"
#include "integration/metrics_text.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr uint32_t kWarmupPackets = 20'000;
constexpr uint32_t kMeasuredPackets = 100'000;
constexpr size_t kPacketSize = 1200;
// At most derper's per-destination queue in flight, so nothing is dropped.
constexpr uint32_t kWindow = 32;
constexpr uint64_t kMaxAllocations = 100;
constexpr Nanos kWait = 5 * kSecond;
constexpr Nanos kPhaseBudget = 40 * kSecond;
constexpr size_t kCounterFileSize = 4096;

// The counter file the preloaded library increments, mapped read-only.
class AllocCounter {
 public:
  ~AllocCounter() {
    if (map_ != nullptr) ::munmap(map_, kCounterFileSize);
  }
  absl::Status create(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return absl::InternalError(absl::StrCat("open ", path));
    if (::ftruncate(fd, kCounterFileSize) != 0) {
      ::close(fd);
      return absl::InternalError("ftruncate");
    }
    void* p = ::mmap(nullptr, kCounterFileSize, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return absl::InternalError("mmap");
    map_ = p;
    return absl::OkStatus();
  }
  uint64_t read() const {
    return __atomic_load_n(static_cast<const uint64_t*>(map_), __ATOMIC_RELAXED);
  }

 private:
  void* map_ = nullptr;
};

// Relays count packets from -> to, at most kWindow in flight, checking each.
absl::Status relayMany(DerpClient& from, DerpClient& to, uint32_t count, Nanos budget) {
  RealClock clock;
  Nanos deadline = clock.now() + budget;
  std::vector<uint8_t> payload(kPacketSize, 0x5a);
  uint32_t received = 0;
  for (uint32_t sent = 0; sent < count;) {
    if (clock.now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("relayed only ", received, " of ", count, " packets in time"));
    }
    uint32_t end = std::min(sent + kWindow, count);
    for (; sent < end; ++sent) {
      std::memcpy(payload.data(), &sent, sizeof(sent));
      if (absl::Status st = from.sendPacket(to.publicKey(), payload); !st.ok()) return st;
    }
    for (; received < end; ++received) {
      absl::StatusOr<DerpClient::Packet> p = to.recvPacket(kWait);
      if (!p.ok()) {
        return absl::Status(p.status().code(),
                            absl::StrCat("packet ", received, ": ", p.status().message()));
      }
      if (payloadSeq(p->payload) != received || p->payload.size() != kPacketSize) {
        return absl::DataLossError(
            absl::StrCat("expected packet ", received, ", got ", payloadSeq(p->payload)));
      }
    }
  }
  return absl::OkStatus();
}

const char* allocCounterLib() {
  const char* lib = std::getenv("DERPD_ALLOC_COUNTER_LIB");
  return lib != nullptr && ::access(lib, R_OK) == 0 ? lib : nullptr;
}

class AllocTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* lib = allocCounterLib();
    ASSERT_TRUE(lib != nullptr)
        << "$DERPD_ALLOC_COUNTER_LIB does not name the alloc_counter library";
    ASSERT_OK_AND_ASSIGN(dir_, makeTempDir());
    std::string counterPath = dir_ + "/alloc_counter";
    ASSERT_OK(counter_.create(counterPath));
    DerpdOptions opts;
    opts.env = {{"LD_PRELOAD", lib}, {"DERPD_ALLOC_COUNTER_FILE", counterPath}};
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(opts));
    // Start-up allocates: a zero here means the counter is not wired up and
    // the test below could not fail.
    ASSERT_GT(counter_.read(), 0u) << "the preloaded counter saw no allocation at start-up";
    std::printf("allocations during start-up: %llu\n",
                static_cast<unsigned long long>(counter_.read()));
  }
  void TearDown() override {
    derpd_.reset();
    if (!dir_.empty()) removeTree(dir_);
  }

  // Connects clients until two share a shard and two do not; the shard of each
  // new client is the one whose current_connections gauge went up.
  void connectPairs() {
    std::vector<int> shardOf;
    for (int i = 0; i < 16 && (!local_.first || !cross_.first); ++i) {
      ASSERT_OK_AND_ASSIGN(auto c, connectClient(derpd_->port()));
      ASSERT_OK_AND_ASSIGN(double total, waitForMetric(derpd_->port(), "derpd_current_connections",
                                                       {}, i + 1, kWait));
      ASSERT_EQ(total, i + 1);
      ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(derpd_->port()));
      std::vector<int> perShard = {
          static_cast<int>(sumMetric(m, "derpd_current_connections", {{"shard", "0"}})),
          static_cast<int>(sumMetric(m, "derpd_current_connections", {{"shard", "1"}}))};
      int shard = -1;
      for (int s = 0; s < 2; ++s) {
        int before = static_cast<int>(std::count(shardOf.begin(), shardOf.end(), s));
        if (perShard[s] == before + 1) shard = s;
      }
      ASSERT_NE(shard, -1) << "cannot tell which shard client " << i << " is on";
      shardOf.push_back(shard);
      clients_.push_back(std::move(c));
      for (int j = 0; j < i; ++j) {
        auto& pair = shardOf[j] == shard ? local_ : cross_;
        if (!pair.first) pair = {clients_[j].get(), clients_[i].get()};
      }
    }
    ASSERT_TRUE(local_.first && cross_.first) << "16 clients all landed on one shard";
  }

  void expectNoAllocationsPerPacket(DerpClient& from, DerpClient& to, const char* what) {
    ASSERT_OK(relayMany(from, to, kWarmupPackets, kPhaseBudget));
    uint64_t before = counter_.read();
    RealClock clock;
    Nanos start = clock.now();
    ASSERT_OK(relayMany(from, to, kMeasuredPackets, kPhaseBudget));
    Nanos took = clock.now() - start;
    uint64_t delta = counter_.read() - before;
    std::printf(
        "%s: %llu allocations in derpd while relaying %u packets of %zu B "
        "(%.0f packets/s through the test client)\n",
        what, static_cast<unsigned long long>(delta), kMeasuredPackets, kPacketSize,
        kMeasuredPackets / (static_cast<double>(took) / kSecond));
    EXPECT_LT(delta, kMaxAllocations) << what << ": derpd allocates while relaying";
  }

  std::string dir_;
  AllocCounter counter_;
  std::unique_ptr<DerpdProcess> derpd_;
  std::vector<std::unique_ptr<DerpClient>> clients_;
  std::pair<DerpClient*, DerpClient*> local_{nullptr, nullptr};
  std::pair<DerpClient*, DerpClient*> cross_{nullptr, nullptr};
};

TEST_F(AllocTest, RelayingAllocatesNothingPerPacket) {
  connectPairs();
  if (HasFatalFailure()) return;
  expectNoAllocationsPerPacket(*local_.first, *local_.second, "same shard");
  expectNoAllocationsPerPacket(*cross_.first, *cross_.second, "across shards");

  // The counters agree that both paths carried the packets.
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetrics(derpd_->port()));
  const double perPath = kWarmupPackets + kMeasuredPackets;
  EXPECT_GE(sumMetric(m, "derpd_packets_relayed_total", {{"path", "local"}}), perPath);
  EXPECT_GE(sumMetric(m, "derpd_packets_relayed_total", {{"path", "cross_shard"}}), perPath);
  EXPECT_EQ(sumMetric(m, "derpd_packets_dropped_total"), 0);
}

// Forwarding between two nodes of a region: node 1 turns each SendPacket into a
// ForwardPacket in place, node 2 turns it into a RecvPacket in place; neither
// allocates per packet.
TEST(AllocMeshTest, ForwardingBetweenNodesAllocatesNothingPerPacket) {
  const char* lib = allocCounterLib();
  ASSERT_TRUE(lib != nullptr)
      << "$DERPD_ALLOC_COUNTER_LIB does not name the alloc_counter library";
  ASSERT_OK_AND_ASSIGN(std::string dir, makeTempDir());
  AllocCounter counters[2];
  for (int n = 0; n < 2; n++) ASSERT_OK(counters[n].create(absl::StrCat(dir, "/alloc", n + 1)));
  MeshCluster::Options o;
  o.nodes = 2;
  o.nodeEnv = [&](int n) {
    return EnvVars{{"LD_PRELOAD", lib},
                   {"DERPD_ALLOC_COUNTER_FILE", absl::StrCat(dir, "/alloc", n)}};
  };
  ASSERT_OK_AND_ASSIGN(auto mesh, MeshCluster::start(o));
  ASSERT_OK(mesh->waitFormed());
  for (auto& c : counters) ASSERT_GT(c.read(), 0u) << "a node's counter saw no allocation";
  ASSERT_OK_AND_ASSIGN(auto a, mesh->connect(1));
  ASSERT_OK_AND_ASSIGN(auto b, mesh->connect(2));
  // Until node 1 has heard of b from node 2, its packets are not forwarded.
  RealClock clock;
  const Nanos deadline = clock.now() + 10 * kSecond;
  std::vector<uint8_t> hello(kPacketSize, 1);
  for (;;) {
    ASSERT_OK(a->sendPacket(b->publicKey(), hello));
    if (b->recvPacket(200 * kMillisecond).ok()) break;
    ASSERT_LT(clock.now(), deadline) << "b never became reachable from node 1";
  }
  ASSERT_OK(relayMany(*a, *b, kWarmupPackets, kPhaseBudget));
  const uint64_t before[2] = {counters[0].read(), counters[1].read()};
  ASSERT_OK(relayMany(*a, *b, kMeasuredPackets, kPhaseBudget));
  for (int n = 0; n < 2; n++) {
    const uint64_t delta = counters[n].read() - before[n];
    std::printf("node %d: %llu allocations while forwarding %u packets of %zu B\n", n + 1,
                static_cast<unsigned long long>(delta), kMeasuredPackets, kPacketSize);
    EXPECT_LT(delta, kMaxAllocations) << "node " << n + 1 << " allocates while forwarding";
  }
  mesh.reset();
  removeTree(dir);
}

}  // namespace
}  // namespace derpd::testing
