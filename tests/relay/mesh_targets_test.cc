#include "relay/mesh_targets.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "temp_dir_test.h"

namespace derpd::relay {
namespace {

const std::string kKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class MeshKeyTest : public testing::TempDirTest {
 protected:
  std::string writeFile(const std::string& text) { return TempDirTest::writeFile(text, ".key"); }
};

TEST_F(MeshKeyTest, TrimsAndLowercases) {
  for (const std::string& text : {kKey, "  " + kKey + "\n", "\t" + kKey + "\r\n\n"}) {
    auto key = loadMeshKey(writeFile(text));
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(*key, kKey);
  }
  std::string upper = kKey;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto key = loadMeshKey(writeFile(upper + "\n"));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, kKey);
}

TEST_F(MeshKeyTest, ErrorsNameTheFileAndTheProblem) {
  const struct {
    std::string text;
    std::string mentions;
  } cases[] = {
      {kKey.substr(1), "found 63"},
      {kKey + "0", "found 65"},
      {"", "found 0"},
      {kKey.substr(0, 32) + " " + kKey.substr(33), "not hex"},
      {kKey.substr(0, 63) + "g", "not hex"},
  };
  for (const auto& c : cases) {
    const std::string path = writeFile(c.text);
    auto key = loadMeshKey(path);
    ASSERT_FALSE(key.ok()) << c.text;
    const std::string msg(key.status().message());
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.mentions), std::string::npos) << msg;
    // A secret stays out of logs, even a malformed one.
    if (c.text.size() >= 32) {
      EXPECT_EQ(msg.find(c.text.substr(0, 32)), std::string::npos) << msg;
    }
  }
  const std::string missing = dir_ + "/missing.key";
  auto key = loadMeshKey(missing);
  ASSERT_FALSE(key.ok());
  const std::string msg(key.status().message());
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot read"), std::string::npos) << msg;
}

TEST(MeshEntryTest, Forms) {
  const struct {
    const char* item;
    MeshEntry want;
  } cases[] = {
      {"derp1.example.com", {"derp1.example.com", "derp1.example.com", 0, std::nullopt, ""}},
      {" Derp1.Example.com:8443 ", {"Derp1.Example.com:8443", "derp1.example.com", 8443, {}, ""}},
      {"10.0.0.1", {"10.0.0.1", "10.0.0.1", 0, {}, ""}},
      {"10.0.0.1:3340", {"10.0.0.1:3340", "10.0.0.1", 3340, {}, ""}},
      {"[::1]:443", {"[::1]:443", "::1", 443, {}, ""}},
      {"[fd00::1]", {"[fd00::1]", "fd00::1", 0, {}, ""}},
      {"fd00::1", {"fd00::1", "fd00::1", 0, {}, ""}},
      {"http://h:1/derp", {"http://h:1/derp", "h", 1, false, ""}},
      {"https://h", {"https://h", "h", 0, true, ""}},
      {"HTTPS://h.example.com/", {"HTTPS://h.example.com/", "h.example.com", 0, true, ""}},
      {"https://[fd00::2]:8443/derp", {"https://[fd00::2]:8443/derp", "fd00::2", 8443, true, ""}},
      {"derp-1.derp.default.svc.cluster.local.",
       {"derp-1.derp.default.svc.cluster.local.",
        "derp-1.derp.default.svc.cluster.local.",
        0,
        {},
        ""}},
  };
  for (const auto& c : cases) {
    auto e = parseMeshEntry(c.item);
    ASSERT_TRUE(e.ok()) << c.item << ": " << e.status();
    EXPECT_EQ(*e, c.want) << c.item;
  }
}

TEST(MeshEntryTest, ErrorsQuoteTheItem) {
  std::vector<std::string> bads = {"h:99999",
                                   "h:0",
                                   "h:",
                                   "h:x",
                                   ":443",
                                   "ftp://x",
                                   "[::1",
                                   "[::1]x",
                                   "[x]:1",
                                   "[10.0.0.1]",
                                   "http://h/other",
                                   "http://h?q",
                                   "https://fd00::1",
                                   "https://",
                                   "h/",
                                   "h/10.0.0.1:443",
                                   "h/a b",
                                   "h:99999/10.0.0.1",
                                   "https://h/10.0.0.1",
                                   "a b",
                                   "user@h",
                                   "1234",
                                   "999.1.1.1",
                                   "a..b"};
  bads.push_back(std::string(64, 'a'));  // a label over 63 characters
  for (const std::string& bad : bads) {
    auto e = parseMeshEntry(bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(std::string(e.status().message()).find("\"" + bad + "\""), std::string::npos)
        << e.status();
  }
  for (const char* empty : {"", "  "}) {
    auto e = parseMeshEntry(empty);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(std::string(e.status().message()).find("empty"), std::string::npos) << e.status();
  }
}

// derper's host/dialhost: the peer's name for TLS and identity, another host
// (or address) to connect to.
TEST(MeshEntryTest, HostSlashDialHost) {
  auto e = parseMeshEntry("Derp1.example.com:8443/10.0.0.1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->text, "Derp1.example.com:8443/10.0.0.1");
  EXPECT_EQ(e->host, "derp1.example.com");
  EXPECT_EQ(e->port, 8443);
  EXPECT_EQ(e->dialHost, "10.0.0.1");
  auto pod = parseMeshEntry("derpd-1.derp.example.com/derpd-1.derpd.derp.svc.cluster.local");
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->dialHost, "derpd-1.derpd.derp.svc.cluster.local");
  auto v6 = parseMeshEntry("h.example.com/[fd00::7]");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->dialHost, "fd00::7");
  EXPECT_EQ(parseMeshEntry("h.example.com")->dialHost, "");
}

