#include "config/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "config/duration.h"

namespace derpd {
namespace {

absl::StatusOr<Config> parse(std::vector<std::string> args) {
  auto r = parseCommandLine(args);
  if (!r.ok()) return r.status();
  return r->config;
}

TEST(DurationTest, GoSyntax) {
  EXPECT_EQ(parseGoDuration("2s"), 2 * kSecond);
  EXPECT_EQ(parseGoDuration("500ms"), 500 * kMillisecond);
  EXPECT_EQ(parseGoDuration("10m"), 600 * kSecond);
  EXPECT_EQ(parseGoDuration("1h30m"), 5400 * kSecond);
  EXPECT_EQ(parseGoDuration("1.5s"), 1500 * kMillisecond);
  EXPECT_EQ(parseGoDuration("250us"), 250 * kMicrosecond);
  EXPECT_EQ(parseGoDuration("0"), 0);
  EXPECT_FALSE(parseGoDuration(""));
  EXPECT_FALSE(parseGoDuration("2"));
  EXPECT_FALSE(parseGoDuration("s"));
  EXPECT_FALSE(parseGoDuration("2x"));
  EXPECT_FALSE(parseGoDuration("2s3"));
}

TEST(ConfigTest, DefaultsMatchDerper) {
  auto c = parse({});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->addr, ":443");
  EXPECT_EQ(c->keyFile, "/var/lib/derper/derper.key");
  EXPECT_EQ(c->httpPort, 80);
  EXPECT_EQ(c->tcpWriteTimeout, 2 * kSecond);
  EXPECT_EQ(c->tcpKeepAliveTime, 600 * kSecond);
  EXPECT_EQ(c->tcpUserTimeout, 15 * kSecond);
}

TEST(ConfigTest, GoFlagForms) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"-a", "127.0.0.1:1"}, {"-a=127.0.0.1:1"}, {"--a", "127.0.0.1:1"},
           {"--a=127.0.0.1:1"}}) {
    auto c = parse(args);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->addr, "127.0.0.1:1");
  }
  auto c = parse({"-c", "/tmp/k", "-http-port", "-1", "--shards", "2", "-tcp-write-timeout",
                  "1s", "-tcp-keepalive-time=0", "-tcp-user-timeout", "3s", "-stun=false",
                  "-dev"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->keyFile, "/tmp/k");
  EXPECT_EQ(c->httpPort, -1);
  EXPECT_EQ(c->shards, 2);
  EXPECT_EQ(c->tcpWriteTimeout, kSecond);
  EXPECT_EQ(c->tcpKeepAliveTime, 0);
  EXPECT_EQ(c->tcpUserTimeout, 3 * kSecond);
  EXPECT_FALSE(c->stun);
  auto s = parse({"-stun", "-stun-port", "0"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->stun);
  EXPECT_EQ(s->stunPort, 0);
  EXPECT_TRUE(c->dev);
  auto m = parse({"-certmode", "manual", "-certdir", "/etc/derp", "-hostname", "a.example,10.0.0.1"});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->certMode, "manual");
  EXPECT_EQ(m->certDir, "/etc/derp");
  EXPECT_EQ(m->hostname, "a.example,10.0.0.1");
}

TEST(ConfigTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  const Case cases[] = {
      {{"-nope"}, "-nope"},
      {{"-http-port", "x"}, "-http-port"},
      {{"-http-port", "70000"}, "-http-port"},
      {{"-tcp-write-timeout", "2"}, "-tcp-write-timeout"},
      {{"-shards", "-3"}, "-shards"},
      {{"-a"}, "-a"},
      {{"-stun=maybe"}, "-stun"},
      {{"-stun-port", "65536"}, "-stun-port"},
      {{"-stun-port", "x"}, "-stun-port"},
      {{"-mesh-with", "a,h:99999", "-mesh-psk-file", "k"}, "-mesh-with"},
      {{"-mesh-resolve-interval", "500ms"}, "-mesh-resolve-interval"},
      {{"-mesh-watcher-queue-kb", "8"}, "-mesh-watcher-queue-kb"},
      {{"-packet-memory-mb", "3"}, "-packet-memory-mb"},
      {{"-mesh-ca", ""}, "-mesh-ca"},
      {{"-verify-clients=maybe"}, "-verify-clients"},
      {{"-verify-client-url", "ftp://x/verify"}, "-verify-client-url"},
      {{"-hostname", ""}, "-hostname"},
      {{"-certmode", "bogus"}, "-certmode"},
      {{"-derp=maybe"}, "-derp"},
      {{"-derp=false", "-stun=false"}, "-derp=false"},
      {{"positional"}, "positional"},
  };
  for (const Case& c : cases) {
    auto r = parseCommandLine(c.args);
    ASSERT_FALSE(r.ok()) << c.args[0];
    EXPECT_NE(std::string(r.status().message()).find(c.mentions), std::string::npos)
        << r.status();
  }
}

