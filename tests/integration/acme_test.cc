// derpd's ACME client against pebble, a real ACME server (tests/integration/
// pebble.h): accounts (and external account binding), orders, HTTP-01
// challenges answered on a real socket, finalization and the download, with
// pebble rejecting a share of good nonces so that badNonce retries happen;
// the CA's HTTPS certificate checked against the trust store given. Then
// derpd itself in -certmode letsencrypt: it obtains its certificate from
// pebble at start (HTTP-01 on -http-port), serves it to DERP clients that
// trust only pebble's root, caches it in derper's layout, serves the cache
// after a restart without the CA, and renews a short-lived certificate whose
// last third has begun. derper turns TLS on for letsencrypt only on port 443,
// so the test moves into a network namespace of its own (pebble and derpd
// inherit it). Exits 77 when pebble or openssl is not installed or a
// namespace cannot be made.
#include <netinet/in.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "acme/client.h"
#include "acme/jose.h"
#include "client/http_fetch.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/pebble.h"
#include "integration/test_net.h"
#include "integration/test_pki.h"
#include "client/derp_client.h"
#include "tls/autocert_cache.h"
#include "tls/certificate.h"

namespace derpd::testing {
namespace {

constexpr Nanos kIssueTimeout = 60 * kSecond;

#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

// Answers HTTP-01 validations on 127.0.0.1:port from a token map, as derpd's
// -http-port listener does (tested end to end in the derpd tests below).
class ChallengeResponder {
 public:
  ChallengeResponder() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~ChallengeResponder() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  acme::ChallengeHooks hooks() {
    return {[this](const acme::OpenChallenge& c) {
              std::lock_guard<std::mutex> lock(mu_);
              answers_[c.token] = c.keyAuthorization;
              ++published_;
            },
            [this](const acme::OpenChallenge& c) {
              std::lock_guard<std::mutex> lock(mu_);
              answers_.erase(c.token);
            }};
  }
  int published() {
    std::lock_guard<std::mutex> lock(mu_);
    return published_;
  }
  size_t open() {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_.size();
  }
  int served() const { return served_.load(); }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::string req;
      char buf[2048];
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      const std::string prefix = "GET /.well-known/acme-challenge/";
      std::string reply =
          "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      if (req.rfind(prefix, 0) == 0) {
        std::string token = req.substr(prefix.size(), req.find(' ', prefix.size()) - prefix.size());
        std::lock_guard<std::mutex> lock(mu_);
        auto it = answers_.find(token);
        if (it != answers_.end()) {
          reply = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ",
                               it->second.size(), "\r\nConnection: close\r\n\r\n", it->second);
          ++served_;
        }
      }
      ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::mutex mu_;
  std::map<std::string, std::string> answers_;
  int published_ = 0;
  std::thread thread_;
};

std::string gOpenssl;

class AcmeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = makeTempDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    absl::StatusOr<TestPki> pki = TestPki::create(dir_, gOpenssl);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_.emplace(std::move(*pki));
  }
  void TearDown() override {
    pebble_.reset();
    removeTree(dir_);
  }
  // HTTP-01 validations go to httpPort (0: the test's responder).
  void startPebble(PebbleOptions opts, uint16_t httpPort = 0) {
    opts.httpPort = httpPort != 0 ? httpPort : responder_.port();
    if (opts.tlsPort == 0) {
      absl::StatusOr<uint16_t> tlsPort = freeLoopbackPort();
      ASSERT_TRUE(tlsPort.ok());
      opts.tlsPort = *tlsPort;
    }
    absl::StatusOr<std::unique_ptr<Pebble>> p = Pebble::start(dir_, *pki_, opts);
    ASSERT_TRUE(p.ok()) << p.status();
    pebble_ = std::move(*p);
  }
  acme::Client makeClient(client::TrustStore trust) {
    absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::autocert::loadOrCreateAccountKey(dir_);
    EXPECT_TRUE(key.ok()) << key.status();
    acme::Client::Options o;
    o.directoryUrl = pebble_->directoryUrl();
    o.trust = std::move(trust);
    o.requestTimeout = 10 * kSecond;
    return acme::Client(std::move(o), std::move(*key));
  }
  client::TrustStore trustTestCa() const { return {pki_->caCrt(), ""}; }

  std::string dir_;
  std::optional<TestPki> pki_;
  ChallengeResponder responder_;
  std::unique_ptr<Pebble> pebble_;
};

