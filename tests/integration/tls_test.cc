// derpd with TLS (-certmode manual) against real peers: our client over TLS
// 1.3 and 1.2, curl and `openssl s_client` as independent implementations,
// certificates made at test time by the openssl tool (a CA; ECDSA and RSA
// leaves for derp.test, other.test and 127.0.0.1), SNI, the self-signed IP
// certificate, reloads (inotify and SIGHUP) under live clients and the
// plain-HTTP port. Bad TLS input and load are in tls_load_test.cc.
// Exits 77 (skipped) when curl or openssl is not on PATH.
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client_tls.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/metrics_text.h"
#include "integration/test_net.h"
#include "integration/test_pki.h"
#include "integration/test_support.h"
#include "integration/tls_fixture.h"
#include "integration/tls_test_conn.h"

namespace derpd::testing {
namespace {

using client::DerpClient;

constexpr const char* kReloadedOk = "certificates reloaded; new connections use them";
constexpr const char* kReloadRefused = "certificates not reloaded, keeping the current ones";

// ---- DERP over TLS with our client ----

TEST_F(TlsTest, Tls13ClientsRelayAcrossShardsWithMetaCertAndFastStart) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  std::optional<derp::NodeKey> serverKey = loggedServerKey();
  ASSERT_TRUE(serverKey.has_value()) << derpd_->logText();
  const std::vector<uint8_t> leaf = leafDer(gFix->derp1);
  ASSERT_FALSE(leaf.empty());

  // 16 clients: the kernel spreads them over both shards (all on one: 2^-15).
  constexpr int kClients = 16;
  std::vector<std::unique_ptr<DerpClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK_AND_ASSIGN(auto c, connectTls());
    EXPECT_EQ(c->tlsVersion(), "TLSv1.3");
    ASSERT_TRUE(c->metaCertKey().has_value()) << "no meta-cert in the chain";
    EXPECT_EQ(*c->metaCertKey(), *serverKey);
    EXPECT_EQ(c->serverKey(), *serverKey);
    EXPECT_TRUE(c->usedFastStart());
    ASSERT_EQ(c->peerCertChainDer().size(), 2u) << "leaf + meta-cert";
    EXPECT_TRUE(c->peerCertChainDer()[0] == leaf) << "not derp.test's certificate";
    clients.push_back(std::move(c));
  }
  expectRegisteredOnBothShards(port_, kClients);
  if (HasFatalFailure()) return;

  // Everyone to everyone: kClients - 1 packets per receiver, under derper's queue of 32.
  for (int from = 0; from < kClients; ++from) {
    for (int to = 0; to < kClients; ++to) {
      if (from == to) continue;
      ASSERT_OK(clients[from]->sendPacket(clients[to]->publicKey(), taggedPayload(from, to, 400)));
    }
  }
  for (int to = 0; to < kClients; ++to) {
    for (int n = 0; n < kClients - 1; ++n) {
      absl::StatusOr<DerpClient::Packet> p = clients[to]->recvPacket(kWait);
      ASSERT_TRUE(p.ok()) << "client " << to << " packet " << n << ": " << p.status();
      const uint32_t from = payloadSeq(p->payload);
      ASSERT_LT(from, static_cast<uint32_t>(kClients));
      EXPECT_EQ(p->src, clients[from]->publicKey());
      EXPECT_TRUE(p->payload == taggedPayload(from, to, 400));
    }
  }
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetricsTls(port_));
  EXPECT_GT(sumMetric(m, "derpd_packets_relayed_total", {{"path", "cross_shard"}}), 0);
  EXPECT_GE(sumMetric(m, "derpd_tls_handshakes_total", {{"version", "1.3"}}), kClients);
  EXPECT_EQ(sumMetric(m, "derpd_tls_handshakes_total", {{"version", "1.2"}}), 0);
}

