// Lowercase hex encoding and strict decoding.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace derpd {

std::string hexEncode(std::span<const uint8_t> bytes);

// Decodes exactly out.size() bytes from hex (either case). False on any bad
// character or a length other than 2 * out.size().
bool hexDecodeInto(std::string_view hex, std::span<uint8_t> out);

// Decodes any even-length hex string; nullopt on bad input.
std::optional<std::vector<uint8_t>> hexDecode(std::string_view hex);

}  // namespace derpd
