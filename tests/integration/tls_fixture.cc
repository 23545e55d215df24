#include "integration/tls_fixture.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "integration/test_support.h"

namespace derpd::testing {

using client::DerpClient;

Fixtures* gFix = nullptr;

void PkiEnvironment::SetUp() {
  ASSERT_OK_AND_ASSIGN(gFix->dir, makeTempDir());
  ASSERT_OK_AND_ASSIGN(TestPki pki, TestPki::create(gFix->dir, gFix->openssl));
  gFix->pki = std::move(pki);
  TestPki& p = *gFix->pki;
  ASSERT_OK_AND_ASSIGN(gFix->derp1,
                       p.issue("derp1", "derp.test", "DNS:derp.test", KeyType::kEcdsaP256));
  ASSERT_OK_AND_ASSIGN(gFix->derp2,
                       p.issue("derp2", "derp.test", "DNS:derp.test", KeyType::kEcdsaP256));
  ASSERT_OK_AND_ASSIGN(gFix->derp3,
                       p.issue("derp3", "derp.test", "DNS:derp.test", KeyType::kEcdsaP256));
  ASSERT_OK_AND_ASSIGN(gFix->other,
                       p.issue("other", "other.test", "DNS:other.test", KeyType::kRsa2048));
  ASSERT_OK_AND_ASSIGN(gFix->ip, p.issue("ip", "127.0.0.1", "IP:127.0.0.1", KeyType::kEcdsaP256));
}

void PkiEnvironment::TearDown() {
  if (!gFix->dir.empty()) removeTree(gFix->dir);
}

std::vector<uint8_t> leafDer(const LeafFiles& leaf) {
  absl::StatusOr<std::string> pem = readFile(leaf.crt);
  if (!pem.ok()) return {};
  std::vector<std::vector<uint8_t>> ders = pemCertsDer(*pem);
  return ders.empty() ? std::vector<uint8_t>{} : ders.front();
}

size_t countLog(const DerpdProcess& d, std::string_view needle) {
  size_t n = 0;
  for (const std::string& line : d.logLines()) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

bool waitForLogCount(const DerpdProcess& d, std::string_view needle, size_t count, Nanos timeout) {
  RealClock clock;
  const Nanos deadline = clock.now() + timeout;
  while (countLog(d, needle) < count) {
    if (clock.now() >= deadline) return false;
    ::usleep(20'000);
  }
  return true;
}

absl::StatusOr<double> metricTls(uint16_t port, std::string_view name, const Labels& filter) {
  absl::StatusOr<std::vector<MetricSample>> s = scrapeMetricsTls(port);
  if (!s.ok()) return s.status();
  return sumMetric(*s, name, filter);
}

absl::StatusOr<std::unique_ptr<DerpClient>> connectFresh(client::ClientOptions o) {
  o.key = derp::PrivateKey::generate();
  return DerpClient::connect(o);
}

void expectRelayed(DerpClient& from, DerpClient& to, uint32_t seq) {
  const std::vector<uint8_t> payload = taggedPayload(seq, 0x715, 300);
  ASSERT_OK(from.sendPacket(to.publicKey(), payload));
  ASSERT_OK_AND_ASSIGN(DerpClient::Packet p, to.recvPacket(kWait));
  EXPECT_EQ(p.src, from.publicKey());
  EXPECT_TRUE(p.payload == payload) << "payload " << seq << " corrupted";
}

void expectRegisteredOnBothShards(uint16_t port, int count) {
  ASSERT_OK_AND_ASSIGN(double connected,
                       waitForMetricTls(port, "derpd_current_connections", {},
                                        [count](double v) { return v >= count; }, kWait));
  EXPECT_EQ(connected, count);
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetricsTls(port));
  EXPECT_GT(sumMetric(m, "derpd_current_connections", {{"shard", "0"}}), 0);
  EXPECT_GT(sumMetric(m, "derpd_current_connections", {{"shard", "1"}}), 0);
}

void expectRelayBothWays(DerpClient& a, DerpClient& b, uint32_t seq) {
  expectRelayed(a, b, seq);
  expectRelayed(b, a, seq + 1);
}

// ---- TlsTest ----

void TlsTest::SetUp() {
  ASSERT_NE(gFix->pki, std::nullopt) << "no test PKI";
  ASSERT_OK_AND_ASSIGN(certDir_, makeTempDir());
  ASSERT_OK_AND_ASSIGN(stateDir_, makeTempDir());
}

void TlsTest::TearDown() {
  derpd_.reset();
  removeTree(certDir_);
  removeTree(stateDir_);
}

void TlsTest::install(const LeafFiles& crtFrom, const LeafFiles& keyFrom,
                      const std::string& hostname) {
  ASSERT_OK_AND_ASSIGN(std::string crt, readFile(crtFrom.crt));
  ASSERT_OK_AND_ASSIGN(std::string key, readFile(keyFrom.key));
  ASSERT_OK(replaceFileAtomically(certDir_, hostname + ".key", key));
  ASSERT_OK(replaceFileAtomically(certDir_, hostname + ".crt", crt));
}

void TlsTest::install(const LeafFiles& leaf, const std::string& hostname) {
  install(leaf, leaf, hostname);
}

DerpdOptions TlsTest::options(const std::string& hostnames, std::vector<std::string> extra) const {
  DerpdOptions opts;
  opts.keyPath = stateDir_ + "/derper.key";  // kept across restarts
  opts.extraArgs = {"-certmode", "manual", "-certdir", certDir_, "-hostname", hostnames};
  opts.extraArgs.insert(opts.extraArgs.end(), extra.begin(), extra.end());
  return opts;
}

void TlsTest::start(const std::string& hostnames, std::vector<std::string> extra) {
  ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(options(hostnames, std::move(extra))));
  port_ = derpd_->port();
  ASSERT_TRUE(derpd_->findLog("listening on https://127.0.0.1:").has_value())
      << derpd_->logText();
}

std::optional<derp::NodeKey> TlsTest::loggedServerKey() const {
  std::optional<std::string> line = derpd_->findLog("public key nodekey:");
  if (!line.has_value()) return std::nullopt;
  return derp::NodeKey::parse(line->substr(line->find("nodekey:"), 8 + 64));
}

client::ClientOptions TlsTest::tlsOptions(const std::string& serverName) const {
  client::ClientOptions o = clientOptions(port_);
  o.tls = true;
  o.caFile = gFix->pki->caCrt();
  o.serverName = serverName;
  return o;
}

absl::StatusOr<std::unique_ptr<DerpClient>> TlsTest::connectTls(
    const std::string& serverName) const {
  return connectFresh(tlsOptions(serverName));
}

absl::StatusOr<CommandResult> TlsTest::curlTls(const std::string& path,
                                               std::vector<std::string> extra) const {
  std::vector<std::string> argv = {gFix->curl,   "-sS",
                                   "-v",         "-i",
                                   "--noproxy",  "*",
                                   "--max-time", "10",
                                   "--cacert",   gFix->pki->caCrt(),
                                   "--resolve",  absl::StrCat("derp.test:", port_, ":127.0.0.1")};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(absl::StrCat("https://derp.test:", port_, path));
  return runCommand(argv, {}, kToolTimeout);
}

absl::StatusOr<CommandResult> TlsTest::sClient(std::vector<std::string> extra) const {
  std::vector<std::string> argv = {gFix->openssl, "s_client", "-connect",
                                   absl::StrCat("127.0.0.1:", port_), "-showcerts"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return runCommand(argv, {}, kToolTimeout);
}

// ---- TlsBadInputTest ----

void TlsBadInputTest::SetUp() {
  TlsTest::SetUp();
  if (HasFatalFailure()) return;
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(a_, connectTls());
  ASSERT_OK_AND_ASSIGN(b_, connectTls());
}

absl::StatusOr<double> TlsBadInputTest::closed(const std::string& reason) {
  return metricTls(port_, "derpd_connections_closed_total", {{"reason", reason}});
}

// ---- main ----

int runTlsTestMain(int argc, char** argv) {
  static Fixtures fixtures;
  for (const char* tool : {"curl", "openssl"}) {
    std::optional<std::string> path = findOnPath(tool);
    if (!path.has_value()) {
      std::printf("skipped: %s is not on PATH (packages curl and openssl)\n", tool);
      return 77;
    }
    (std::string_view(tool) == "curl" ? fixtures.curl : fixtures.openssl) = *path;
  }
  gFix = &fixtures;
  // 1,000 clients: their sockets here and in derpd (which inherits the limit).
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  constexpr rlim_t kFdsNeeded = 2500;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur < kFdsNeeded) {
    std::printf("skipped: RLIMIT_NOFILE is %llu, the 1,000-client test needs %llu\n",
                static_cast<unsigned long long>(nofile.rlim_cur),
                static_cast<unsigned long long>(kFdsNeeded));
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new PkiEnvironment());
  return RUN_ALL_TESTS();
}

}  // namespace derpd::testing