TEST_F(TlsTest, Tls12ClientRelaysWithTls13Client) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  client::ClientOptions o12 = tlsOptions();
  o12.maxTlsVersion = TLS1_2_VERSION;
  ASSERT_OK_AND_ASSIGN(auto c12, connectFresh(o12));
  ASSERT_OK_AND_ASSIGN(auto c13, connectTls());
  EXPECT_EQ(c12->tlsVersion(), "TLSv1.2");
  EXPECT_EQ(c13->tlsVersion(), "TLSv1.3");
  // Tailscale's client only trusts the meta-cert over TLS 1.3; derpd sends it anyway.
  EXPECT_FALSE(c12->metaCertKey().has_value());
  EXPECT_FALSE(c12->usedFastStart());
  std::optional<client::MetaCert> meta = client::findMetaCert(c12->peerCertChainDer());
  ASSERT_TRUE(meta.has_value()) << "no meta-cert in the TLS 1.2 chain";
  EXPECT_EQ(meta->serverKey, c12->serverKey());
  EXPECT_EQ(meta->protocolVersion, 2);
  expectRelayBothWays(*c12, *c13, 1);
  ASSERT_OK_AND_ASSIGN(double h12,
                       metricTls(port_, "derpd_tls_handshakes_total", {{"version", "1.2"}}));
  EXPECT_EQ(h12, 1);
}

TEST_F(TlsTest, SniSelectsTheCertificate) {
  install(gFix->derp1, "derp.test");
  install(gFix->other, "other.test");
  start("derp.test,other.test");
  const std::vector<uint8_t> derpLeaf = leafDer(gFix->derp1);
  const std::vector<uint8_t> otherLeaf = leafDer(gFix->other);
  ASSERT_FALSE(derpLeaf.empty());
  ASSERT_FALSE(otherLeaf.empty());

  // Our client verifies each name against the CA.
  ASSERT_OK_AND_ASSIGN(auto d, connectTls("derp.test"));
  EXPECT_TRUE(d->peerCertChainDer().front() == derpLeaf);
  ASSERT_OK_AND_ASSIGN(auto o, connectTls("other.test"));
  EXPECT_TRUE(o->peerCertChainDer().front() == otherLeaf) << "SNI other.test got another cert";
  client::ClientOptions rsa12 = tlsOptions("other.test");
  rsa12.maxTlsVersion = TLS1_2_VERSION;  // ECDHE-RSA over TLS 1.2
  ASSERT_OK_AND_ASSIGN(auto o12, connectFresh(rsa12));
  EXPECT_TRUE(o12->peerCertChainDer().front() == otherLeaf);
  expectRelayBothWays(*d, *o12, 10);

  // No SNI, and an unknown one, get the first hostname's certificate.
  for (const std::string& sni : {std::string(), std::string("unknown.test")}) {
    SCOPED_TRACE("SNI \"" + sni + "\"");
    ASSERT_OK_AND_ASSIGN(auto raw, TlsTestConn::connect(port_, {.serverName = sni}));
    ASSERT_FALSE(raw->peerChainDer().empty());
    EXPECT_TRUE(raw->peerChainDer().front() == derpLeaf);
  }
  // And openssl agrees, verifying against the CA.
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       sClient({"-servername", "other.test", "-CAfile", gFix->pki->caCrt()}));
  EXPECT_EQ(r.exitCode, 0) << r.err;
  std::vector<std::vector<uint8_t>> shown = pemCertsDer(r.out);
  ASSERT_EQ(shown.size(), 2u) << r.out;
  EXPECT_TRUE(shown[0] == otherLeaf);
  EXPECT_TRUE(absl::StrContains(r.out, "Verify return code: 0 (ok)")) << r.out;
}

// --require-sni: a name -hostname serves gets its certificate; no SNI, or an
// unknown name, fails the handshake (counted), as derper refuses them.
TEST_F(TlsTest, RequireSniRefusesMissingAndUnknownNames) {
  install(gFix->derp1, "derp.test");
  install(gFix->other, "other.test");
  // Metrics on their own plain listener: a scrape over TLS by IP is refused too.
  start("derp.test,other.test", {"--require-sni", "--metrics-addr", "127.0.0.1:0"});
  ASSERT_OK_AND_ASSIGN(uint16_t metricsPort, metricsPortOf(*derpd_));
  ASSERT_OK_AND_ASSIGN(auto d, connectTls("derp.test"));
  ASSERT_OK_AND_ASSIGN(auto o, connectTls("other.test"));
  expectRelayBothWays(*d, *o, 10);
  ASSERT_OK_AND_ASSIGN(CommandResult named,
                       sClient({"-servername", "other.test", "-CAfile", gFix->pki->caCrt()}));
  EXPECT_EQ(named.exitCode, 0) << named.err;
  for (const std::vector<std::string>& sni :
       {std::vector<std::string>{"-noservername"},
        std::vector<std::string>{"-servername", "unknown.test"}}) {
    SCOPED_TRACE(sni.back());
    ASSERT_OK_AND_ASSIGN(CommandResult r, sClient(sni));
    EXPECT_NE(r.exitCode, 0) << r.out;
    EXPECT_TRUE(pemCertsDer(r.out).empty()) << "a certificate was served: " << r.out;
  }
  ASSERT_OK_AND_ASSIGN(double refused, scrapeMetric(metricsPort, "derpd_connections_closed_total",
                                                    {{"reason", "tls_handshake_failed"}}));
  EXPECT_GE(refused, 2);
}

