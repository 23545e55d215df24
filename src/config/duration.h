// Go's time.ParseDuration syntax ("2s", "10m", "1h30m", "500ms", "1.5s", "0").
#pragma once

#include <optional>
#include <string_view>

#include "base/clock.h"

namespace derpd {

std::optional<Nanos> parseGoDuration(std::string_view text);

}  // namespace derpd
