#include "http/rollout.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

namespace derpd::http {
namespace {

// Go's own test of its PCG (math/rand/v2 pcg_test.go, TestPCG): the first
// outputs of NewPCG(1, 2).
TEST(RolloutTest, PcgMatchesGo) {
  constexpr std::array<uint64_t, 20> kWant = {
      0xc4f5a58656eef510, 0x9dcec3ad077dec6c, 0xc8d04605312f8088, 0xcbedc0dcb63ac19a,
      0x3bf98798cae97950, 0x0a8c6d7f8d485abc, 0x7ffa3780429cd279, 0x730ad2626b1c2f8e,
      0x21ff2330f4a0ad99, 0x2f0901a1947094b0, 0xa9735a3cfbe36cef, 0x71ddb0a01a12c84a,
      0xf0e53e77a78453bb, 0x1f173e9663be1e9d, 0x657651da3ac4115e, 0xc8987376b65a157b,
      0xbb17008f5fca28e7, 0x8232bd645f29ed22, 0x12be8f07ad14c539, 0x54908a48e8e4736e,
  };
  GoPcg p(1, 2);
  for (size_t i = 0; i < kWant.size(); i++) EXPECT_EQ(p.next(), kWant[i]) << i;
}

// The address seeds the generator as derper does: its 16 bytes as two
// little-endian words. 100:0:0:0:200:: is NewPCG(1, 2), whose first Float64
// is Go's first output above, 0xc4f5a58656eef510, with its top 11 bits cleared
// and scaled by 2^-53 (0.6764...): the client is in exactly when the share
// exceeds it.
TEST(RolloutTest, AddressSeedsGoGenerator) {
  const std::array<uint8_t, 16> ip = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
  const double first = static_cast<double>(0xc4f5a58656eef510ULL << 11 >> 11) / 0x1p53;
  EXPECT_NEAR(first, 0.6765, 0.0001);
  EXPECT_FALSE(rolloutIncludes(ip, first));
  EXPECT_TRUE(rolloutIncludes(ip, first + 1e-9));
  EXPECT_FALSE(rolloutIncludes(ip, 0.67));
  EXPECT_TRUE(rolloutIncludes(ip, 0.68));
  // The same address always gets the same answer.
  for (int i = 0; i < 100; i++) ASSERT_TRUE(rolloutIncludes(ip, 0.68));
}

TEST(RolloutTest, NoneAllAndLoopback) {
  const std::array<uint8_t, 16> v4 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  EXPECT_FALSE(rolloutIncludes(v4, 0));
  EXPECT_TRUE(rolloutIncludes(v4, 1));
  // Loopback clients (127/8, ::1) get a coin toss each time, as derper's
  // local testing aid: both answers come up.
  for (const std::array<uint8_t, 16>& lo :
       {std::array<uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9},
        std::array<uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}) {
    int in = 0;
    for (int i = 0; i < 400; i++) in += rolloutIncludes(lo, 0.99) ? 1 : 0;
    EXPECT_GT(in, 100);
    EXPECT_LT(in, 300);
  }
}

// Over many addresses the share given is close to the share asked for.
TEST(RolloutTest, ShareHoldsOverManyAddresses) {
  int in = 0;
  for (int i = 0; i < 10000; i++) {
    const std::array<uint8_t, 16> ip = {0x20,
                                        0x01,
                                        0x0d,
                                        0xb8,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        static_cast<uint8_t>(i >> 8),
                                        static_cast<uint8_t>(i)};
    in += rolloutIncludes(ip, 0.25) ? 1 : 0;
  }
  EXPECT_GT(in, 2200);
  EXPECT_LT(in, 2800);
}

TEST(RolloutTest, TxtValuesReadAsDerperReadsThem) {
  EXPECT_EQ(rolloutShareFromTxt("50"), 0.5);
  EXPECT_EQ(rolloutShareFromTxt("0"), 0.0);
  EXPECT_EQ(rolloutShareFromTxt("100"), 1.0);
  EXPECT_EQ(rolloutShareFromTxt("+7"), 0.07);  // Go's Atoi takes a sign
  EXPECT_EQ(rolloutShareFromTxt("-0"), 0.0);
  EXPECT_EQ(rolloutShareFromTxt("007"), 0.07);
  EXPECT_EQ(rolloutShareFromTxt("0000000000000000000000100"), 1.0);
  for (const char* bad :
       {"", "101", "-1", " 5", "5 ", "5%", "0x10", "1e2", "+", "ten", "99999999999999999999"}) {
    EXPECT_FALSE(rolloutShareFromTxt(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace derpd::http
