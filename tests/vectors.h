// Access to the golden vectors in tests/vectors (produced by Tailscale's Go
// code) for tests. Header-only; the directory comes from DERPD_VECTORS, which
// tests/meson.build sets for every test.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace derpd::testing {

// Parses <DERPD_VECTORS>/<file> (e.g. "frames.json"). Fails the test and
// returns null when the file is missing or not JSON.
inline nlohmann::json loadVectors(std::string_view file) {
  const char* dir = std::getenv("DERPD_VECTORS");
  if (dir == nullptr) {
    ADD_FAILURE() << "DERPD_VECTORS is not set; run through meson test";
    return nullptr;
  }
  const std::string path = std::string(dir) + "/" + std::string(file);
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return nullptr;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(ss.str(), nullptr, false);
  if (doc.is_discarded()) {
    ADD_FAILURE() << path << " is not JSON";
    return nullptr;
  }
  return doc;
}

// The entries array of a vectors document.
inline const nlohmann::json& entries(const nlohmann::json& doc) { return doc.at("entries"); }

// The entry with the given "name"; fails the test when there is none.
inline nlohmann::json findEntry(const nlohmann::json& doc, std::string_view name) {
  for (const auto& e : entries(doc)) {
    if (e.value("name", "") == name) return e;
  }
  ADD_FAILURE() << "no vector entry named " << name;
  return nullptr;
}

inline std::vector<uint8_t> unhex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<uint8_t> out;
  if (hex.size() % 2 != 0) {
    ADD_FAILURE() << "odd-length hex: " << hex;
    return out;
  }
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      ADD_FAILURE() << "bad hex: " << hex;
      return {};
    }
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return out;
}

inline std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

// Bytes of an entry's hex field (default "hex").
inline std::vector<uint8_t> entryBytes(const nlohmann::json& entry, const char* field = "hex") {
  return unhex(entry.at(field).get<std::string>());
}

}  // namespace derpd::testing
