// The --config TOML file: parsed into settings, applied through the flag
// table, overridden by DERP_* variables and flags, and every error naming the
// file, the line and the key.
#include "config/config_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "temp_dir_test.h"

namespace derpd {
namespace {

class ConfigFileTest : public testing::TempDirTest {
 protected:
  std::string writeFile(const std::string& text) { return TempDirTest::writeFile(text, ".toml"); }
};

TEST_F(ConfigFileTest, ParsesTopLevelKeysAsFlagText) {
  auto settings = parseConfigText(
      "# comment\n"
      "a = \":443\"\n"
      "dev = true\n"
      "stun-port = 3478\n"
      "http-port = -1\n"
      "ratio = 1.5\n"
      "names = [\"x\"]\n",
      "test.toml");
  ASSERT_TRUE(settings.ok()) << settings.status();
  ASSERT_EQ(settings->size(), 6u);
  // In file order, with their lines.
  const struct {
    const char* key;
    const char* text;
    const char* type;
    int line;
  } want[] = {
      {"a", ":443", "string", 2},        {"dev", "true", "boolean", 3},
      {"stun-port", "3478", "integer", 4}, {"http-port", "-1", "integer", 5},
      {"ratio", "", "float", 6},         {"names", "", "array", 7},
  };
  for (size_t i = 0; i < std::size(want); i++) {
    const FileSetting& s = (*settings)[i];
    EXPECT_EQ(s.key, want[i].key);
    EXPECT_EQ(s.text, want[i].text) << s.key;
    EXPECT_EQ(s.type, want[i].type) << s.key;
    EXPECT_EQ(s.line, want[i].line) << s.key;
  }
}

TEST_F(ConfigFileTest, EveryKindOfSettingIsApplied) {
  std::string path = writeFile(
      "a = \"127.0.0.1:3340\"\n"
      "c = \"/srv/derper.key\"\n"
      "http-port = 8080\n"
      "stun = false\n"
      "stun-port = 3479\n"
      "dev = true\n"
      "certmode = \"manual\"\n"
      "certdir = \"/etc/derp\"\n"
      "hostname = \"derp.example.com\"\n"
      "shards = 3\n"
      "tcp-write-timeout = \"5s\"\n"
      "tcp-keepalive-time = \"0\"\n"
      "drain-timeout = \"1m\"\n"
      "home = \"blank\"\n"
      "bootstrap-dns-names = \"a.example.com,b.example.com\"\n"
      "metrics-addr = \"127.0.0.1:9090\"\n"
      "log-format = \"json\"\n"
      "stats-interval = \"30s\"\n");
  auto r = parseCommandLine({"--config", path});
  ASSERT_TRUE(r.ok()) << r.status();
  const Config& c = r->config;
  EXPECT_EQ(c.addr, "127.0.0.1:3340");
  EXPECT_EQ(c.keyFile, "/srv/derper.key");
  EXPECT_EQ(c.httpPort, 8080);
  EXPECT_FALSE(c.stun);
  EXPECT_EQ(c.stunPort, 3479);
  EXPECT_TRUE(c.dev);
  EXPECT_EQ(c.certMode, "manual");
  EXPECT_EQ(c.certDir, "/etc/derp");
  EXPECT_EQ(c.hostname, "derp.example.com");
  EXPECT_EQ(c.shards, 3);
  EXPECT_EQ(c.tcpWriteTimeout, 5 * kSecond);
  EXPECT_EQ(c.tcpKeepAliveTime, 0);
  EXPECT_EQ(c.drainTimeout, 60 * kSecond);
  EXPECT_EQ(c.home, "blank");
  EXPECT_EQ(c.bootstrapDnsNames, (std::vector<std::string>{"a.example.com", "b.example.com"}));
  EXPECT_EQ(c.metricsAddr, "127.0.0.1:9090");
  EXPECT_EQ(c.logFormat, LogFormat::kJson);
  EXPECT_EQ(c.statsInterval, 30 * kSecond);
  EXPECT_EQ(c.configFile, path);
}

TEST_F(ConfigFileTest, MeshSettings) {
  std::string path = writeFile(
      "mesh-with = \"derp1.example.com, https://derp2.example.com:8443/derp\"\n"
      "mesh-psk-file = \"/etc/derp/mesh.key\"\n"
      "mesh-insecure = true\n"
      "mesh-ca = \"/etc/derp/ca.pem\"\n"
      "mesh-resolve-interval = \"10s\"\n");
  auto r = parseCommandLine({"--config", path});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.meshWith,
            (std::vector<std::string>{"derp1.example.com", "https://derp2.example.com:8443/derp"}));
  EXPECT_EQ(r->config.meshPskFile, "/etc/derp/mesh.key");
  EXPECT_TRUE(r->config.meshInsecure);
  EXPECT_EQ(r->config.meshCa, "/etc/derp/ca.pem");
  EXPECT_EQ(r->config.meshResolveInterval, 10 * kSecond);
  // The pairing is checked after every source: the file's key, the flag's peers.
  auto keyOnly = writeFile("mesh-psk-file = \"/etc/derp/mesh.key\"\n");
  EXPECT_TRUE(parseCommandLine({"--config", keyOnly, "-mesh-with", "derp1.example.com"}).ok());
  EXPECT_TRUE(parseCommandLine({"--config", keyOnly}).ok());  // accepting-only node
  auto peersOnly = writeFile("mesh-with = \"derp1.example.com\"\n");
  EXPECT_FALSE(parseCommandLine({"--config", peersOnly}).ok());
  EXPECT_TRUE(parseCommandLine({"--config", peersOnly, "-mesh-psk-file", "/k"}).ok());
}

TEST_F(ConfigFileTest, EmptyFileAndEmptyPathChangeNothing) {
  auto defaults = parseCommandLine({});
  ASSERT_TRUE(defaults.ok());
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--config", writeFile("# nothing\n")},
        std::vector<std::string>{"-config="}}) {
    auto r = parseCommandLine(args);
    ASSERT_TRUE(r.ok()) << r.status();
    Config c = r->config;
    c.configFile.clear();
    EXPECT_EQ(c, defaults->config) << args[0];
  }
}