bool noWaitLimit(Nanos delay) {
  ::usleep(static_cast<useconds_t>(delay / 1000));
  return true;
}

TEST_F(AcmeClientTest, ObtainsACertificateOverHttp01WithBadNonceRetries) {
  // 40% of good nonces refused: a client without badNonce retries fails.
  PebbleOptions opts;
  opts.nonceRejectPercent = 40;
  ASSERT_NO_FATAL_FAILURE(startPebble(opts));
  acme::Client c = makeClient(trustTestCa());
  ASSERT_OK(c.registerAccount("ops@derp.test", "", ""));
  EXPECT_TRUE(absl::StartsWith(c.accountUrl(), "https://127.0.0.1:")) << c.accountUrl();
  const std::string first = c.accountUrl();

  absl::StatusOr<tls::CertifiedKey> cert =
      acme::obtainCertificate(c, {"derp.test", "derp-2.derp.test"}, {"http-01"}, responder_.hooks(),
                              noWaitLimit, kIssueTimeout);
  ASSERT_TRUE(cert.ok()) << cert.status() << "\n" << pebble_->log();
  EXPECT_EQ(cert->names, (std::vector<std::string>{"derp.test", "derp-2.derp.test"}));
  EXPECT_EQ(responder_.published(), 2);
  EXPECT_GE(responder_.served(), 2);
  EXPECT_EQ(responder_.open(), 0u) << "challenges withdrawn after validation";
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  EXPECT_LE(cert->notBeforeUnix, now + 60);
  EXPECT_GT(cert->notAfterUnix, now + 86400);
  EXPECT_GE(cert->chain.size(), 2u);
  // ~14 requests: none refused has a chance of 0.6^14 (0.08%).
  EXPECT_GT(c.badNonceRetries(), 0u);

  // The chain verifies (openssl, not our code) up to pebble's issuing root.
  absl::StatusOr<std::string> root = pebble_->issuingRootPem();
  ASSERT_TRUE(root.ok()) << root.status();
  absl::StatusOr<std::string> chainPem = tls::chainToPem(*cert);
  ASSERT_TRUE(chainPem.ok());
  ASSERT_OK(replaceFileAtomically(dir_, "root.pem", *root));
  ASSERT_OK(replaceFileAtomically(dir_, "chain.pem", *chainPem));
  absl::StatusOr<CommandResult> v =
      runCommand({gOpenssl, "verify", "-CAfile", dir_ + "/root.pem", "-untrusted",
                  dir_ + "/chain.pem", "-verify_hostname", "derp-2.derp.test", dir_ + "/chain.pem"},
                 {}, 10 * kSecond);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->exitCode, 0) << v->out << v->err;

  // The same key finds the same account.
  acme::Client again = makeClient(trustTestCa());
  ASSERT_OK(again.registerAccount("ops@derp.test", "", ""));
  EXPECT_EQ(again.accountUrl(), first);
}

TEST_F(AcmeClientTest, RefusesACaItsTrustStoreDoesNotVouchFor) {
  ASSERT_NO_FATAL_FAILURE(startPebble({}));
  // Debian's public CAs do not sign pebble's test certificate.
  acme::Client c = makeClient({client::kDefaultCaFile, ""});
  absl::Status st = c.registerAccount("", "", "");
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(absl::StrContains(st.message(), "certificate verification failed")) << st;
}

