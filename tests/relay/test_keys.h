// A node key of 32 equal bytes, for the relay's unit tests.
#pragma once

#include <cstdint>

#include "derp/key.h"

namespace derpd::relay::testing {

inline derp::NodeKey key(uint8_t b) {
  derp::NodeKey k;
  k.bytes.fill(b);
  return k;
}

}  // namespace derpd::relay::testing
