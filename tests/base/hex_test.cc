#include "base/hex.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace derpd {
namespace {

TEST(HexTest, EncodesLowercase) {
  const std::vector<uint8_t> b = {0x00, 0x0f, 0xa0, 0xff};
  EXPECT_EQ(hexEncode(b), "000fa0ff");
  EXPECT_EQ(hexEncode({}), "");
}

TEST(HexTest, DecodesEitherCaseStrictly) {
  EXPECT_EQ(hexDecode("000FA0ff"), (std::vector<uint8_t>{0x00, 0x0f, 0xa0, 0xff}));
  EXPECT_FALSE(hexDecode("abc"));   // odd length
  EXPECT_FALSE(hexDecode("zz"));    // not hex
  EXPECT_FALSE(hexDecode("0x00"));  // no prefixes
  std::array<uint8_t, 2> out{};
  EXPECT_TRUE(hexDecodeInto("beef", out));
  EXPECT_EQ(out[0], 0xbe);
  EXPECT_FALSE(hexDecodeInto("bee", out));     // wrong length for out
  EXPECT_FALSE(hexDecodeInto("beefaa", out));  // too long
}

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock c(5 * kSecond);
  EXPECT_EQ(c.now(), 5 * kSecond);
  c.advance(250 * kMillisecond);
  EXPECT_EQ(c.now(), 5 * kSecond + 250 * kMillisecond);
  c.set(kSecond);
  EXPECT_EQ(c.now(), kSecond);
  RealClock r;
  Nanos a = r.now();
  EXPECT_GE(r.now(), a);
}

}  // namespace
}  // namespace derpd