TEST_F(AcmeClientTest, ExternalAccountBinding) {
  const std::string macKey = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
  PebbleOptions opts;
  opts.eabKeys = {{"kid-1", macKey}};
  ASSERT_NO_FATAL_FAILURE(startPebble(opts));
  acme::Client without = makeClient(trustTestCa());
  absl::Status st = without.registerAccount("ops@derp.test", "", "");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "-acme-eab-kid")) << st;

  acme::Client wrong = makeClient(trustTestCa());
  st = wrong.registerAccount("ops@derp.test", "kid-1", acme::base64url(std::string(32, 'x')));
  EXPECT_FALSE(st.ok());

  acme::Client with = makeClient(trustTestCa());
  ASSERT_OK(with.registerAccount("ops@derp.test", "kid-1", macKey));
  absl::StatusOr<tls::CertifiedKey> cert = acme::obtainCertificate(
      with, {"eab.derp.test"}, {"http-01"}, responder_.hooks(), noWaitLimit, kIssueTimeout);
  ASSERT_TRUE(cert.ok()) << cert.status() << "\n" << pebble_->log();
}

TEST_F(AcmeClientTest, AFailedValidationSaysWhy) {
  ASSERT_NO_FATAL_FAILURE(startPebble({}));
  acme::Client c = makeClient(trustTestCa());
  ASSERT_OK(c.registerAccount("", "", ""));
  // Hooks that publish nothing: pebble finds 404 where the key authorization should be.
  acme::ChallengeHooks silent{[](const acme::OpenChallenge&) {}, [](const acme::OpenChallenge&) {}};
  absl::StatusOr<tls::CertifiedKey> cert = acme::obtainCertificate(
      c, {"nothing.derp.test"}, {"http-01"}, silent, noWaitLimit, kIssueTimeout);
  ASSERT_FALSE(cert.ok());
  EXPECT_TRUE(absl::StrContains(cert.status().message(), "did not validate nothing.derp.test"))
      << cert.status();
  EXPECT_TRUE(absl::StrContains(cert.status().message(), "http-01")) << cert.status();
}

// derpd with -certmode letsencrypt against pebble.
class DerpdAcmeTest : public AcmeClientTest {
 protected:
  void SetUp() override {
    AcmeClientTest::SetUp();
    certDir_ = dir_ + "/certs";
    absl::StatusOr<uint16_t> http = freeLoopbackPort();
    ASSERT_TRUE(http.ok());
    httpPort_ = *http;
  }
  void TearDown() override {
    derpd_.reset();
    AcmeClientTest::TearDown();
  }
  // pebble validates HTTP-01 on derpd's -http-port.
  void startPebbleForDerpd() {
    ASSERT_NO_FATAL_FAILURE(startPebble({}, httpPort_));
    absl::StatusOr<std::string> root = pebble_->issuingRootPem();
    ASSERT_TRUE(root.ok()) << root.status();
    ASSERT_OK(replaceFileAtomically(dir_, "pebble-root.pem", *root));
  }
  // httpPort: -http-port (0: httpPort_).
  void startDerpd(const std::string& directoryUrl, int httpPort = 0) {
    DerpdOptions o;
    o.keyPath = dir_ + "/derper.key";
    o.extraArgs = {"-a",
                   "127.0.0.1:443",
                   "-http-port",
                   std::to_string(httpPort != 0 ? httpPort : httpPort_),
                   "-hostname",
                   "derp.test",
                   "-certdir",
                   certDir_,
                   "-certmode",
                   "letsencrypt",
                   "--acme-directory",
                   directoryUrl,
                   "-acme-email",
                   "ops@derp.test"};
    // How derpd trusts pebble's HTTPS endpoint, as OpenSSL-based tools do.
    o.env = {{"SSL_CERT_FILE", pki_->caCrt()}};
    absl::StatusOr<std::unique_ptr<DerpdProcess>> d = DerpdProcess::start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    derpd_ = std::move(*d);
    ASSERT_EQ(derpd_->port(), 443);
  }
  // A DERP client that trusts only pebble's root.
  absl::StatusOr<std::unique_ptr<client::DerpClient>> connect() const {
    client::ClientOptions o;
    o.host = "127.0.0.1";
    o.port = 443;
    o.tls = true;
    o.serverName = "derp.test";
    o.caFile = dir_ + "/pebble-root.pem";
    return client::DerpClient::connect(o);
  }
  // Waits for derpd to log the certificate from pebble; then DERP clients
  // that trust pebble's root relay through it, and the cache holds it.
  void expectObtainedServedAndCached() {
    ASSERT_TRUE(derpd_->waitForLog("ACME: certificate for derp.test obtained", kIssueTimeout))
        << derpd_->logText() << "\n"
        << pebble_->log();
    // With its names, expiry and fingerprint.
    std::optional<std::string> line =
        derpd_->findLog("ACME: certificate for derp.test obtained: derp.test: valid until ");
    ASSERT_TRUE(line.has_value()) << derpd_->logText();
    EXPECT_NE(line->find(", sha256-raw:"), std::string::npos) << *line;
    expectServedByPebbleAndRelays();
    absl::StatusOr<tls::CertifiedKey> cached =
        tls::autocert::loadCert(certDir_, "derp.test", static_cast<int64_t>(std::time(nullptr)));
    ASSERT_TRUE(cached.ok()) << cached.status();
    cachedNotAfter_ = cached->notAfterUnix;
  }
  void expectServedByPebbleAndRelays() {
    // openssl, trusting only pebble's root, verifies the chain and the name.
    absl::StatusOr<CommandResult> v = runCommand(
        {"/bin/sh", "-c",
         absl::StrCat(gOpenssl, " s_client -connect 127.0.0.1:443 -servername derp.test ",
                      "-verify_hostname derp.test -verify_return_error -brief -CAfile ", dir_,
                      "/pebble-root.pem </dev/null")},
        {}, 10 * kSecond);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(absl::StrContains(v->out + v->err, "Verification: OK")) << v->out << v->err;
    absl::StatusOr<std::unique_ptr<client::DerpClient>> a = connect();
    ASSERT_TRUE(a.ok()) << a.status() << "\n" << derpd_->logText();
    absl::StatusOr<std::unique_ptr<client::DerpClient>> b = connect();
    ASSERT_TRUE(b.ok()) << b.status();
    const std::vector<uint8_t> payload{1, 2, 3};
    ASSERT_OK((*a)->sendPacket((*b)->publicKey(), payload));
    absl::StatusOr<client::DerpClient::Packet> got = (*b)->recvPacket(5 * kSecond);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->payload, (std::vector<uint8_t>{1, 2, 3}));
  }

  std::string certDir_;
  uint16_t httpPort_ = 0;
  int64_t cachedNotAfter_ = 0;
  std::unique_ptr<DerpdProcess> derpd_;
};

