// -certmode letsencrypt serving the certificates derper's letsencrypt mode
// cached in -certdir without contacting the CA, and failing the handshakes of
// a name it has none for (Go autocert's layout: <certdir>/<hostname> holds the
// key as "EC PRIVATE KEY" PEM, then the chain; <hostname>+rsa an RSA one).
// The entries are made here from the test PKI with the openssl tool, not
// copied from anywhere. derper turns TLS on for letsencrypt only on port 443,
// so the test moves itself into a network namespace of its own, where derpd
// can listen on 127.0.0.1:443 whatever runs on this machine. Exits 77 when a
// namespace cannot be made here, or curl or openssl is missing.
#include <sched.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/test_support.h"
#include "integration/tls_fixture.h"

namespace derpd::testing {
namespace {

class AcmeCacheTest : public TlsTest {
 protected:
  DerpdOptions acmeOptions(const std::string& host) const {
    // After options()'s -certmode manual: the last value wins, as in Go's flag package.
    // The CA's address refuses connections: any ACME request fails at once.
    return options(host, {"-certmode", "letsencrypt", "-a", "127.0.0.1:443", "--acme-directory",
                          "https://127.0.0.1:9/directory"});
  }

  // The entry autocert would write for leaf: its key in SEC1 ("EC PRIVATE
  // KEY") or PKCS#1 form, then the leaf and the CA.
  void cache(const LeafFiles& leaf, const std::string& fileName) {
    ASSERT_OK_AND_ASSIGN(
        CommandResult key,
        runCommand({gFix->openssl, "pkey", "-in", leaf.key, "-traditional"}, {}, kToolTimeout));
    ASSERT_EQ(key.exitCode, 0) << key.err;
    ASSERT_TRUE(absl::StrContains(key.out, " PRIVATE KEY-----")) << key.out;
    ASSERT_OK_AND_ASSIGN(std::string crt, readFile(leaf.crt));
    ASSERT_OK_AND_ASSIGN(std::string ca, readFile(gFix->pki->caCrt()));
    ASSERT_OK(replaceFileAtomically(certDir_, fileName, key.out + crt + ca));
    ::chmod((certDir_ + "/" + fileName).c_str(), 0600);
  }

  void startAcme(const std::string& host) {
    ASSERT_OK_AND_ASSIGN(derpd_, DerpdProcess::start(acmeOptions(host)));
    port_ = derpd_->port();
    ASSERT_EQ(port_, 443);
    ASSERT_TRUE(derpd_->findLog("listening on https://127.0.0.1:443").has_value())
        << derpd_->logText();
  }

  // Runs derpd for `hosts`, which must exit with `code`; returns its output.
  std::string startupFailure(const std::string& hosts, int code) {
    absl::StatusOr<std::unique_ptr<DerpdProcess>> d = DerpdProcess::spawn(acmeOptions(hosts));
    if (!d.ok()) return std::string(d.status().message());
    absl::StatusOr<int> exit = (*d)->waitExit(kWait);
    EXPECT_TRUE(exit.ok()) << exit.status();
    if (exit.ok()) {
      EXPECT_EQ(*exit, code);
    }
    EXPECT_TRUE((*d)->waitForOutputEnd(kWait));
    return (*d)->logText();
  }