// An IP -hostname cannot be asked for by SNI: the combination stops startup.
TEST_F(TlsTest, RequireSniWithAnIpHostnameStopsStartup) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> d,
                       DerpdProcess::spawn(options("127.0.0.1", {"--require-sni"})));
  ASSERT_OK_AND_ASSIGN(int code, d->waitExit(kWait));
  EXPECT_EQ(code, 2);  // a bad flag value
  ASSERT_TRUE(d->waitForOutputEnd(kWait));
  EXPECT_TRUE(absl::StrContains(d->logText(), "--require-sni")) << d->logText();
}

// ---- Independent peers: curl and openssl ----

TEST_F(TlsTest, CurlSeesEndpointsWithHsts) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  struct Case {
    std::string path;
    int status;
  };
  for (const Case& c : {Case{"/generate_204", 204}, Case{"/derp/probe", 200},
                        Case{"/robots.txt", 200}, Case{"/", 200}}) {
    SCOPED_TRACE(c.path);
    ASSERT_OK_AND_ASSIGN(CommandResult r,
                         curlTls(c.path, {"-H", "X-Tailscale-Challenge: ch4llenge-1"}));
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_TRUE(r.out.starts_with(absl::StrCat("HTTP/1.1 ", c.status))) << r.out;
    const std::string lower = absl::AsciiStrToLower(r.out);
    EXPECT_TRUE(absl::StrContains(
        lower, "strict-transport-security: max-age=63072000; includesubdomains\r\n"))
        << r.out;
    EXPECT_TRUE(absl::StrContains(r.err, "SSL certificate verify ok")) << r.err;
    if (c.path == "/generate_204") {
      EXPECT_TRUE(absl::StrContains(lower, "x-tailscale-response: response ch4llenge-1\r\n"))
          << r.out;
    }
    if (c.path == "/robots.txt") {
      EXPECT_TRUE(r.out.ends_with("\r\n\r\nUser-agent: *\nDisallow: /\n")) << r.out;
    }
  }
}

TEST_F(TlsTest, CurlNegotiatesTls12AndTls13) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(CommandResult r12, curlTls("/derp/probe", {"--tls-max", "1.2"}));
  ASSERT_EQ(r12.exitCode, 0) << r12.err;
  EXPECT_TRUE(absl::StrContains(r12.err, "SSL connection using TLSv1.2")) << r12.err;
  EXPECT_TRUE(r12.out.starts_with("HTTP/1.1 200")) << r12.out;
  ASSERT_OK_AND_ASSIGN(CommandResult r13, curlTls("/derp/probe", {"--tlsv1.3"}));
  ASSERT_EQ(r13.exitCode, 0) << r13.err;
  EXPECT_TRUE(absl::StrContains(r13.err, "SSL connection using TLSv1.3")) << r13.err;
  EXPECT_TRUE(r13.out.starts_with("HTTP/1.1 200")) << r13.out;
  ASSERT_OK_AND_ASSIGN(double h12,
                       metricTls(port_, "derpd_tls_handshakes_total", {{"version", "1.2"}}));
  EXPECT_EQ(h12, 1);
}

TEST_F(TlsTest, CurlUpgradesToDerpAndGetsServerKey) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  std::optional<derp::NodeKey> serverKey = loggedServerKey();
  ASSERT_TRUE(serverKey.has_value());
  // curl waits for more after the 101; --max-time ends it (exit 28).
  ASSERT_OK_AND_ASSIGN(CommandResult r,
                       curlTls("/derp", {"--http1.1", "--max-time", "2", "-H", "Upgrade: DERP",
                                         "-H", "Connection: Upgrade"}));
  ASSERT_TRUE(r.out.starts_with("HTTP/1.1 101 ")) << "exit " << r.exitCode << ": " << r.out;
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(r.out), "upgrade: derp\r\n")) << r.out;
  // What follows the head is the ServerKey frame: type 1, length 40, magic, key.
  const size_t head = r.out.find("\r\n\r\n");
  ASSERT_NE(head, std::string::npos);
  const std::string frame = r.out.substr(head + 4);
  ASSERT_GE(frame.size(), 5u + 40u) << "got " << frame.size() << " bytes after the head";
  EXPECT_EQ(frame.substr(0, 5), std::string("\x01\x00\x00\x00\x28", 5));
  EXPECT_EQ(frame.substr(5, 8), "DERP\xF0\x9F\x94\x91");
  EXPECT_EQ(frame.substr(13, 32), std::string(serverKey->bytes.begin(), serverKey->bytes.end()));
}

