#include "relay/rate_limit.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/files.h"

namespace derpd::relay {

absl::StatusOr<RateConfig> parseRateConfig(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("want a JSON object");
  RateConfig c;
  for (const auto& [key, value] : j.items()) {
    uint64_t* field = absl::EqualsIgnoreCase(key, "PerClientRateLimitBytesPerSec")
                          ? &c.bytesPerSecond
                      : absl::EqualsIgnoreCase(key, "PerClientRateBurstBytes") ? &c.burst
                                                                               : nullptr;
    if (field == nullptr || value.is_null()) continue;
    if (!value.is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": want a whole number of bytes, not ", value.dump()));
    }
    *field = value.get<uint64_t>();
  }
  if (c.bytesPerSecond == 0) return RateConfig{};
  if (c.burst < kMinRateBurst) c.burst = kMinRateBurst;
  return c;
}

absl::StatusOr<RateConfig> loadRateConfig(const std::string& path) {
  absl::StatusOr<std::string> text = readSmallFile(path, 64 << 10, "rate config");
  if (!text.ok()) return text.status();
  absl::StatusOr<RateConfig> c = parseRateConfig(*text);
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", c.status().message()));
  return c;
}

}  // namespace derpd::relay