// Command line > environment > file > defaults, setting by setting.
TEST_F(ConfigFileTest, FlagsBeatEnvironmentBeatsFile) {
  std::string path = writeFile(
      "a = \"127.0.0.1:1\"\n"
      "stun-port = 1111\n"
      "hostname = \"file.example.com\"\n"
      "http-port = 1234\n");
  const struct {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string addr;
    int stunPort;
    std::string hostname;
  } cases[] = {
      {{}, {}, "127.0.0.1:1", 1111, "file.example.com"},
      {{}, {"DERP_ADDR=127.0.0.1:2", "DERP_STUN_PORT=2222"}, "127.0.0.1:2", 2222,
       "file.example.com"},
      {{"-a", "127.0.0.1:3"}, {"DERP_ADDR=127.0.0.1:2", "DERP_DOMAIN=env.example.com"},
       "127.0.0.1:3", 1111, "env.example.com"},
      {{"-stun-port=3333", "-hostname", "flag.example.com"},
       {"DERP_STUN_PORT=2222", "DERP_HOSTNAME=env.example.com"}, "127.0.0.1:1", 3333,
       "flag.example.com"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--config", path};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = parseCommandLine(args, c.env);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->config.addr, c.addr);
    EXPECT_EQ(r->config.stunPort, c.stunPort);
    EXPECT_EQ(r->config.hostname, c.hostname);
    EXPECT_EQ(r->config.httpPort, 1234);  // only the file sets it
  }
  // --config after the flags it is overridden by: position does not matter.
  auto r = parseCommandLine({"-stun-port", "4444", "--config=" + path});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.stunPort, 4444);
  EXPECT_EQ(r->config.addr, "127.0.0.1:1");
}