TEST_F(TlsTest, OpensslSeesLeafAndMetaCertOverTls12And13) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  std::optional<derp::NodeKey> serverKey = loggedServerKey();
  ASSERT_TRUE(serverKey.has_value());
  const std::vector<uint8_t> leaf = leafDer(gFix->derp1);
  for (const std::string version : {"1_3", "1_2"}) {
    SCOPED_TRACE("TLS " + version);
    ASSERT_OK_AND_ASSIGN(CommandResult r, sClient({"-tls" + version, "-servername", "derp.test",
                                                   "-CAfile", gFix->pki->caCrt()}));
    EXPECT_EQ(r.exitCode, 0) << r.err;
    std::string expectVersion = version == "1_3" ? "TLSv1.3" : "TLSv1.2";
    EXPECT_TRUE(absl::StrContains(r.out, "New, " + expectVersion + ", Cipher is")) << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, "Verify return code: 0 (ok)")) << r.out;
    std::vector<std::vector<uint8_t>> shown = pemCertsDer(r.out);
    ASSERT_EQ(shown.size(), 2u) << r.out;
    EXPECT_TRUE(shown[0] == leaf);

    // The second PEM block, read by openssl x509.
    const size_t second =
        r.out.find("-----BEGIN CERTIFICATE-----", r.out.find("-----END CERTIFICATE-----"));
    const std::string endMark = "-----END CERTIFICATE-----";
    const size_t end = r.out.find(endMark, second);
    ASSERT_NE(end, std::string::npos);
    const std::string metaPath = stateDir_ + "/meta.pem";
    ASSERT_OK(replaceFileAtomically(stateDir_, "meta.pem",
                                    r.out.substr(second, end + endMark.size() - second) + "\n"));
    ASSERT_OK_AND_ASSIGN(CommandResult x, runCommand({gFix->openssl, "x509", "-noout", "-subject",
                                                      "-serial", "-in", metaPath},
                                                     {}, kToolTimeout));
    ASSERT_EQ(x.exitCode, 0) << x.err;
    EXPECT_TRUE(absl::StrContains(x.out, "CN = derpkey" + serverKey->hex() + "\n")) << x.out;
    EXPECT_TRUE(absl::StrContains(x.out, "serial=02\n")) << x.out;
  }
}

// What a scanner sees in TLS 1.2: the server's choice of suite, ECDHE with an
// AEAD only (a client preferring CBC, RSA key exchange or 3DES gets the AEAD
// suite; one offering nothing else is refused), and a ServerHello.random that
// does not start with the server's clock.
TEST_F(TlsTest, Tls12OffersOnlyEcdheAeadInServerOrderAndARandomWithoutTheClock) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(
      CommandResult pick,
      sClient({"-tls1_2", "-servername", "derp.test", "-cipher",
               "DES-CBC3-SHA:AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-ECDSA-AES128-GCM-SHA256"}));
  EXPECT_EQ(pick.exitCode, 0) << pick.err;
  EXPECT_TRUE(absl::StrContains(pick.out, "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256")) << pick.out;
  ASSERT_OK_AND_ASSIGN(CommandResult weak,
                       sClient({"-tls1_2", "-servername", "derp.test", "-cipher",
                                "DES-CBC3-SHA:AES128-SHA:AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA"}));
  EXPECT_NE(weak.exitCode, 0) << weak.out;
  EXPECT_FALSE(absl::StrContains(weak.out, "Cipher is ECDHE")) << weak.out;

  // The first 4 bytes of a TLS 1.2 random used to be the Unix time. Random
  // bytes land within a day of now with odds 1 in 25,000; two handshakes
  // both doing so, 1 in 600 million.
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  int nearNow = 0;
  for (int i = 0; i < 2; i++) {
    ASSERT_OK_AND_ASSIGN(CommandResult r, sClient({"-tls1_2", "-servername", "derp.test", "-msg"}));
    ASSERT_EQ(r.exitCode, 0) << r.err;
    // "<<< TLS 1.2, Handshake [length ...], ServerHello" then hex lines:
    // 02 (type) 00 00 xx (length) 03 03 (version) then the random.
    const size_t at = r.out.find("ServerHello\n");
    ASSERT_NE(at, std::string::npos) << r.out;
    std::istringstream hex(r.out.substr(at + 12, 200));
    std::vector<int> bytes;
    std::string tok;
    while (bytes.size() < 10 && hex >> tok) bytes.push_back(std::stoi(tok, nullptr, 16));
    ASSERT_EQ(bytes.size(), 10u) << r.out;
    ASSERT_EQ(bytes[0], 0x02) << r.out;
    const int64_t t = (int64_t{bytes[6]} << 24) | (bytes[7] << 16) | (bytes[8] << 8) | bytes[9];
    if (t > now - 86400 && t < now + 86400) nearNow++;
  }
  EXPECT_LT(nearNow, 2) << "ServerHello.random starts with the server's clock";
}

