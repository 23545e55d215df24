// libFuzzer target for the --config file's parser (TOML through toml++):
// any bytes give settings or an error naming a line, never a crash, and every
// setting has its TOML type.
#include <cstdint>
#include <cstdlib>

#include "config/config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto settings = derpd::parseConfigText(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
  if (!settings.ok()) return 0;
  for (const derpd::FileSetting& s : *settings) {
    if (s.type.empty()) std::abort();
  }
  return 0;
}