TEST(ConfigTest, AdmissionLimitFlags) {
  auto d = parse({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->acceptConnectionLimit, std::numeric_limits<double>::infinity());
  EXPECT_EQ(d->acceptConnectionBurst, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(d->maxConnsPerIp, 1024);
  EXPECT_EQ(d->maxHandshakesPerShard, 4096);
  // derper's spellings of its defaults.
  for (const char* inf : {"+Inf", "Inf", "inf", "infinity"}) {
    auto c =
        parse({"-accept-connection-limit", inf, "-accept-connection-burst", "9223372036854775807"});
    ASSERT_TRUE(c.ok()) << inf << ": " << c.status();
    EXPECT_EQ(c->acceptConnectionLimit, std::numeric_limits<double>::infinity());
  }
  auto c = parse({"-accept-connection-limit", "12.5", "-accept-connection-burst", "30",
                  "--max-conns-per-ip", "0", "--max-handshakes-per-shard", "100"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->acceptConnectionLimit, 12.5);
  EXPECT_EQ(c->acceptConnectionBurst, 30);
  EXPECT_EQ(c->maxConnsPerIp, 0);
  EXPECT_EQ(c->maxHandshakesPerShard, 100);
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"-accept-connection-limit", "0"},
                                             {"-accept-connection-limit", "-1"},
                                             {"-accept-connection-limit", "NaN"},
                                             {"-accept-connection-limit", "10/s"},
                                             {"-accept-connection-burst", "0"},
                                             {"-accept-connection-burst", "99999999999999999999"},
                                             {"-max-conns-per-ip", "-1"},
                                             {"-max-handshakes-per-shard", "lots"}}) {
    auto bad = parse(args);
    ASSERT_FALSE(bad.ok()) << args[0] << " " << args[1];
    EXPECT_NE(std::string(bad.status().message()).find(args[0]), std::string::npos) << bad.status();
  }
}

TEST(ConfigTest, VerificationFlags) {
  auto d = parse({});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->verifyClients);
  EXPECT_TRUE(d->verifyClientUrlFailOpen);
  EXPECT_EQ(d->socket, "");
  auto c = parse({"-verify-clients", "-socket", "/run/ts.sock", "-verify-client-url",
                  "https://admit.example/check", "-verify-client-url-fail-open=false"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->verifyClients);
  EXPECT_EQ(c->socket, "/run/ts.sock");
  EXPECT_EQ(c->verifyClientUrl, "https://admit.example/check");
  EXPECT_FALSE(c->verifyClientUrlFailOpen);
  // derper command lines spell out the off values.
  auto off = parse({"-verify-clients=false", "-verify-client-url="});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->verifyClients);
  EXPECT_EQ(off->verifyClientUrl, "");
  auto env = parseCommandLine(
      {}, {"DERP_VERIFY_CLIENTS=true", "DERP_VERIFY_CLIENT_URL=http://127.0.0.1:9/verify"});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->config.verifyClients);
  EXPECT_EQ(env->config.verifyClientUrl, "http://127.0.0.1:9/verify");
}

