#include "config/duration.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace derpd {

std::optional<Nanos> parseGoDuration(std::string_view text) {
  if (text == "0") return 0;
  bool negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  struct Unit {
    std::string_view name;
    double nanos;
  };
  static constexpr Unit kUnits[] = {{"ns", 1},     {"us", 1e3},   {"\xc2\xb5s", 1e3},
                                    {"ms", 1e6},   {"s", 1e9},    {"m", 60e9},
                                    {"h", 3600e9}};
  double total = 0;
  while (!text.empty()) {
    size_t i = 0;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) i++;
    if (i == 0) return std::nullopt;
    std::string number(text.substr(0, i));
    char* end = nullptr;
    double v = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size()) return std::nullopt;
    text.remove_prefix(i);
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      // Longest match first matters only for "ms" vs "m": try two-letter units first.
      if (text.substr(0, u.name.size()) == u.name &&
          (unit == nullptr || u.name.size() > unit->name.size())) {
        unit = &u;
      }
    }
    if (unit == nullptr) return std::nullopt;
    text.remove_prefix(unit->name.size());
    total += v * unit->nanos;
  }
  if (total > 9.2e18) return std::nullopt;
  Nanos n = static_cast<Nanos>(std::llround(total));
  return negative ? -n : n;
}

}  // namespace derpd
