#include "derp/key_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/vectors.h"

namespace derpd::derp {
namespace {

using ::derpd::testing::findEntry;
using ::derpd::testing::loadVectors;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "derp_key_file_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

void writeFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(KeyFileTest, FormatMatchesDerper) {
  const nlohmann::json e = findEntry(loadVectors("keys.json"), "derper_keyfile");
  const std::string expected = e.at("text");
  ASSERT_EQ(derpd::testing::hex(
                std::span(reinterpret_cast<const uint8_t*>(expected.data()), expected.size())),
            e.at("hex").get<std::string>());

  absl::StatusOr<PrivateKey> key = parseKeyFile(expected);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(derpd::testing::hex(key->bytes), e.at("private_hex").get<std::string>());
  EXPECT_EQ(key->publicKey().toString(), e.at("public_nodekey").get<std::string>());
  EXPECT_EQ(formatKeyFile(*key), expected);
}

TEST(KeyFileTest, ParseAcceptsOtherLayoutsAndCasing) {
  const std::string text = "privkey:" + std::string(64, '1');
  for (const std::string& content : {
           "{\"PrivateKey\":\"" + text + "\"}",
           "  {\"privatekey\": \"" + text + "\", \"Other\": 1}\n",
           "{\"PRIVATEKEY\": \"" + text + "\"}",
       }) {
    SCOPED_TRACE(content);
    absl::StatusOr<PrivateKey> key = parseKeyFile(content);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(key->toString(), text);
  }
}

TEST(KeyFileTest, ParseRejectsMalformed) {
  struct Case {
    std::string content;
    std::string error;
  };
  const std::string hex64(64, 'a');
  for (const Case& c : std::vector<Case>{
           {"", "not valid JSON"},
           {"privkey:" + hex64, "not valid JSON"},
           {"[1]", "not a JSON object"},
           {"{}", "no PrivateKey"},
           {"{\"PublicKey\": \"x\"}", "no PrivateKey"},
           {"{\"PrivateKey\": null}", "no PrivateKey"},
           {"{\"PrivateKey\": 5}", "not a string"},
           {"{\"PrivateKey\": \"" + hex64 + "\"}", "PrivateKey is not"},
           {"{\"PrivateKey\": \"privkey:" + hex64.substr(1) + "z\"}", "PrivateKey is not"},
           {"{\"PrivateKey\": \"privkey:" + hex64 + "00\"}", "PrivateKey is not"},
       }) {
    SCOPED_TRACE(c.content);
    absl::StatusOr<PrivateKey> key = parseKeyFile(c.content);
    ASSERT_FALSE(key.ok());
    EXPECT_THAT(std::string(key.status().message()), HasSubstr(c.error));
  }
}

TEST(KeyFileTest, CreatesThenReloads) {
  TempDir dir;
  // The parent directory is missing too: it must be created 0700.
  const std::string path = dir.file("state/derper.key");
  absl::StatusOr<PrivateKey> created = loadOrCreateKeyFile(path);
  ASSERT_TRUE(created.ok()) << created.status();

  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.file("state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(readFile(path), formatKeyFile(*created));

  absl::StatusOr<PrivateKey> loaded = loadOrCreateKeyFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->bytes, created->bytes);
}

TEST(KeyFileTest, LoadsExistingDerperFile) {
  TempDir dir;
  const std::string path = dir.file("derper.key");
  const nlohmann::json e = findEntry(loadVectors("keys.json"), "derper_keyfile");
  writeFile(path, e.at("text").get<std::string>());
  absl::StatusOr<PrivateKey> key = loadOrCreateKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->publicKey().toString(), e.at("public_nodekey").get<std::string>());
}

TEST(KeyFileTest, MalformedFilesAreErrorsNamingThePathAndAreKept) {
  TempDir dir;
  for (const auto& [name, content, why] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"notjson.key", "hello", "not valid JSON"},
           {"nokey.key", "{\"Foo\": \"bar\"}", "no PrivateKey"},
           {"badhex.key", "{\"PrivateKey\": \"privkey:xyz\"}", "PrivateKey is not"},
       }) {
    SCOPED_TRACE(name);
    const std::string path = dir.file(name);
    writeFile(path, content);
    absl::StatusOr<PrivateKey> key = loadOrCreateKeyFile(path);
    ASSERT_FALSE(key.ok());
    EXPECT_THAT(std::string(key.status().message()), HasSubstr(path));
    EXPECT_THAT(std::string(key.status().message()), HasSubstr(why));
    EXPECT_EQ(readFile(path), content);  // never overwritten
  }
}

TEST(KeyFileTest, UnreadablePathIsAnErrorNamingIt) {
  TempDir dir;
  // A directory where the file should be: open succeeds, read fails (EISDIR).
  const std::string path = dir.file("isdir");
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
  absl::StatusOr<PrivateKey> key = loadOrCreateKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(std::string(key.status().message()), HasSubstr(path));

  // A parent that is a regular file cannot be created.
  const std::string blocker = dir.file("blocker");
  writeFile(blocker, "x");
  key = loadOrCreateKeyFile(blocker + "/sub/derper.key");
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(std::string(key.status().message()), HasSubstr(blocker + "/sub/derper.key"));
}

}  // namespace
}  // namespace derpd::derp
