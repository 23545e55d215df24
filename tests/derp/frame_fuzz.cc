// libFuzzer target for the DERP frame codec: decode a byte stream frame by
// frame; every frame that decodes must re-encode to bytes that decode to the
// same frame type and length (a round trip), and nothing may crash or read
// out of bounds.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "derp/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace derpd::derp;
  std::span<const uint8_t> in(data, size);
  while (!in.empty()) {
    auto r = decodeFrame(in);
    if (!r.ok() || !r->has_value()) break;
    const DecodedFrame& f = **r;
    std::vector<uint8_t> again = encodeFrame(f.frame);
    auto back = decodeFrame(again);
    if (!back.ok() || !back->has_value()) std::abort();
    if ((*back)->frame.index() != f.frame.index()) std::abort();
    if ((*back)->consumed != again.size()) std::abort();
    in = in.subspan(f.consumed);
  }
  return 0;
}