// ---- Certificates ----

// derpctl probe http:// against a TLS port fails, and says to try https://.
TEST_F(TlsTest, DerpctlProbeOfPlainUrlOnTlsPortHintsHttps) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(std::string derpctl, binaryFromEnv("DERPCTL_BINARY"));
  const std::string where = absl::StrCat("127.0.0.1:", port_);
  ASSERT_OK_AND_ASSIGN(
      CommandResult r,
      runCommand({derpctl, "probe", "--timeout", "5s", "http://" + where}, {}, kToolTimeout));
  EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("probe https://" + where + " instead"), std::string::npos) << r.err;
}

// Each certificate loaded is logged with its names, expiry and fingerprint;
// one that expires within 14 days is a warning, and counted.
TEST_F(TlsTest, LoadedCertificatesAreLoggedAndExpiringOnesWarned) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  std::optional<std::string> line = derpd_->findLog("loaded certificate derp.test: valid until ");
  ASSERT_TRUE(line.has_value()) << derpd_->logText();
  EXPECT_TRUE(line->find("(29 days), sha256-raw:") != std::string::npos ||
              line->find("(30 days), sha256-raw:") != std::string::npos)
      << *line;
  ASSERT_OK_AND_ASSIGN(double fine, metricTls(port_, "derpd_tls_cert_expiring_loads_total"));
  EXPECT_EQ(fine, 0);
  derpd_.reset();

  ASSERT_OK_AND_ASSIGN(LeafFiles soon, gFix->pki->issue("soon", "derp.test", "DNS:derp.test",
                                                        KeyType::kEcdsaP256, 5));
  install(soon, "derp.test");
  start("derp.test");
  std::optional<std::string> warned = derpd_->findLog("loaded certificate derp.test: valid until ");
  ASSERT_TRUE(warned.has_value()) << derpd_->logText();
  EXPECT_NE(warned->find(" warn "), std::string::npos) << *warned;
  EXPECT_TRUE(warned->find("(4 days)") != std::string::npos ||
              warned->find("(5 days)") != std::string::npos)
      << *warned;
  EXPECT_NE(warned->find("renew it"), std::string::npos) << *warned;
  ASSERT_OK_AND_ASSIGN(double expiring, metricTls(port_, "derpd_tls_cert_expiring_loads_total"));
  EXPECT_EQ(expiring, 1);
}

// The derpMap line says which ports clients must use when they are not the
// defaults (here: no STUN at all, STUNPort -1).
TEST_F(TlsTest, IpHostnameDerpMapLineCarriesNonDefaultPorts) {
  start("127.0.0.1", {"-stun=false"});
  const std::string log = derpd_->logText();
  const size_t at = log.find(R"({"Name":"custom","RegionID":900,"HostName":"127.0.0.1")");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find(R"(,"STUNPort":-1})"), std::string::npos) << line;
  EXPECT_EQ(line.find("DERPPort"), std::string::npos) << line;  // -a's port 0: not known yet
}