TEST_F(DerpdAcmeTest, ObtainsItsCertificateAtStartCachesItAndServesTheCacheAfterARestart) {
  startPebbleForDerpd();
  startDerpd(pebble_->directoryUrl());
  EXPECT_TRUE(
      derpd_->findLog("TLS for derp.test waits for its certificate from " + pebble_->directoryUrl())
          .has_value())
      << derpd_->logText();
  ASSERT_NO_FATAL_FAILURE(expectObtainedServedAndCached());
  EXPECT_TRUE(
      derpd_->findLog("plain HTTP (redirects, /generate_204, ACME HTTP-01) on http://").has_value())
      << derpd_->logText();

  // derper's layout: the key first, then the chain; and the account key.
  absl::StatusOr<std::string> entry = readFile(certDir_ + "/derp.test");
  ASSERT_TRUE(entry.ok());
  EXPECT_TRUE(absl::StartsWith(*entry, "-----BEGIN EC PRIVATE KEY-----")) << *entry;
  EXPECT_TRUE(readFile(certDir_ + "/acme_account+key").ok());

  // Restarted with the CA gone: the cache is served, nothing is asked.
  derpd_.reset();
  pebble_.reset();
  absl::StatusOr<uint16_t> closed = freeLoopbackPort();
  ASSERT_TRUE(closed.ok());
  startDerpd(absl::StrCat("https://127.0.0.1:", *closed, "/dir"));
  EXPECT_TRUE(derpd_->findLog("renewed over ACME from").has_value()) << derpd_->logText();
  absl::StatusOr<std::unique_ptr<client::DerpClient>> c = connect();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(derpd_->findLog("ACME: obtaining").has_value()) << derpd_->logText();
}

