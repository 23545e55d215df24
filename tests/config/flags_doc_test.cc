// Keeps the flag documentation honest: README.md's flag table, --help and the
// parser's flag table (flagTable()) name the same flags with the same
// defaults, and every derper flag PROTOCOL.md lists is recognised by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"

namespace derpd {
namespace {

// PROTOCOL.md, "Files and flags users already have": derper's flags that
// derpd accepts by name, working or refused as not built yet.
const char* const kDerperFlags[] = {
    "a",
    "http-port",
    "stun-port",
    "c",
    "certmode",
    "certdir",
    "hostname",
    "stun",
    "derp",
    "dev",
    "home",
    "mesh-with",
    "mesh-psk-file",
    "bootstrap-dns-names",
    "unpublished-bootstrap-dns-names",
    "verify-clients",
    "socket",
    "verify-client-url",
    "verify-client-url-fail-open",
    "accept-connection-limit",
    "accept-connection-burst",
    "tcp-keepalive-time",
    "tcp-user-timeout",
    "tcp-write-timeout",
    "acme-email",
    "acme-eab-kid",
    "acme-eab-key",
};

// One row of README.md's "## Flags" table; a row may name several flags.
struct ReadmeRow {
  std::vector<std::string> flags;  // without the leading "-"
  std::string defaultText;         // backticks stripped; `""` read as empty
  std::string meaning;
};

// The names in "`-a`, `-hostname`": every backticked word that starts with a
// dash and holds only lower-case letters, digits and dashes.
std::vector<std::string> flagNames(const std::string& cell) {
  std::vector<std::string> names;
  size_t pos = 0;
  while ((pos = cell.find("`-", pos)) != std::string::npos) {
    const size_t end = cell.find('`', pos + 2);
    if (end == std::string::npos) break;
    const std::string name = cell.substr(pos + 2, end - pos - 2);
    const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
    });
    if (plain) names.push_back(name);
    pos = plain ? end + 1 : pos + 2;
  }
  return names;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::vector<std::string> splitCells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool inCode = false;
  for (size_t i = 1; i < line.size(); i++) {  // line[0] is the leading '|'
    if (line[i] == '`') inCode = !inCode;
    if (line[i] == '|' && !inCode) {
      cells.push_back(trim(cell));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return cells;
}

// The rows of the table under "## Flags", or a failure naming what is missing.
std::vector<ReadmeRow> readmeFlagRows() {
  const char* path = std::getenv("DERPD_README");
  EXPECT_NE(path, nullptr) << "DERPD_README is not set (tests/meson.build sets it)";
  if (path == nullptr) return {};
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::vector<ReadmeRow> rows;
  std::string line;
  bool inSection = false;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      inSection = line == "## Flags";
      continue;
    }
    if (!inSection || line.rfind("| `-", 0) != 0) continue;
    std::vector<std::string> cells = splitCells(line);
    EXPECT_EQ(cells.size(), 3u) << "README flag row without 3 cells: " << line;
    if (cells.size() != 3) continue;
    ReadmeRow row;
    row.flags = flagNames(cells[0]);
    std::string d = cells[1];
    if (d.size() >= 2 && d.front() == '`' && d.back() == '`') d = d.substr(1, d.size() - 2);
    row.defaultText = d == "\"\"" ? "" : d;
    row.meaning = cells[2];
    rows.push_back(std::move(row));
  }
  EXPECT_FALSE(rows.empty()) << "no flag rows under \"## Flags\" in " << path;
  return rows;
}

std::map<std::string, ReadmeRow> readmeByFlag() {
  std::map<std::string, ReadmeRow> byFlag;
  for (const ReadmeRow& row : readmeFlagRows()) {
    for (const std::string& f : row.flags) {
      EXPECT_TRUE(byFlag.emplace(f, row).second) << "-" << f << " has two README rows";
    }
  }
  return byFlag;
}

std::map<std::string, FlagInfo> tableByFlag() {
  std::map<std::string, FlagInfo> byFlag;
  for (const FlagInfo& f : flagTable()) {
    EXPECT_TRUE(byFlag.emplace(f.name, f).second) << "-" << f.name << " is in the table twice";
  }
  return byFlag;
}