TEST_F(TlsTest, IpHostnameGetsSelfSignedCertThatMatchesTheLoggedPin) {
  start("127.0.0.1");
  ASSERT_TRUE(
      derpd_->findLog("Using self-signed certificate for IP address \"127.0.0.1\"").has_value())
      << derpd_->logText();
  // The derpMap node line: {"Name":"custom",...,"CertName":"sha256-raw:<64 hex>"}.
  const std::string log = derpd_->logText();
  const std::string nodePrefix =
      R"({"Name":"custom","RegionID":900,"HostName":"127.0.0.1","CertName":"sha256-raw:)";
  const size_t at = log.find(nodePrefix);
  ASSERT_NE(at, std::string::npos) << log;
  const std::string pinHex = log.substr(at + nodePrefix.size(), 64);
  ASSERT_EQ(pinHex.size(), 64u) << log;
  EXPECT_TRUE(std::all_of(pinHex.begin(), pinHex.end(),
                          [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); }))
      << pinHex;
  EXPECT_EQ(log.substr(at + nodePrefix.size() + 64, 2), "\"}") << log;

  const std::string crt = certDir_ + "/127.0.0.1.crt";
  const std::string key = certDir_ + "/127.0.0.1.key";
  EXPECT_EQ(fileMode(crt), 0644);
  EXPECT_EQ(fileMode(key), 0600);
  // The file's certificate, converted by openssl, hashes to the logged pin.
  const std::string derPath = stateDir_ + "/ip.der";
  ASSERT_OK_AND_ASSIGN(CommandResult conv, runCommand({gFix->openssl, "x509", "-in", crt,
                                                       "-outform", "DER", "-out", derPath},
                                                      {}, kToolTimeout));
  ASSERT_EQ(conv.exitCode, 0) << conv.err;
  ASSERT_OK_AND_ASSIGN(std::string fileDer, readFile(derPath));
  EXPECT_EQ(sha256Hex(asBytes(fileDer)), pinHex);

  // What a client receives is that certificate.
  client::ClientOptions insecure = clientOptions(port_);
  insecure.tls = true;
  insecure.insecure = true;
  ASSERT_OK_AND_ASSIGN(auto c, connectFresh(insecure));
  ASSERT_FALSE(c->peerCertChainDer().empty());
  EXPECT_EQ(sha256Hex(c->peerCertChainDer().front()), pinHex);

  // Clients configured with the derpMap's CertName connect and relay.
  client::ClientOptions pinned = clientOptions(port_);
  pinned.tls = true;
  pinned.pinCertName = "sha256-raw:" + pinHex;
  ASSERT_OK_AND_ASSIGN(auto p1, connectFresh(pinned));
  ASSERT_OK_AND_ASSIGN(auto p2, connectFresh(pinned));
  expectRelayBothWays(*p1, *p2, 20);

  // A restart with the files present serves the same certificate.
  ASSERT_OK_AND_ASSIGN(std::string crtBefore, readFile(crt));
  c.reset();
  p1.reset();
  p2.reset();
  derpd_.reset();
  start("127.0.0.1");
  ASSERT_OK_AND_ASSIGN(std::string crtAfter, readFile(crt));
  EXPECT_EQ(crtAfter, crtBefore) << "certificate file rewritten on restart";
  insecure.port = port_;
  ASSERT_OK_AND_ASSIGN(auto again, connectFresh(insecure));
  ASSERT_FALSE(again->peerCertChainDer().empty());
  EXPECT_EQ(sha256Hex(again->peerCertChainDer().front()), pinHex);
}

TEST_F(TlsTest, IpHostnameUsesCaSignedFilesWhenPresent) {
  install(gFix->ip, "127.0.0.1");
  start("127.0.0.1");
  // derper prints its derpMap advice for any IP hostname, whoever signed the
  // certificate; the pin must be that of the file's certificate.
  const std::vector<uint8_t> ipLeaf = leafDer(gFix->ip);
  ASSERT_FALSE(ipLeaf.empty());
  EXPECT_TRUE(absl::StrContains(derpd_->logText(),
                                absl::StrCat("\"CertName\":\"sha256-raw:", sha256Hex(ipLeaf))))
      << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(std::string served, readFile(certDir_ + "/127.0.0.1.crt"));
  ASSERT_OK_AND_ASSIGN(std::string installed, readFile(gFix->ip.crt));
  EXPECT_EQ(served, installed) << "the certificate file was replaced";
  // Connecting by IP: no SNI, verified against the IP SAN.
  client::ClientOptions o = clientOptions(port_);
  o.tls = true;
  o.caFile = gFix->pki->caCrt();
  ASSERT_OK_AND_ASSIGN(auto a, connectFresh(o));
  ASSERT_OK_AND_ASSIGN(auto b, connectFresh(o));
  EXPECT_TRUE(a->peerCertChainDer().front() == ipLeaf);
  expectRelayBothWays(*a, *b, 30);
  ASSERT_OK_AND_ASSIGN(
      CommandResult r,
      runCommand({gFix->curl, "-sS", "-i", "--noproxy", "*", "--max-time", "10", "--cacert",
                  gFix->pki->caCrt(), absl::StrCat("https://127.0.0.1:", port_, "/generate_204")},
                 {}, kToolTimeout));
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("HTTP/1.1 204")) << r.out;
}