  // openssl s_client verifying against the test CA only, for `host`.
  void expectVerifiedBy(const std::string& host, const LeafFiles& leaf) {
    ASSERT_OK_AND_ASSIGN(CommandResult r,
                         sClient({"-servername", host, "-verify_hostname", host, "-CAfile",
                                  gFix->pki->caCrt(), "-verify_return_error", "-brief"}));
    const std::string all = r.out + r.err;
    EXPECT_TRUE(absl::StrContains(all, "Verification: OK")) << all;
    // The leaf it served is the cached one.
    ASSERT_OK_AND_ASSIGN(CommandResult full, sClient({"-servername", host}));
    std::vector<std::vector<uint8_t>> served = pemCertsDer(full.out);
    ASSERT_FALSE(served.empty()) << full.out;
    EXPECT_EQ(sha256Hex(served[0]), sha256Hex(leafDer(leaf)));
  }
};

TEST_F(AcmeCacheTest, ServesTheCachedCertificateWithoutAskingTheCa) {
  cache(gFix->derp1, "derp.test");
  startAcme("derp.test");
  // One line says until when, and when renewal starts (in 20 days: a third of
  // the test leaf's 30 before it expires).
  EXPECT_TRUE(derpd_->findLog("valid until").has_value()) << derpd_->logText();
  EXPECT_TRUE(derpd_->findLog("renewed over ACME from").has_value()) << derpd_->logText();
  expectVerifiedBy("derp.test", gFix->derp1);
  // A DERP client that trusts only the test CA relays through it.
  ASSERT_OK_AND_ASSIGN(auto a, connectTls("derp.test"));
  ASSERT_OK_AND_ASSIGN(auto b, connectTls("derp.test"));
  expectRelayBothWays(*a, *b, 1);
  // Nothing was asked of the CA (which would have failed and said so).
  EXPECT_FALSE(derpd_->findLog("ACME: obtaining").has_value()) << derpd_->logText();
  EXPECT_FALSE(derpd_->findLog("ACME: no certificate").has_value()) << derpd_->logText();
}

TEST_F(AcmeCacheTest, ServesAnRsaEntryAndOneCertificatePerName) {
  cache(gFix->derp1, "derp.test");
  cache(gFix->other, "other.test+rsa");
  startAcme("derp.test,other.test");
  expectVerifiedBy("derp.test", gFix->derp1);
  expectVerifiedBy("other.test", gFix->other);
  // Each name's expiry is a metric (the test PKI's leaves expire in 30 days):
  // nothing renews these, so an operator needs to see it coming.
  const double in30Days = static_cast<double>(std::time(nullptr)) + 30 * 86400.0;
  for (const char* name : {"derp.test", "other.test"}) {
    ASSERT_OK_AND_ASSIGN(double expiry, metricTls(port_, "derpd_tls_cert_expiry_timestamp_seconds",
                                                  {{"name", name}}));
    EXPECT_NEAR(expiry, in30Days, 2 * 86400.0) << name;
  }
}

TEST_F(AcmeCacheTest, ANameWithoutACertificateFailsFastUntilItHasOne) {
  cache(gFix->derp1, "derp.test");
  startAcme("derp.test,other.test");
  EXPECT_TRUE(derpd_
                  ->findLog("TLS for other.test waits for its certificate from "
                            "https://127.0.0.1:9/directory (none cached yet)")
                  .has_value())
      << derpd_->logText();
  // The CA is unreachable: the attempt fails, says why and when the next is.
  EXPECT_TRUE(derpd_->waitForLog("ACME: no certificate for other.test (attempt 1)", kWait))
      << derpd_->logText();
  EXPECT_TRUE(derpd_->findLog("next attempt at").has_value()) << derpd_->logText();
  // other.test's handshakes fail instead of getting derp.test's certificate;
  // derp.test is served meanwhile.
  ASSERT_OK_AND_ASSIGN(CommandResult r, sClient({"-servername", "other.test"}));
  EXPECT_TRUE(pemCertsDer(r.out).empty()) << r.out;
  expectVerifiedBy("derp.test", gFix->derp1);
  ASSERT_OK_AND_ASSIGN(double refused,
                       metricTls(port_, "derpd_tls_handshakes_awaiting_certificate_total", {}));
  EXPECT_GE(refused, 1.0);
  ASSERT_OK_AND_ASSIGN(double failed,
                       metricTls(port_, "derpd_acme_orders_total", {{"result", "error"}}));
  EXPECT_GE(failed, 1.0);
  ASSERT_OK_AND_ASSIGN(
      double inARow, metricTls(port_, "derpd_acme_consecutive_failures", {{"name", "other.test"}}));
  EXPECT_GE(inARow, 1.0);
  ASSERT_OK_AND_ASSIGN(double next, metricTls(port_, "derpd_acme_next_attempt_timestamp_seconds",
                                              {{"name", "other.test"}}));
  EXPECT_GT(next, static_cast<double>(std::time(nullptr)) + 30);  // backoff, not a busy loop
  ASSERT_OK_AND_ASSIGN(
      double renewal, metricTls(port_, "derpd_acme_consecutive_failures", {{"name", "derp.test"}}));
  EXPECT_EQ(renewal, 0.0);
}

TEST_F(AcmeCacheTest, AnEntryForAnotherNameIsNotServedAndTheLogNamesTheFile) {
  cache(gFix->other, "derp.test");
  startAcme("derp.test");
  EXPECT_TRUE(derpd_->findLog(certDir_ + "/derp.test: not valid for derp.test").has_value())
      << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(CommandResult r, sClient({"-servername", "derp.test"}));
  EXPECT_TRUE(pemCertsDer(r.out).empty()) << r.out;
}

TEST_F(AcmeCacheTest, AnIpHostnameIsAFlagError) {
  const std::string log = startupFailure("127.0.0.1", 2);
  EXPECT_TRUE(absl::StrContains(log, "flag -hostname: 127.0.0.1 is an IP address")) << log;
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  // A network namespace of our own (derpd and the tools inherit it): port 443
  // on its loopback is free whatever this machine runs.
  if (std::string why = derpd::testing::enterOwnNetworkNamespace(); !why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  return derpd::testing::runTlsTestMain(argc, argv);
}