// A self-signed certificate for derp.test valid from now + notBefore to
// now + notAfter (seconds), in derper's layout.
void cacheSelfSigned(const std::string& certDir, long notBefore, long notAfter) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  ASSERT_TRUE(ec && EC_KEY_generate_key(ec.get()));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  ASSERT_TRUE(EVP_PKEY_assign_EC_KEY(key.get(), ec.release()));
  bssl::UniquePtr<X509> x(X509_new());
  ASSERT_TRUE(X509_set_version(x.get(), X509_VERSION_3));
  ASSERT_TRUE(ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7));
  ASSERT_TRUE(X509_gmtime_adj(X509_getm_notBefore(x.get()), notBefore));
  ASSERT_TRUE(X509_gmtime_adj(X509_getm_notAfter(x.get()), notAfter));
  X509_NAME* name = X509_get_subject_name(x.get());
  ASSERT_TRUE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                         reinterpret_cast<const uint8_t*>("derp.test"), -1, -1, 0));
  ASSERT_TRUE(X509_set_issuer_name(x.get(), name));
  bssl::UniquePtr<X509_EXTENSION> san(
      X509V3_EXT_nconf_nid(nullptr, nullptr, NID_subject_alt_name, "DNS:derp.test"));
  ASSERT_TRUE(san && X509_add_ext(x.get(), san.get(), -1));
  ASSERT_TRUE(X509_set_pubkey(x.get(), key.get()));
  ASSERT_TRUE(X509_sign(x.get(), key.get(), EVP_sha256()));
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  ASSERT_TRUE(PEM_write_bio_X509(bio.get(), x.get()));
  const uint8_t* data = nullptr;
  size_t len = 0;
  ASSERT_TRUE(BIO_mem_contents(bio.get(), &data, &len));
  absl::StatusOr<std::string> keyPem = tls::keyToPem(key.get());
  ASSERT_TRUE(keyPem.ok());
  absl::StatusOr<tls::CertifiedKey> cert =
      tls::parsePem(std::string(reinterpret_cast<const char*>(data), len), *keyPem, "aging");
  ASSERT_TRUE(cert.ok()) << cert.status();
  ASSERT_OK(tls::autocert::storeCert(certDir, "derp.test", *cert));
}

TEST_F(DerpdAcmeTest, ObtainsOverTlsAlpn01WithoutPort80) {
  // No -http-port: pebble can only validate on 443, with ALPN acme-tls/1.
  absl::StatusOr<uint16_t> nowhere = freeLoopbackPort();
  ASSERT_TRUE(nowhere.ok());
  PebbleOptions opts;
  opts.tlsPort = 443;
  ASSERT_NO_FATAL_FAILURE(startPebble(opts, *nowhere));
  absl::StatusOr<std::string> root = pebble_->issuingRootPem();
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_OK(replaceFileAtomically(dir_, "pebble-root.pem", *root));
  startDerpd(pebble_->directoryUrl(), -1);
  ASSERT_NO_FATAL_FAILURE(expectObtainedServedAndCached());
  EXPECT_FALSE(absl::StrContains(pebble_->log(), "validate w/ HTTP")) << pebble_->log();
}

