// The shared part of the TLS integration tests (tls_test, tls_load_test):
// the test PKI made once per binary by the openssl tool, the TlsTest fixture
// that runs derpd with -certmode manual on a fresh certdir, helpers for
// metrics over TLS and relaying, and the common main. One thread, apart from
// what a test body starts itself.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_pki.h"
#include "integration/tls_test_conn.h"

namespace derpd::testing {

inline constexpr Nanos kWait = 10 * kSecond;
inline constexpr Nanos kToolTimeout = 20 * kSecond;

// Tools and the PKI, made once for the whole binary (RSA key generation is slow).
struct Fixtures {
  std::string curl, openssl;
  std::string dir;
  std::optional<TestPki> pki;
  LeafFiles derp1, derp2, derp3;  // derp.test, ECDSA: initial, renewal, spare
  LeafFiles other;                // other.test, RSA
  LeafFiles ip;                   // 127.0.0.1 (IP SAN), ECDSA
};
// Set by runTlsTestMain before any test runs; owned by it.
extern Fixtures* gFix;

class PkiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
};

std::vector<uint8_t> leafDer(const LeafFiles& leaf);

size_t countLog(const DerpdProcess& d, std::string_view needle);

// Waits until at least `count` log lines contain needle.
bool waitForLogCount(const DerpdProcess& d, std::string_view needle, size_t count, Nanos timeout);

// Scrapes over TLS until pred(value) holds or the timeout passes; returns the last value.
template <typename Pred>
absl::StatusOr<double> waitForMetricTls(uint16_t port, std::string_view name, const Labels& filter,
                                        Pred pred, Nanos timeout) {
  RealClock clock;
  const Nanos deadline = clock.now() + timeout;
  for (;;) {
    absl::StatusOr<std::vector<MetricSample>> s = scrapeMetricsTls(port);
    if (!s.ok()) return s.status();
    const double v = sumMetric(*s, name, filter);
    if (pred(v) || clock.now() >= deadline) return v;
    ::usleep(50'000);
  }
}

absl::StatusOr<double> metricTls(uint16_t port, std::string_view name, const Labels& filter = {});

// A connection with its own node key: the key in ClientOptions is made once
// per options object, and two clients with one key would displace each other.
absl::StatusOr<std::unique_ptr<client::DerpClient>> connectFresh(client::ClientOptions o);

void expectRelayed(client::DerpClient& from, client::DerpClient& to, uint32_t seq);

void expectRelayBothWays(client::DerpClient& a, client::DerpClient& b, uint32_t seq);
// Waits until derpd reports `count` registered clients, and checks both shards have some.
void expectRegisteredOnBothShards(uint16_t port, int count);

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Puts a pair in certDir_ under derper's names for hostname (rename into place).
  void install(const LeafFiles& crtFrom, const LeafFiles& keyFrom, const std::string& hostname);
  void install(const LeafFiles& leaf, const std::string& hostname);

  DerpdOptions options(const std::string& hostnames, std::vector<std::string> extra) const;

  void start(const std::string& hostnames, std::vector<std::string> extra = {});

  std::optional<derp::NodeKey> loggedServerKey() const;

  client::ClientOptions tlsOptions(const std::string& serverName = "derp.test") const;
  absl::StatusOr<std::unique_ptr<client::DerpClient>> connectTls(
      const std::string& serverName = "derp.test") const;

  // Runs curl against https://derp.test:<port><path> trusting the test CA.
  absl::StatusOr<CommandResult> curlTls(const std::string& path,
                                        std::vector<std::string> extra = {}) const;

  absl::StatusOr<CommandResult> sClient(std::vector<std::string> extra) const;

  std::string certDir_;
  std::string stateDir_;
  std::unique_ptr<DerpdProcess> derpd_;
  uint16_t port_ = 0;
};

// TlsTest with derp.test's certificate installed, derpd started and two
// clients connected, for tests that feed it bad input.
class TlsBadInputTest : public TlsTest {
 protected:
  void SetUp() override;
  absl::StatusOr<double> closed(const std::string& reason);
  std::unique_ptr<client::DerpClient> a_, b_;
};

// The body of each TLS test binary's main: exits 77 (skipped) when curl or
// openssl is not on PATH or RLIMIT_NOFILE cannot reach the 2,500 descriptors
// the 1,000-client test needs; otherwise makes the PKI and runs the tests.
int runTlsTestMain(int argc, char** argv);

}  // namespace derpd::testing
