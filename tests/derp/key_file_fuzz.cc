// libFuzzer target for derper's key file ({"PrivateKey": "privkey:<hex>"}),
// read at startup from a path an operator may have filled with anything: a
// key that parses must format to a file that parses to the same key, and
// nothing may crash or read out of bounds.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "derp/key_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace derpd::derp;
  auto key = parseKeyFile(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!key.ok()) return 0;
  auto again = parseKeyFile(formatKeyFile(*key));
  if (!again.ok() || again->bytes != key->bytes) std::abort();
  return 0;
}