TEST(ConfigTest, AcmeFlags) {
  auto c = parse({"-certmode", "gcp", "-acme-email", "ops@example.com", "-acme-eab-kid", "kid-1",
                  "-acme-eab-key", "c2VjcmV0", "--acme-directory", "https://ca.example/dir"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->certMode, "gcp");
  EXPECT_EQ(c->acmeEmail, "ops@example.com");
  EXPECT_EQ(c->acmeEabKid, "kid-1");
  EXPECT_EQ(c->acmeEabKey, "c2VjcmV0");
  EXPECT_EQ(c->acmeDirectory, "https://ca.example/dir");
  // What each refusal must name.
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"-certmode", "gcp", "-acme-email", "ops@example.com"}, "-certmode gcp needs"},
      {{"-certmode", "gcp", "-acme-eab-kid", "k", "-acme-eab-key", "c2VjcmV0"}, "-acme-email"},
      {{"-acme-eab-kid", "k"}, "-acme-eab-key"},
      {{"-acme-eab-key", "c2VjcmV0"}, "-acme-eab-kid"},
      {{"-acme-email", "not-an-address"}, "-acme-email"},
      {{"-acme-email", "a@b, c@d"}, "-acme-email"},
      {{"--acme-directory", "ca.example/dir"}, "acme-directory"},
      {{"-certmode", "selfsigned"}, "manual, letsencrypt or gcp"},
  };
  for (const auto& [args, mention] : bad) {
    auto r = parse(args);
    ASSERT_FALSE(r.ok()) << args[0];
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(r.status().message()).find(mention), std::string::npos) << r.status();
  }
  // The container images' variables.
  auto e = parseCommandLine({}, {"DERP_ACME_EMAIL=ops@example.com", "DERP_ACME_EAB_KID=kid-1",
                                 "DERP_ACME_EAB_KEY=c2VjcmV0", "DERP_CERT_MODE=gcp"});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->config.certMode, "gcp");
  EXPECT_EQ(e->config.acmeEabKid, "kid-1");
}

TEST(ConfigTest, ContainerEnvironmentMapsToFlags) {
  auto c = parseCommandLine({}, {"DERP_ADDR=127.0.0.1:3340", "DERP_HTTP_PORT=-1",
                                 "DERP_STUN=false", "DERP_STUN_PORT=3479",
                                 "DERP_DOMAIN=derp.example.com", "DERP_CERT_DIR=/certs",
                                 "DERP_CERT_MODE=letsencrypt", "DERP_VERIFY_CLIENTS=false",
                                 "DERP_VERIFY_CLIENT_URL=", "PATH=/bin", "DERP_UNKNOWN=1"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.addr, "127.0.0.1:3340");
  EXPECT_EQ(c->config.httpPort, -1);
  EXPECT_FALSE(c->config.stun);
  EXPECT_EQ(c->config.stunPort, 3479);
  EXPECT_EQ(c->config.hostname, "derp.example.com");
  EXPECT_EQ(c->config.certDir, "/certs");
  // What set something is listed for the startup log; empty ones did not.
  EXPECT_EQ(c->environment.size(), 8u);
  EXPECT_NE(std::find(c->environment.begin(), c->environment.end(), "DERP_DOMAIN=derp.example.com"),
            c->environment.end());
  auto secret = parseCommandLine({}, {"DERP_ACME_EAB_KID=kid", "DERP_ACME_EAB_KEY=c2VjcmV0"});
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(secret->environment,
            (std::vector<std::string>{"DERP_ACME_EAB_KID=kid", "DERP_ACME_EAB_KEY=(set)"}));
  // DERP_HOSTNAME is the other images' name for the same setting.
  auto h = parseCommandLine({}, {"DERP_HOSTNAME=other.example.com"});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->config.hostname, "other.example.com");
}