std::vector<MeshEntry> entries(const std::vector<std::string>& items) {
  std::vector<MeshEntry> out;
  for (const std::string& item : items) {
    auto e = parseMeshEntry(item);
    EXPECT_TRUE(e.ok()) << item << ": " << e.status();
    if (e.ok()) out.push_back(*e);
  }
  return out;
}

std::vector<std::string> ids(const std::vector<MeshTarget>& targets) {
  std::vector<std::string> out;
  for (const MeshTarget& t : targets) out.push_back(t.id());
  return out;
}

TEST(ResolveMeshTargetsTest, DialHostIsConnectedToUnderThePeersName) {
  auto targets =
      resolveMeshTargets(entries({"derp2.example.com/10.0.0.7", "self.example.com/10.0.0.8"}),
                         "self.example.com", true, 443, {});
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].host, "derp2.example.com");  // TLS verifies this name
  EXPECT_EQ(targets[0].address.toString(), "10.0.0.7:443");
  EXPECT_EQ(targets[0].label, "derp2.example.com/10.0.0.7");
  // A dial name resolves like any name.
  auto named =
      resolveMeshTargets(entries({"derp3.example.com:3340/localhost"}), "", false, 443, {});
  ASSERT_FALSE(named.empty());
  for (const MeshTarget& t : named) {
    EXPECT_EQ(t.host, "derp3.example.com");
    EXPECT_TRUE(t.address.isLoopback());
    EXPECT_EQ(t.address.port(), 3340);
  }
}

TEST(ResolveMeshTargetsTest, IpLiteralsNeedNoDns) {
  auto targets = resolveMeshTargets(
      entries({"10.0.0.1", "[fd00::1]:8443", "https://10.0.0.2", "10.0.0.1"}), "derp.example.com",
      /*defaultTls=*/true, /*defaultPort=*/443, {});
  EXPECT_EQ(ids(targets), (std::vector<std::string>{"https://10.0.0.1@10.0.0.1:443",
                                                    "https://fd00::1@[fd00::1]:8443",
                                                    "https://10.0.0.2@10.0.0.2:443"}));
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_EQ(targets[1].label, "[fd00::1]:8443");
  EXPECT_EQ(targets[1].host, "fd00::1");
  EXPECT_EQ(targets[1].address.toString(), "[fd00::1]:8443");
  EXPECT_TRUE(targets[1].tls);
}

TEST(ResolveMeshTargetsTest, DefaultSchemeAndPort) {
  // A bare entry takes this node's scheme and port; an explicit scheme its own default port.
  auto plain = resolveMeshTargets(entries({"10.0.0.1", "http://10.0.0.2", "https://10.0.0.3",
                                           "https://10.0.0.4:8443", "10.0.0.5:3341"}),
                                  "", /*defaultTls=*/false, /*defaultPort=*/3340, {});
  EXPECT_EQ(ids(plain), (std::vector<std::string>{
                            "http://10.0.0.1@10.0.0.1:3340", "http://10.0.0.2@10.0.0.2:80",
                            "https://10.0.0.3@10.0.0.3:443", "https://10.0.0.4@10.0.0.4:8443",
                            "http://10.0.0.5@10.0.0.5:3341"}));
  auto tls = resolveMeshTargets(entries({"10.0.0.1", "http://10.0.0.2"}), "", true, 443, {});
  EXPECT_EQ(ids(tls), (std::vector<std::string>{"https://10.0.0.1@10.0.0.1:443",
                                                "http://10.0.0.2@10.0.0.2:80"}));
}

TEST(ResolveMeshTargetsTest, SkipsItself) {
  // Self names are never looked up: derp1.example.com need not resolve here.
  auto targets = resolveMeshTargets(
      entries({"DERP1.example.com", "https://derp1.example.com:8443", "10.0.0.9", "10.0.0.8"}),
      "derp1.example.com,10.0.0.9", true, 443, {});
  EXPECT_EQ(ids(targets), (std::vector<std::string>{"https://10.0.0.8@10.0.0.8:443"}));
}

