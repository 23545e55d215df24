// http.json helpers for the http tests, over tests/vectors.h. Test-only.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vectors.h"

namespace derpd::http::testing {

// The whole of http.json, or null (and a test failure) when it cannot be read.
inline const nlohmann::json& httpVectors() {
  static const nlohmann::json doc = ::derpd::testing::loadVectors("http.json");
  return doc;
}

// The entry with this name, or null json (and a test failure).
inline nlohmann::json httpVector(std::string_view name) {
  if (httpVectors().is_null()) return nullptr;
  return ::derpd::testing::findEntry(httpVectors(), name);
}

inline std::string bytesFromHex(std::string_view hex) {
  const std::vector<uint8_t> bytes = ::derpd::testing::unhex(hex);
  return std::string(bytes.begin(), bytes.end());
}

// The entry's "hex" field as bytes.
inline std::string vectorBytes(std::string_view name) {
  const nlohmann::json entry = httpVector(name);
  return entry.is_null() ? std::string() : bytesFromHex(entry.value("hex", ""));
}

// A response with the named header's line(s) removed: Date varies per capture.
inline std::string withoutHeader(std::string_view response, std::string_view name) {
  std::string out;
  const size_t headEnd = response.find("\r\n\r\n");
  size_t pos = 0;
  while (pos < response.size()) {
    size_t eol = response.find("\r\n", pos);
    eol = eol == std::string_view::npos ? response.size() : eol + 2;
    const std::string_view line = response.substr(pos, eol - pos);
    const bool inHead = headEnd != std::string_view::npos && pos <= headEnd;
    const bool matches = line.size() > name.size() && line.substr(0, name.size()) == name &&
                         line[name.size()] == ':';
    if (!(inHead && matches)) out.append(line);
    if (!inHead) {
      out.append(response.substr(eol));
      break;
    }
    pos = eol;
  }
  return out;
}

inline std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace derpd::http::testing