TEST_F(ConfigFileTest, ErrorsNameTheFileLineAndKey) {
  const struct {
    std::string text;
    std::vector<std::string> mentions;  // besides the path
  } cases[] = {
      {"a = \":443\"\nnope = 1\n", {"line 2", "\"nope\"", "unknown key"}},
      {"stun-port = \"3478\"\n", {"line 1", "\"stun-port\"", "integer", "string"}},
      {"dev = \"yes\"\n", {"line 1", "\"dev\"", "boolean"}},
      {"a = 443\n", {"line 1", "\"a\"", "string", "integer"}},
      {"tcp-write-timeout = 2\n", {"line 1", "\"tcp-write-timeout\"", "Go duration"}},
      {"\n\nstun-port = 70000\n", {"line 3", "\"stun-port\"", "70000", "0 to 65535"}},
      {"certmode = \"selfsigned\"\n", {"line 1", "\"certmode\"", "manual, letsencrypt or gcp"}},
      {"tcp-write-timeout = \"2\"\n", {"line 1", "\"tcp-write-timeout\"", "Go duration"}},
      {"log-format = \"xml\"\n", {"line 1", "\"log-format\"", "text or json"}},
      {"stats-interval = \"-1s\"\n", {"line 1", "\"stats-interval\""}},
      {"hostname = \"\"\n", {"line 1", "\"hostname\""}},
      {"derp = \"maybe\"\n", {"line 1", "\"derp\""}},
      {"accept-connection-limit = \"ten\"\n",
       {"line 1", "\"accept-connection-limit\"", "positive"}},
      {"max-conns-per-ip = \"9\"\n", {"line 1", "\"max-conns-per-ip\"", "integer"}},
      {"mesh-with = \"a,h:99999\"\n", {"line 1", "\"mesh-with\"", "h:99999", "port"}},
      {"mesh-resolve-interval = \"500ms\"\n", {"line 1", "\"mesh-resolve-interval\"", "1s"}},
      {"config = \"/other.toml\"\n", {"line 1", "\"config\"", "command line"}},
      {"help = true\n", {"line 1", "\"help\"", "unknown key"}},
      {"ratio = 1.5\nshards = 2.0\n", {"line 1", "\"ratio\"", "unknown key"}},
      {"shards = 2.0\n", {"line 1", "\"shards\"", "integer", "float"}},
      {"bootstrap-dns-names = [\"a\"]\n", {"line 1", "\"bootstrap-dns-names\"", "array"}},
      {"[tls]\ncertmode = \"manual\"\n", {"line 1", "\"tls\"", "unknown key"}},
      // Malformed TOML: the parser's position.
      {"a = \n", {"line 1", "column"}},
      {"a = \"x\"\na = \"y\"\n", {"line 2"}},
      {"stun-port = 3478 3479\n", {"line 1"}},
  };
  for (const auto& c : cases) {
    std::string path = writeFile(c.text);
    auto r = parseCommandLine({"--config", path});
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    std::string msg(r.status().message());
    EXPECT_NE(msg.find("config file " + path), std::string::npos) << msg;
    for (const std::string& m : c.mentions) {
      EXPECT_NE(msg.find(m), std::string::npos) << "\"" << m << "\" not in: " << msg;
    }
  }
}

TEST_F(ConfigFileTest, UnreadableFileIsAnErrorNamingIt) {
  for (const std::string& path : {dir_ + "/missing.toml", dir_}) {
    auto r = parseCommandLine({"--config", path});
    ASSERT_FALSE(r.ok()) << path;
    std::string msg(r.status().message());
    EXPECT_NE(msg.find("config file " + path + ":"), std::string::npos) << msg;
  }
  EXPECT_NE(std::string(parseCommandLine({"--config", dir_ + "/missing.toml"})
                            .status()
                            .message())
                .find("No such file"),
            std::string::npos);
  EXPECT_FALSE(parseCommandLine({"--config"}).ok());  // flag needs an argument
}

TEST_F(ConfigFileTest, HelpDoesNotReadTheFile) {
  auto r = parseCommandLine({"--config", dir_ + "/missing.toml", "-help"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->action, CommandLineAction::kHelp);
  EXPECT_NE(usageText().find("-config string"), std::string::npos);
}

}  // namespace
}  // namespace derpd
