#include "base/ip_prefix.h"

#include <arpa/inet.h>

#include <cstring>

#include "gtest/gtest.h"

namespace derpd {
namespace {

Ip16 ip(const char* text) {
  Ip16 out{};
  in_addr a4;
  if (inet_pton(AF_INET, text, &a4) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &a4, 4);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, out.data()), 1) << text;
  }
  return out;
}

TEST(IpPrefixTest, Ipv4PrefixMatchesItsRangeOnly) {
  auto p = parseIpPrefix("10.0.0.0/8");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->contains(ip("10.0.0.0")));
  EXPECT_TRUE(p->contains(ip("10.255.255.255")));
  EXPECT_FALSE(p->contains(ip("11.0.0.0")));
  EXPECT_FALSE(p->contains(ip("9.255.255.255")));
  // An IPv6 address whose last bytes look like 10.x is not in an IPv4 prefix.
  EXPECT_FALSE(p->contains(ip("::a00:1")));
  EXPECT_EQ(p->toString(), "10.0.0.0/8");
}

TEST(IpPrefixTest, OddLengthsCompareTheRightBits) {
  auto p = parseIpPrefix("100.64.0.0/10");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->contains(ip("100.64.0.1")));
  EXPECT_TRUE(p->contains(ip("100.127.255.254")));
  EXPECT_FALSE(p->contains(ip("100.128.0.1")));
  EXPECT_FALSE(p->contains(ip("100.63.255.255")));
  auto v6 = parseIpPrefix("fd7a:115c:a1e0::/48");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(v6->contains(ip("fd7a:115c:a1e0:ab12:4843:cd96:6258:b240")));
  EXPECT_FALSE(v6->contains(ip("fd7a:115c:a1e1::1")));
  EXPECT_EQ(v6->toString(), "fd7a:115c:a1e0::/48");
}

TEST(IpPrefixTest, BareAddressIsOneAddressAndZeroLengthIsEverything) {
  auto one = parseIpPrefix("192.0.2.7");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->contains(ip("192.0.2.7")));
  EXPECT_FALSE(one->contains(ip("192.0.2.8")));
  EXPECT_EQ(one->toString(), "192.0.2.7/32");
  auto all4 = parseIpPrefix("0.0.0.0/0");
  ASSERT_TRUE(all4.ok()) << all4.status();
  EXPECT_TRUE(all4->contains(ip("203.0.113.9")));
  EXPECT_FALSE(all4->contains(ip("2001:db8::1")));  // all IPv4, not all addresses
  auto all6 = parseIpPrefix("::/0");
  ASSERT_TRUE(all6.ok()) << all6.status();
  EXPECT_TRUE(all6->contains(ip("2001:db8::1")));
  EXPECT_TRUE(all6->contains(ip("203.0.113.9")));  // mapped IPv4 is inside ::/0
}

TEST(IpPrefixTest, BadTextIsRefusedWithAReason) {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "::/129",
                          "10.0.0/8", "example.com", "10.0.0.0/8/8", "10.0.0.0/ 8"}) {
    EXPECT_FALSE(parseIpPrefix(bad).ok()) << bad;
  }
  auto stray = parseIpPrefix("10.1.0.0/8");
  ASSERT_FALSE(stray.ok());
  EXPECT_NE(stray.status().message().find("did you mean 10.0.0.0/8"), std::string::npos)
      << stray.status();
}

TEST(IpPrefixTest, ListSplitsOnCommasAndReportsTheBadItem) {
  auto list = parseIpPrefixList("10.0.0.0/8, fd00::/8,192.168.1.1");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].toString(), "fd00::/8");
  EXPECT_TRUE(parseIpPrefixList("")->empty());
  auto bad = parseIpPrefixList("10.0.0.0/8,nope");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"nope\""), std::string::npos) << bad.status();
}

TEST(IpPrefixTest, LoopbackAndTailnet) {
  EXPECT_TRUE(isLoopbackIp(ip("127.0.0.1")));
  EXPECT_TRUE(isLoopbackIp(ip("127.9.9.9")));
  EXPECT_TRUE(isLoopbackIp(ip("::1")));
  EXPECT_FALSE(isLoopbackIp(ip("128.0.0.1")));
  EXPECT_FALSE(isLoopbackIp(ip("::2")));
  auto inTailnet = [](const Ip16& a) {
    for (const IpPrefix& p : tailnetPrefixes()) {
      if (p.contains(a)) return true;
    }
    return false;
  };
  EXPECT_TRUE(inTailnet(ip("100.100.100.100")));
  EXPECT_TRUE(inTailnet(ip("fd7a:115c:a1e0::53")));
  EXPECT_FALSE(inTailnet(ip("100.128.0.1")));
  EXPECT_FALSE(inTailnet(ip("10.0.0.1")));
}

}  // namespace
}  // namespace derpd