TEST(ResolveMeshTargetsTest, NamesResolveToEveryAddress) {
  auto targets =
      resolveMeshTargets(entries({"localhost:3340"}), "derp.example.com", false, 443, {});
  ASSERT_FALSE(targets.empty());
  ASSERT_LE(targets.size(), 2u);  // 127.0.0.1 and/or ::1
  for (const MeshTarget& t : targets) {
    EXPECT_EQ(t.host, "localhost");
    EXPECT_FALSE(t.tls);
    EXPECT_EQ(t.address.port(), 3340);
    EXPECT_TRUE(t.address.isLoopback()) << t.address.toString();
    const std::string ip = t.address.family() == AF_INET ? "127.0.0.1" : "::1";
    EXPECT_EQ(t.label, targets.size() == 1 ? "localhost:3340" : "localhost:3340/" + ip);
  }
}

TEST(ResolveMeshTargetsTest, FailedNameKeepsItsPreviousTargets) {
  auto e = entries({"nonexistent.invalid", "10.0.0.1"});
  EXPECT_EQ(ids(resolveMeshTargets(e, "", true, 443, {})),
            (std::vector<std::string>{"https://10.0.0.1@10.0.0.1:443"}));
  auto made = [](std::string label, std::string host, const char* ip) {
    MeshTarget t;
    t.label = std::move(label);
    t.host = std::move(host);
    t.address = *net::parseListenAddress(std::string(ip) + ":443");
    t.tls = true;
    return t;
  };
  const std::vector<MeshTarget> previous = {
      made("nonexistent.invalid/10.0.0.2", "nonexistent.invalid", "10.0.0.2"),
      made("nonexistent.invalid/10.0.0.3", "nonexistent.invalid", "10.0.0.3"),
      made("gone.invalid", "gone.invalid", "10.0.0.4"),  // no longer configured
      made("10.0.0.1", "10.0.0.1", "10.0.0.1"),
  };
  auto targets = resolveMeshTargets(e, "", true, 443, previous);
  EXPECT_EQ(targets, (std::vector<MeshTarget>{previous[0], previous[1], previous[3]}));
}

TEST(MeshTargetStoreTest, GenerationBumpsOnlyOnChange) {
  MeshTargetStore store;
  EXPECT_EQ(store.generation(), 0u);
  ASSERT_NE(store.load(), nullptr);
  EXPECT_TRUE(store.load()->empty());
  EXPECT_FALSE(store.publish({}));
  EXPECT_EQ(store.generation(), 0u);

  auto ab = resolveMeshTargets(entries({"10.0.0.1", "10.0.0.2"}), "", true, 443, {});
  auto ba = resolveMeshTargets(entries({"10.0.0.2", "10.0.0.1"}), "", true, 443, {});
  EXPECT_TRUE(store.publish(ab));
  EXPECT_EQ(store.generation(), 1u);
  EXPECT_EQ(*store.load(), ab);
  EXPECT_FALSE(store.publish(ab));
  EXPECT_FALSE(store.publish(ba));  // order does not count
  EXPECT_EQ(store.generation(), 1u);

  auto other = resolveMeshTargets(entries({"10.0.0.1:444", "10.0.0.2"}), "", true, 443, {});
  EXPECT_TRUE(store.publish(other));
  EXPECT_EQ(store.generation(), 2u);
  auto plain = resolveMeshTargets(entries({"10.0.0.1:444", "10.0.0.2"}), "", false, 443, {});
  EXPECT_TRUE(store.publish(plain));  // scheme is part of the identity
  EXPECT_EQ(store.generation(), 3u);
  auto held = store.load();
  EXPECT_TRUE(store.publish({}));
  EXPECT_EQ(store.generation(), 4u);
  EXPECT_EQ(*held, plain);  // a loaded set outlives the next publish
  EXPECT_TRUE(store.load()->empty());
}

TEST(MeshResolverTest, ResolveNowPublishesWithoutCallingOnChange) {
  MeshTargetStore store;
  int changes = 0;
  {
    MeshResolver resolver(entries({"10.0.0.1", "10.0.0.2"}), "", true, 443, store, 3600 * kSecond,
                          [&] { changes++; });
    resolver.resolveNow();
    EXPECT_EQ(store.generation(), 1u);
    EXPECT_EQ(store.load()->size(), 2u);
    resolver.start();
    // The destructor wakes the thread from its hour-long wait and joins it.
  }
  EXPECT_EQ(changes, 0);
  EXPECT_EQ(store.generation(), 1u);
}

TEST(MeshResolverTest, StartResolvesAtOnceAndCallsOnChange) {
  MeshTargetStore store;
  std::promise<void> changed;
  MeshResolver resolver(entries({"10.0.0.1"}), "", false, 3340, store, 3600 * kSecond,
                        [&] { changed.set_value(); });
  resolver.start();
  ASSERT_EQ(changed.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(ids(*store.load()), (std::vector<std::string>{"http://10.0.0.1@10.0.0.1:3340"}));
}

}  // namespace
}  // namespace derpd::relay