TEST_F(TlsTest, MissingCertificateForDnsHostnameExits1NamingTheFile) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> d,
                       DerpdProcess::spawn(options("derp.test", {})));
  ASSERT_OK_AND_ASSIGN(int code, d->waitExit(kWait));
  EXPECT_EQ(code, 1);
  ASSERT_TRUE(d->waitForOutputEnd(kWait));
  EXPECT_TRUE(absl::StrContains(d->logText(), certDir_ + "/derp.test.crt")) << d->logText();
}

// ---- Reloads under live clients ----

TEST_F(TlsTest, FileChangeReloadsAndBadPairIsRefused) {
  install(gFix->derp1, "derp.test");
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(auto a, connectTls());
  ASSERT_OK_AND_ASSIGN(auto b, connectTls());
  EXPECT_TRUE(a->peerCertChainDer().front() == leafDer(gFix->derp1));

  install(gFix->derp2, "derp.test");
  ASSERT_TRUE(waitForLogCount(*derpd_, kReloadedOk, 1, kWait)) << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(auto c, connectTls());
  EXPECT_TRUE(c->peerCertChainDer().front() == leafDer(gFix->derp2)) << "new handshake, old cert";
  expectRelayBothWays(*a, *b, 40);
  expectRelayBothWays(*a, *c, 42);
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetricsTls(port_));
  EXPECT_GE(sumMetric(m, "derpd_tls_cert_reloads_total", {{"result", "ok"}}), 1);
  EXPECT_EQ(sumMetric(m, "derpd_tls_cert_reloads_total", {{"result", "error"}}), 0);
  // The test PKI's leaves expire in 30 days.
  const double expiry =
      sumMetric(m, "derpd_tls_cert_expiry_timestamp_seconds", {{"name", "derp.test"}});
  const double in30Days = static_cast<double>(std::time(nullptr)) + 30 * 86400.0;
  EXPECT_NEAR(expiry, in30Days, 2 * 86400.0);

  // A certificate with a key that is not its own is refused; derp2 stays.
  install(gFix->derp3, gFix->derp1, "derp.test");
  ASSERT_TRUE(waitForLogCount(*derpd_, kReloadRefused, 1, kWait)) << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(double errors,
                       waitForMetricTls(
                           port_, "derpd_tls_cert_reloads_total", {{"result", "error"}},
                           [](double v) { return v >= 1; }, kWait));
  EXPECT_GE(errors, 1);
  ASSERT_OK_AND_ASSIGN(auto d, connectTls());
  EXPECT_TRUE(d->peerCertChainDer().front() == leafDer(gFix->derp2));
  expectRelayBothWays(*a, *b, 44);
  expectRelayBothWays(*c, *d, 46);
}