TEST(ConfigTest, FlagsWinOverEnvironment) {
  auto c = parseCommandLine({"-a", "127.0.0.1:1", "-stun=true"},
                            {"DERP_ADDR=127.0.0.1:2", "DERP_STUN=false"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.addr, "127.0.0.1:1");
  EXPECT_TRUE(c->config.stun);
}

TEST(ConfigTest, EnvironmentErrorsNameTheVariable) {
  for (const char* bad : {"DERP_HTTP_PORT=eighty", "DERP_STUN=maybe", "DERP_STUN_PORT=70000",
                          "DERP_VERIFY_CLIENTS=maybe", "DERP_VERIFY_CLIENT_URL=ftp://x/verify",
                          "DERP_CERT_MODE=selfsigned", "DERP_MESH_WITH=ftp://x", "DERP_ADDR=443",
                          "DERP_ADDR=:https"}) {
    auto r = parseCommandLine({}, {bad});
    ASSERT_FALSE(r.ok()) << bad;
    std::string var(bad, std::string(bad).find('='));
    EXPECT_NE(std::string(r.status().message()).find(var), std::string::npos) << r.status();
  }
}

// Compose templates leave variables set but empty: that is unset, not fatal.
TEST(ConfigTest, EmptyEnvironmentVariablesAreUnset) {
  auto c = parseCommandLine({}, {"DERP_HTTP_PORT=", "DERP_ADDR=", "DERP_STUN=", "DERP_DOMAIN="});
  ASSERT_TRUE(c.ok()) << c.status();
  auto d = parseCommandLine({});
  EXPECT_EQ(c->config.httpPort, d->config.httpPort);
  EXPECT_EQ(c->config.addr, d->config.addr);
  EXPECT_EQ(c->config.stun, d->config.stun);
  EXPECT_EQ(c->config.hostname, d->config.hostname);
}

TEST(ConfigTest, ListenAddressesAreCheckedWhereTheyAreGiven) {
  for (const char* bad : {"443", "example.com:443", ":99999", "[::1"}) {
    auto r = parseCommandLine({"-a", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("-a"), std::string::npos) << r.status();
  }
  EXPECT_TRUE(parseCommandLine({"-a", "[::1]:8443"}).ok());
  EXPECT_TRUE(parseCommandLine({"-a", "localhost:3340"}).ok());
  EXPECT_FALSE(parseCommandLine({"--metrics-addr", "9090"}).ok());
}

TEST(ConfigTest, PacketMemoryFlag) {
  auto d = parseCommandLine({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->config.packetMemoryMb, 256);
  auto c = parseCommandLine({"--packet-memory-mb=4"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.packetMemoryMb, 4);
}

TEST(ConfigTest, MeshFlags) {
  auto d = parseCommandLine({});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->config.meshWith.empty());
  EXPECT_TRUE(d->config.meshPskFile.empty());
  EXPECT_FALSE(d->config.meshInsecure);
  EXPECT_EQ(d->config.meshCa, "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(d->config.meshResolveInterval, 30 * kSecond);
  EXPECT_EQ(d->config.meshWatcherQueueKb, 64 * 1024);

  auto c =
      parseCommandLine({"-mesh-with", " derp1.example.com,,[fd00::1]:8443, http://10.0.0.2/derp ,",
                        "-mesh-psk-file=/etc/derp/mesh.key", "--mesh-insecure", "--mesh-ca",
                        "/etc/derp/ca.pem", "--mesh-resolve-interval=1s",
                        "--mesh-watcher-queue-kb=16"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.meshWith, (std::vector<std::string>{"derp1.example.com", "[fd00::1]:8443",
                                                          "http://10.0.0.2/derp"}));
  EXPECT_EQ(c->config.meshPskFile, "/etc/derp/mesh.key");
  EXPECT_TRUE(c->config.meshInsecure);
  EXPECT_EQ(c->config.meshCa, "/etc/derp/ca.pem");
  EXPECT_EQ(c->config.meshResolveInterval, kSecond);
  EXPECT_EQ(c->config.meshWatcherQueueKb, 16);

  // Empty values are derper's "no mesh" and need no partner.
  EXPECT_TRUE(parseCommandLine({"-mesh-with", "", "-mesh-psk-file="}).ok());
  EXPECT_TRUE(parseCommandLine({"-mesh-with", " , "}).ok());

  // Each bad item is named, as is the flag.
  for (const char* bad :
       {"h:99999", "ftp://x", "a b", "h:0", "[::1", "http://h/x", "h/10.0.0.1:1"}) {
    auto r = parseCommandLine(
        {"-mesh-with", std::string("ok.example.com,") + bad, "-mesh-psk-file", "k"});
    ASSERT_FALSE(r.ok()) << bad;
    const std::string msg(r.status().message());
    EXPECT_NE(msg.find("-mesh-with"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("\"") + bad + "\""), std::string::npos) << msg;
  }
}

// derper's other mesh key sources: its default key files when -mesh-psk-file
// is not given at all, and $TAILSCALE_DERPER_MESH_KEY with -dev.
TEST(ConfigTest, MeshKeyDefaultsAreDerpers) {
  char dirTemplate[] = "/tmp/derpd-config-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dirTemplate), nullptr);
  const std::string home = dirTemplate;
  const std::string homeEnv = "HOME=" + home;
  auto none = parseCommandLine({}, {homeEnv});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->config.meshPskFile, "");  // no file there yet
  ASSERT_EQ(::mkdir((home + "/keys").c_str(), 0700), 0);
  const std::string keyFile = home + "/keys/derp-mesh.key";
  std::FILE* f = std::fopen(keyFile.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto found = parseCommandLine({"-mesh-with", "derp2.example.com"}, {homeEnv});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->config.meshPskFile, keyFile);
  EXPECT_FALSE(found->config.meshPskFileGiven);
  // Given, even empty, the flag wins.
  auto off = parseCommandLine({"-mesh-psk-file="}, {homeEnv});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->config.meshPskFile, "");
  auto other = parseCommandLine({}, {homeEnv, "DERP_MESH_PSK_FILE=/etc/derp/mesh.key"});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->config.meshPskFile, "/etc/derp/mesh.key");
  std::remove(keyFile.c_str());
  ::rmdir((home + "/keys").c_str());
  ::rmdir(home.c_str());

  const std::string key = "TAILSCALE_DERPER_MESH_KEY=" + std::string(64, 'a');
  auto dev = parseCommandLine({"-dev", "-mesh-with", "derp2.example.com"}, {key});
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ(dev->config.devMeshKey, std::string(64, 'a'));
  EXPECT_NE(std::find(dev->environment.begin(), dev->environment.end(),
                      "TAILSCALE_DERPER_MESH_KEY=(set)"),
            dev->environment.end());
  // Outside -dev derper ignores the variable, and so does derpd.
  EXPECT_FALSE(parseCommandLine({"-mesh-with", "derp2.example.com"}, {key}).ok());
  auto prod = parseCommandLine({}, {key});
  ASSERT_TRUE(prod.ok()) << prod.status();
  EXPECT_EQ(prod->config.devMeshKey, "");
}

// derper flags derpd does not build are refused, saying why and what to use.
TEST(ConfigTest, DerperFlagsNotBuiltAreRefusedWithTheReason) {
  for (const char* flag : {"-secrets-url=https://setec.example", "-secrets-path-prefix=prod/derp",
                           "-secrets-cache-dir=/tmp/x", "-ace"}) {
    SCOPED_TRACE(flag);
    auto r = parseCommandLine({flag});
    ASSERT_FALSE(r.ok());
    const std::string msg(r.status().message());
    EXPECT_NE(msg.find("is not built in derpd"), std::string::npos) << msg;
  }
  auto setec = parseCommandLine({"-secrets-url", "https://setec.example"});
  EXPECT_NE(std::string(setec.status().message()).find("-mesh-psk-file"), std::string::npos);
  EXPECT_NE(std::string(parseCommandLine({"-nosuch"}).status().message())
                .find("flag provided but not defined: -nosuch"),
            std::string::npos);
}

TEST(ConfigTest, BatchWaitIsADurationUpToOneMillisecond) {
  EXPECT_EQ(Config{}.batchWait, 0);
  auto c = parseCommandLine({"--batch-wait", "200us"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.batchWait, 200 * kMicrosecond);
  for (const char* bad : {"2ms", "-1us", "fast"}) {
    auto r = parseCommandLine({std::string("--batch-wait=") + bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("-batch-wait"), std::string::npos);
  }
}

TEST(ConfigTest, MeshWithNeedsMeshPskFile) {
  auto r = parseCommandLine({"-mesh-with", "derp2.example.com"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("-mesh-with needs -mesh-psk-file"),
            std::string::npos)
      << r.status();
  // A key alone is derper's accepting-only node: peers mesh with it, it dials none.
  auto alone = parseCommandLine({"-mesh-psk-file", "/etc/derp/mesh.key"});
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(alone->config.meshWith.empty());
  EXPECT_EQ(alone->config.meshPskFile, "/etc/derp/mesh.key");
}

TEST(ConfigTest, MeshEnvironment) {
  auto c = parseCommandLine({}, {"DERP_MESH_WITH=derp1.example.com,derp2.example.com",
                                 "DERP_MESH_PSK_FILE=/etc/derp/mesh.key"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.meshWith,
            (std::vector<std::string>{"derp1.example.com", "derp2.example.com"}));
  EXPECT_EQ(c->config.meshPskFile, "/etc/derp/mesh.key");
  // Images that set them empty ask for no mesh.
  auto off = parseCommandLine({}, {"DERP_MESH_WITH=", "DERP_MESH_PSK_FILE="});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->config.meshWith.empty());
  // Flags win; the pairing holds across sources.
  auto mixed = parseCommandLine(
      {"-mesh-with", "derp3.example.com"},
      {"DERP_MESH_WITH=derp1.example.com", "DERP_MESH_PSK_FILE=/etc/derp/mesh.key"});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->config.meshWith, (std::vector<std::string>{"derp3.example.com"}));
  // An empty flag turns the environment's peers off; the key alone is fine.
  auto flagOff = parseCommandLine({"-mesh-with="},
                                  {"DERP_MESH_WITH=derp1.example.com", "DERP_MESH_PSK_FILE=/k"});
  ASSERT_TRUE(flagOff.ok()) << flagOff.status();
  EXPECT_TRUE(flagOff->config.meshWith.empty());
  EXPECT_FALSE(parseCommandLine({}, {"DERP_MESH_WITH=derp1.example.com"}).ok());
}

TEST(ConfigTest, HomeTakesDerpersValues) {
  for (const char* ok : {"", "blank", "https://example.com/derp", "http://x"}) {
    auto c = parseCommandLine({std::string("-home=") + ok});
    ASSERT_TRUE(c.ok()) << ok << ": " << c.status();
    EXPECT_EQ(c->config.home, ok);
  }
  for (const char* bad : {"example.com", "ftp://x", "https://x/a b", "https://x/\r\nX: y"}) {
    auto c = parseCommandLine({"-home", bad});
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(std::string(c.status().message()).find("-home"), std::string::npos) << c.status();
  }
}

TEST(ConfigTest, BootstrapDnsNamesAreCommaLists) {
  auto c = parseCommandLine({"-bootstrap-dns-names", "a.example.com,,b.example.com",
                             "--unpublished-bootstrap-dns-names=hidden.example.com"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.bootstrapDnsNames,
            (std::vector<std::string>{"a.example.com", "b.example.com"}));
  EXPECT_EQ(c->config.unpublishedBootstrapDnsNames,
            (std::vector<std::string>{"hidden.example.com"}));
  // derper's name/txtname rollout entries, kept whole for the resolver.
  auto rollout = parseCommandLine(
      {"-unpublished-bootstrap-dns-names=a.example.com/pct.example.com,b.example.com"});
  ASSERT_TRUE(rollout.ok()) << rollout.status();
  EXPECT_EQ(rollout->config.unpublishedBootstrapDnsNames,
            (std::vector<std::string>{"a.example.com/pct.example.com", "b.example.com"}));
  for (const char* bad : {"/pct.example.com", "a.example.com/", "a/b/c", "a b"}) {
    SCOPED_TRACE(bad);
    auto c = parseCommandLine({absl::StrCat("-unpublished-bootstrap-dns-names=", bad)});
    ASSERT_FALSE(c.ok());
    EXPECT_NE(std::string(c.status().message()).find("unpublished-bootstrap-dns-names"),
              std::string::npos)
        << c.status();
  }
  EXPECT_FALSE(parseCommandLine({"-bootstrap-dns-names=a b"}).ok());
}

// A fresh install with every setting commented out would ask Let's Encrypt
// for Tailscale's own name; derpd refuses to run that, saying what to set.
TEST(ConfigTest, LetsEncryptForDerpersDefaultHostnameIsNotServable) {
  auto defaults = parseCommandLine({});
  ASSERT_TRUE(defaults.ok());
  absl::Status st = checkServable(defaults->config);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("DERP_HOSTNAME"), std::string::npos) << st;
  for (std::vector<std::string> fine : std::vector<std::vector<std::string>>{
           {"-hostname", "derp.example.com"}, {"-certmode", "manual"}, {"-a", ":8443"}, {"-dev"}}) {
    auto c = parseCommandLine(fine);
    ASSERT_TRUE(c.ok()) << fine[0];
    EXPECT_TRUE(checkServable(c->config).ok()) << fine[0];
  }
}

TEST(ConfigTest, DerpFalseIsStunOnly) {
  EXPECT_TRUE(parseCommandLine({})->config.derp);
  auto c = parseCommandLine({"-derp=false"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->config.derp);
  EXPECT_TRUE(c->config.stun);
  EXPECT_NE(describeConfig(c->config).find("STUN only"), std::string::npos);
}

TEST(ConfigTest, MetricsAddrIsStored) {
  auto c = parseCommandLine({"--metrics-addr", "127.0.0.1:9090"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.metricsAddr, "127.0.0.1:9090");
  EXPECT_TRUE(parseCommandLine({})->config.metricsAddr.empty());
}

TEST(ConfigTest, MetricsAllowIsAPrefixListAndBadOnesNameTheFlag) {
  auto c = parseCommandLine(
      {"--metrics-addr", "0.0.0.0:9090", "--metrics-allow", "10.0.0.0/8,fd00::/8"});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->config.metricsAllow.size(), 2u);
  EXPECT_EQ(c->config.metricsAllow[0].toString(), "10.0.0.0/8");
  EXPECT_EQ(c->config.metricsAllow[1].toString(), "fd00::/8");
  EXPECT_TRUE(parseCommandLine({})->config.metricsAllow.empty());
  EXPECT_NE(describeConfig(c->config).find("10.0.0.0/8,fd00::/8"), std::string::npos);
  for (const char* bad : {"10.0.0.0/40", "pods", "10.1.0.0/8"}) {
    auto r = parseCommandLine({"--metrics-allow", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("metrics-allow"), std::string::npos)
        << r.status();
  }
}

TEST(ConfigTest, LogFormatAndStatsInterval) {
  auto d = parseCommandLine({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->config.logFormat, LogFormat::kText);
  EXPECT_EQ(d->config.statsInterval, 60 * kSecond);
  const struct {
    std::vector<std::string> args;
    LogFormat format;
    Nanos interval;
  } ok[] = {
      {{"--log-format", "json"}, LogFormat::kJson, 60 * kSecond},
      {{"-log-format=text", "-stats-interval=1s"}, LogFormat::kText, kSecond},
      {{"--stats-interval", "0"}, LogFormat::kText, 0},
      {{"--stats-interval", "5m", "--log-format=json"}, LogFormat::kJson, 300 * kSecond},
  };
  for (const auto& c : ok) {
    auto r = parseCommandLine(c.args);
    ASSERT_TRUE(r.ok()) << c.args[0] << ": " << r.status();
    EXPECT_EQ(r->config.logFormat, c.format) << c.args[0];
    EXPECT_EQ(r->config.statsInterval, c.interval) << c.args[0];
  }
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--log-format", "xml"}, {"--log-format", ""}, {"--log-format"},
           {"--stats-interval", "60"}, {"--stats-interval", "-1s"}}) {
    auto r = parseCommandLine(bad);
    ASSERT_FALSE(r.ok()) << bad[0];
    EXPECT_NE(std::string(r.status().message()).find(bad[0].substr(1)), std::string::npos)
        << r.status();
  }
}

TEST(ConfigTest, HelpAndVersion) {
  EXPECT_EQ(parseCommandLine({"-help"})->action, CommandLineAction::kHelp);
  EXPECT_EQ(parseCommandLine({"--version"})->action, CommandLineAction::kVersion);
  std::string usage = usageText();
  for (const char* flag :
       {"-a ", "-c ", "-http-port", "-tcp-write-timeout", "-mesh-with", "-mesh-psk-file",
        "-mesh-resolve-interval", "-home", "-bootstrap-dns-names", "-metrics-addr"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace derpd