TEST(FlagsDocTest, EveryFlagHasAReadmeRowAndEveryRowAFlag) {
  auto readme = readmeByFlag();
  auto table = tableByFlag();
  for (const auto& [name, info] : table) {
    EXPECT_TRUE(readme.contains(name)) << "-" << name << " has no row in README.md's flag table";
  }
  for (const auto& [name, row] : readme) {
    if (name == "help" || name == "version" || name == "check-config") continue;
    EXPECT_TRUE(table.contains(name))
        << "README.md documents -" << name << ", which the parser does not know";
  }
  EXPECT_TRUE(readme.contains("help"));
  EXPECT_TRUE(readme.contains("version"));
  EXPECT_TRUE(readme.contains("check-config"));
}

TEST(FlagsDocTest, ReadmeDefaultsAreTheTableDefaults) {
  auto readme = readmeByFlag();
  for (const FlagInfo& f : flagTable()) {
    auto it = readme.find(f.name);
    if (it == readme.end()) continue;  // reported above
    if (f.built) {
      EXPECT_EQ(it->second.defaultText, f.defaultText) << "README default of -" << f.name;
    } else {
      EXPECT_NE(it->second.meaning.find("not built yet"), std::string::npos)
          << "README row of -" << f.name << " should say it is not built yet";
    }
  }
}

// The documented default is the real one: giving it changes nothing.
TEST(FlagsDocTest, DefaultTextIsTheConfigDefault) {
  const Config defaults;
  for (const FlagInfo& f : flagTable()) {
    if (!f.built) continue;
    if (f.name == "certdir") {
      // Resolved at startup from $HOME (tls_setup's defaultCertDir), as
      // derper's tsweb.DefaultCertDir does; the Config keeps it empty.
      EXPECT_TRUE(defaults.certDir.empty());
      EXPECT_EQ(f.defaultText, "~/.cache/tailscale/derper-certs");
      continue;
    }
    auto r = parseCommandLine({"-" + f.name + "=" + f.defaultText});
    ASSERT_TRUE(r.ok()) << "-" << f.name << "=" << f.defaultText << ": " << r.status();
    if (f.name == "mesh-psk-file") {
      // Not given at all, derper's default files apply (config_test); given
      // empty, no key: the same empty path, and the flag marked as given.
      EXPECT_EQ(f.defaultText, "");
      Config given = defaults;
      given.meshPskFileGiven = true;
      EXPECT_TRUE(r->config == given);
      continue;
    }
    EXPECT_TRUE(r->config == defaults)
        << "-" << f.name << "=" << f.defaultText << " is not the default";
  }
}

TEST(FlagsDocTest, EveryDerperFlagIsRecognisedAndDocumented) {
  auto table = tableByFlag();
  auto readme = readmeByFlag();
  for (const char* name : kDerperFlags) {
    auto it = table.find(name);
    ASSERT_NE(it, table.end()) << "derper flag -" << name << " is not in flagTable()";
    EXPECT_TRUE(readme.contains(name)) << "derper flag -" << name << " is not in README.md";
    auto r = parseCommandLine({std::string("-") + name + "=1"});
    if (it->second.built) {
      // Any error must be about the value, never an unknown flag.
      if (!r.ok()) {
        EXPECT_EQ(std::string(r.status().message()).find("not defined"), std::string::npos)
            << r.status();
      }
    } else if (std::string_view(name) == "socket" ||
               std::string_view(name) == "verify-client-url-fail-open" ||
               std::string_view(name) == "accept-connection-burst") {
      // These only tune a feature another (refused) flag turns on.
      EXPECT_TRUE(r.ok()) << "-" << name << ": " << r.status();
    } else {
      ASSERT_FALSE(r.ok()) << "-" << name << " is not built yet but was accepted";
      const std::string msg(r.status().message());
      EXPECT_NE(msg.find("not supported by this derpd build yet"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::string("-") + name), std::string::npos) << msg;
    }
  }
}