TEST_F(TlsTest, SighupReloadsFilesTheWatcherCannotSee) {
  // The certdir holds symlinks into a staging directory that is not watched,
  // so only SIGHUP can pick up a change there.
  const std::string stage = stateDir_ + "/stage";
  ASSERT_EQ(::mkdir(stage.c_str(), 0700), 0);
  auto stageInstall = [&](const LeafFiles& crtFrom, const LeafFiles& keyFrom) {
    ASSERT_OK_AND_ASSIGN(std::string crt, readFile(crtFrom.crt));
    ASSERT_OK_AND_ASSIGN(std::string key, readFile(keyFrom.key));
    ASSERT_OK(replaceFileAtomically(stage, "derp.test.key", key));
    ASSERT_OK(replaceFileAtomically(stage, "derp.test.crt", crt));
  };
  stageInstall(gFix->derp1, gFix->derp1);
  ASSERT_EQ(::symlink((stage + "/derp.test.crt").c_str(), (certDir_ + "/derp.test.crt").c_str()),
            0);
  ASSERT_EQ(::symlink((stage + "/derp.test.key").c_str(), (certDir_ + "/derp.test.key").c_str()),
            0);
  start("derp.test");
  ASSERT_OK_AND_ASSIGN(auto a, connectTls());
  ASSERT_OK_AND_ASSIGN(auto b, connectTls());

  stageInstall(gFix->derp2, gFix->derp2);
  ASSERT_OK(derpd_->sendSignal(SIGHUP));
  ASSERT_TRUE(waitForLogCount(*derpd_, absl::StrCat("SIGHUP: ", kReloadedOk), 1, kWait))
      << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(auto c, connectTls());
  EXPECT_TRUE(c->peerCertChainDer().front() == leafDer(gFix->derp2));
  expectRelayBothWays(*a, *b, 50);

  stageInstall(gFix->derp3, gFix->derp1);  // mismatched
  ASSERT_OK(derpd_->sendSignal(SIGHUP));
  ASSERT_TRUE(waitForLogCount(*derpd_, absl::StrCat("SIGHUP: ", kReloadRefused), 1, kWait))
      << derpd_->logText();
  ASSERT_OK_AND_ASSIGN(std::vector<MetricSample> m, scrapeMetricsTls(port_));
  EXPECT_EQ(sumMetric(m, "derpd_tls_cert_reloads_total", {{"result", "ok"}}), 1);
  EXPECT_EQ(sumMetric(m, "derpd_tls_cert_reloads_total", {{"result", "error"}}), 1);
  ASSERT_OK_AND_ASSIGN(auto d, connectTls());
  EXPECT_TRUE(d->peerCertChainDer().front() == leafDer(gFix->derp2));
  expectRelayBothWays(*a, *b, 52);
  expectRelayBothWays(*c, *d, 54);
}
// ---- The plain-HTTP port ----

TEST_F(TlsTest, PlainPortServesGenerate204AndRedirectsToHttps) {
  install(gFix->derp1, "derp.test");
  start("derp.test", {"-http-port", "0"});
  std::optional<std::string> line =
      derpd_->findLog("plain HTTP (redirects, /generate_204) on ");  // manual mode: no ACME
  ASSERT_TRUE(line.has_value()) << derpd_->logText();
  const uint16_t plain = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  ASSERT_NE(plain, 0);
  ASSERT_NE(plain, port_);

  ASSERT_OK_AND_ASSIGN(HttpResponse g,
                       httpGet(plain, "/generate_204", "X-Tailscale-Challenge: plain-7\r\n"));
  EXPECT_EQ(g.status, 204);
  EXPECT_EQ(g.header("X-Tailscale-Response"), "response plain-7");
  EXPECT_FALSE(g.hasHeader("Strict-Transport-Security")) << "HSTS over plain HTTP";

  ASSERT_OK_AND_ASSIGN(HttpResponse probe, httpGet(plain, "/derp/probe"));
  EXPECT_EQ(probe.status, 302);
  EXPECT_EQ(probe.header("Location"), absl::StrCat("https://127.0.0.1:", port_, "/derp/probe"));
  // Metrics are not served in clear text beside TLS.
  ASSERT_OK_AND_ASSIGN(HttpResponse metrics, httpGet(plain, "/metrics"));
  EXPECT_EQ(metrics.status, 302);
  ASSERT_OK_AND_ASSIGN(HttpResponse acme, httpGet(plain, "/.well-known/acme-challenge/tok3n"));
  EXPECT_EQ(acme.status, 404);
  ASSERT_OK_AND_ASSIGN(
      HttpResponse post,
      httpExchange(plain, absl::StrCat("POST /derp HTTP/1.1\r\nHost: 127.0.0.1:", plain,
                                       "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")));
  EXPECT_EQ(post.status, 400);
  EXPECT_TRUE(absl::StrContains(post.body, "Use HTTPS")) << post.body;

  // curl follows the redirect to the TLS port (-k: the certificate names derp.test).
  ASSERT_OK_AND_ASSIGN(
      CommandResult r,
      runCommand({gFix->curl, "-sS", "-k", "-L", "--noproxy", "*", "--max-time", "10", "-o",
                  "/dev/null", "-w", "%{http_code} %{num_redirects} %{url_effective}",
                  absl::StrCat("http://127.0.0.1:", plain, "/derp/probe")},
                 {}, kToolTimeout));
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("200 1 https://127.0.0.1:", port_, "/derp/probe"));
}

}  // namespace
}  // namespace derpd::testing

int main(int argc, char** argv) { return derpd::testing::runTlsTestMain(argc, argv); }
