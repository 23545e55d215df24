// libFuzzer target for the ClientInfo a stranger sends before anything else:
// the input is opened as a sealed box (nonce || box) with fixed keys, and is
// also sealed as a plaintext and opened again, so the JSON parser sees every
// input. Whatever parses must serialise to JSON that parses to the same
// fields; nothing may crash or read out of bounds.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "derp/handshake.h"
#include "derp/key.h"

namespace {

using namespace derpd::derp;

// The vectors' keys: bytes first, first + 1, ... (tests/vectors/README.md).
PrivateKey fixedKey(uint8_t first) {
  PrivateKey k;
  for (size_t i = 0; i < k.bytes.size(); i++) k.bytes[i] = static_cast<uint8_t>(first + i);
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const PrivateKey server = fixedKey(0x01);
  static const PrivateKey client = fixedKey(0x21);
  static const BoxKey key = *BoxKey::derive(server, client.publicKey());
  std::span<const uint8_t> in(data, size);

  (void)openClientInfo(key, in);  // random bytes: the box must refuse them cleanly

  std::vector<uint8_t> sealed = sealBox(key, in);
  auto info = openClientInfo(key, sealed);
  auto direct = parseClientInfoJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (info.ok() != direct.ok()) std::abort();  // the box changes nothing
  if (!info.ok()) return 0;
  auto again = parseClientInfoJson(clientInfoJson(*info));
  if (!again.ok()) std::abort();
  if (again->version != info->version || again->meshKey != info->meshKey ||
      again->canAckPings != info->canAckPings || again->isProber != info->isProber ||
      again->appName != info->appName) {
    std::abort();
  }
  return 0;
}