// derper's flags derpd refuses on purpose: README names each with its reason,
// and derpd's error says it.
TEST(FlagsDocTest, RefusedDerperFlagsAreDocumented) {
  const char* path = std::getenv("DERPD_README");
  ASSERT_NE(path, nullptr) << "DERPD_README is not set (tests/meson.build sets it)";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path;
  std::stringstream readme;
  readme << in.rdbuf();
  for (const char* name : {"secrets-url", "secrets-path-prefix", "secrets-cache-dir", "ace"}) {
    SCOPED_TRACE(name);
    EXPECT_NE(readme.str().find(std::string("`-") + name + "`"), std::string::npos);
    auto r = parseCommandLine({std::string("-") + name + "=1"});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find("is not built in derpd"), std::string::npos);
  }
}

// --help: a heading per group, in table order, each once; every flag under
// its own heading with Go's type word and its default.
TEST(FlagsDocTest, HelpListsEveryFlagUnderItsGroup) {
  const std::string usage = usageText();
  std::vector<std::string> wantGroups;
  for (const FlagInfo& f : flagTable()) {
    if (wantGroups.empty() || wantGroups.back() != f.group) {
      EXPECT_EQ(std::count(wantGroups.begin(), wantGroups.end(), f.group), 0)
          << "group \"" << f.group << "\" is split in the table";
      wantGroups.push_back(f.group);
    }
  }
  std::vector<std::string> gotGroups;
  std::map<std::string, std::string> groupOf;  // flag name -> heading it is under
  std::map<std::string, std::string> lineOf;   // flag name -> its description line
  std::istringstream in(usage);
  std::string line;
  std::string lastFlag;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != ' ' && line.back() == ':') {
      gotGroups.push_back(line.substr(0, line.size() - 1));
    } else if (line.rfind("  -", 0) == 0 && !gotGroups.empty()) {
      // "  -name type", or the not-built group's "  -a -b -c" on one line.
      std::istringstream words(line);
      std::string w;
      while (words >> w) {
        if (w[0] != '-') continue;
        lastFlag = w.substr(1);
        groupOf[lastFlag] = gotGroups.back();
        lineOf[lastFlag] = line;
      }
    } else if (line.rfind("      ", 0) == 0 && !lastFlag.empty()) {
      lineOf[lastFlag] += "\n" + line;
    }
  }
  std::vector<std::string> tableGroups(gotGroups.begin(),
                                       gotGroups.begin() + std::min(gotGroups.size(),
                                                                    wantGroups.size()));
  EXPECT_EQ(tableGroups, wantGroups) << usage;
  for (const FlagInfo& f : flagTable()) {
    ASSERT_TRUE(groupOf.contains(f.name)) << "-" << f.name << " is not in --help:\n" << usage;
    EXPECT_EQ(groupOf[f.name], f.group) << "-" << f.name;
    if (!f.built) continue;
    EXPECT_NE(lineOf[f.name].find("  -" + f.name + (f.type.empty() ? "\n" : " " + f.type + "\n")),
              std::string::npos)
        << lineOf[f.name];
    if (!f.defaultText.empty() && f.defaultText != "false" && f.defaultText != "0") {
      EXPECT_NE(lineOf[f.name].find("(default "), std::string::npos) << lineOf[f.name];
      EXPECT_NE(lineOf[f.name].find(f.defaultText + (f.type == "string" ? "\")" : ")")),
                std::string::npos)
          << lineOf[f.name];
    }
  }
  EXPECT_TRUE(groupOf.contains("help"));
  EXPECT_TRUE(groupOf.contains("version"));
  EXPECT_TRUE(groupOf.contains("check-config"));
}

TEST(FlagsDocTest, HelpAndVersionInEveryForm) {
  for (const char* help : {"-help", "--help", "-h", "--h"}) {
    auto r = parseCommandLine({help});
    ASSERT_TRUE(r.ok()) << help;
    EXPECT_EQ(r->action, CommandLineAction::kHelp) << help;
  }
  for (const char* version : {"-version", "--version"}) {
    auto r = parseCommandLine({version});
    ASSERT_TRUE(r.ok()) << version;
    EXPECT_EQ(r->action, CommandLineAction::kVersion) << version;
  }
}

}  // namespace
}  // namespace derpd