TEST_F(DerpdAcmeTest, RenewsInTheLastThirdWhileAClientStaysConnected) {
  // 30 s of life, 17 behind it: renewal is due 3 s after start (up to 1 s
  // earlier by jitter), soon enough for a client to connect first.
  ASSERT_NO_FATAL_FAILURE(cacheSelfSigned(certDir_, -17, 13));
  startPebbleForDerpd();
  startDerpd(pebble_->directoryUrl());
  EXPECT_TRUE(derpd_->findLog("TLS for derp.test: the certificate in").has_value())
      << derpd_->logText();
  client::ClientOptions old;
  old.port = 443;
  old.tls = true;
  old.serverName = "derp.test";
  old.insecure = true;  // the cached certificate is self-signed
  absl::StatusOr<std::unique_ptr<client::DerpClient>> a = client::DerpClient::connect(old);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_FALSE(derpd_->findLog("ACME: certificate for derp.test obtained").has_value())
      << "renewed before the client connected: " << derpd_->logText();
  ASSERT_TRUE(derpd_->waitForLog("ACME: renewing a certificate for derp.test", kIssueTimeout))
      << derpd_->logText();
  // New handshakes get pebble's certificate; the cache holds it too.
  ASSERT_NO_FATAL_FAILURE(expectObtainedServedAndCached());
  EXPECT_GT(cachedNotAfter_, static_cast<int64_t>(std::time(nullptr)) + 86400);
  // The client from before the swap keeps its connection and its certificate.
  absl::StatusOr<std::unique_ptr<client::DerpClient>> b = connect();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->peerCertChainDer().front(), (*b)->peerCertChainDer().front());
  const std::vector<uint8_t> payload{4, 5, 6};
  ASSERT_OK((*a)->sendPacket((*b)->publicKey(), payload));
  absl::StatusOr<client::DerpClient::Packet> got = (*b)->recvPacket(5 * kSecond);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_OK((*b)->sendPacket((*a)->publicKey(), payload));
  got = (*a)->recvPacket(5 * kSecond);
  ASSERT_TRUE(got.ok()) << got.status();
}

TEST_F(DerpdAcmeTest, KeepsTryingWhileTheCaIsDownAndRecoversWhenItIsUp) {
  absl::StatusOr<uint16_t> acmePort = freeLoopbackPort();
  ASSERT_TRUE(acmePort.ok());
  startDerpd(absl::StrCat("https://127.0.0.1:", *acmePort, "/dir"));
  ASSERT_TRUE(derpd_->waitForLog("ACME: no certificate for derp.test (attempt 1)", kIssueTimeout))
      << derpd_->logText();
  // Nothing is served for the name meanwhile; the rest of derpd works.
  EXPECT_FALSE(connect().ok());
  absl::StatusOr<HttpResponse> r = httpGet(httpPort_, "/generate_204");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 204);
  // The CA comes up; SIGHUP asks for the next attempt now rather than after
  // the backoff.
  // The attempt after a failure tries TLS-ALPN-01 first: pebble checks 443.
  PebbleOptions opts;
  opts.acmePort = *acmePort;
  opts.tlsPort = 443;
  ASSERT_NO_FATAL_FAILURE(startPebble(opts, httpPort_));
  absl::StatusOr<std::string> root = pebble_->issuingRootPem();
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_OK(replaceFileAtomically(dir_, "pebble-root.pem", *root));
  ASSERT_OK(derpd_->sendSignal(SIGHUP));
  ASSERT_NO_FATAL_FAILURE(expectObtainedServedAndCached());
}

TEST_F(DerpdAcmeTest, AFailedValidationIsRetriedNotFatal) {
  // pebble checks HTTP-01 on a port where nothing answers.
  absl::StatusOr<uint16_t> nowhere = freeLoopbackPort();
  ASSERT_TRUE(nowhere.ok());
  ASSERT_NO_FATAL_FAILURE(startPebble({}, *nowhere));
  startDerpd(pebble_->directoryUrl());
  ASSERT_TRUE(derpd_->waitForLog("ACME: no certificate for derp.test (attempt 1)", kIssueTimeout))
      << derpd_->logText();
  EXPECT_TRUE(derpd_->findLog("did not validate derp.test").has_value()) << derpd_->logText();
  ASSERT_OK(derpd_->sendSignal(SIGHUP));
  ASSERT_TRUE(derpd_->waitForLog("ACME: no certificate for derp.test (attempt 2)", kIssueTimeout))
      << derpd_->logText();
  EXPECT_TRUE(derpd_->running());
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) {
  std::string why = derpd::testing::Pebble::missingReason();
  std::optional<std::string> openssl = derpd::testing::findOnPath("openssl");
  if (!openssl.has_value()) why = "openssl not found";
  if (!why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  derpd::testing::gOpenssl = *openssl;
  // A network namespace of our own (derpd and pebble inherit it): port 443
  // on its loopback is free whatever this machine runs.
  if (std::string why = derpd::testing::enterOwnNetworkNamespace(); !why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
