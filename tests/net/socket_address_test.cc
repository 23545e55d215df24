#include "net/socket_address.h"

#include <gtest/gtest.h>

namespace derpd::net {
namespace {

TEST(SocketAddressTest, Parses) {
  auto a = parseListenAddress("127.0.0.1:3340");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 3340);
  EXPECT_TRUE(a->isLoopback());
  EXPECT_EQ(a->toString(), "127.0.0.1:3340");

  auto b = parseListenAddress("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->family(), AF_INET6);
  EXPECT_TRUE(b->isLoopback());
  EXPECT_EQ(b->toString(), "[::1]:0");

  auto c = parseListenAddress(":443");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->family(), AF_INET6);
  EXPECT_EQ(c->port(), 443);
  EXPECT_FALSE(c->isLoopback());

  auto d = parseListenAddress("localhost:80");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->isLoopback());
}

TEST(SocketAddressTest, Rejects) {
  for (const char* bad : {"", "443", "1.2.3.4", "1.2.3.4:", "1.2.3.4:99999", "1.2.3.4:x",
                          "example.com:80", "[::1:80", "1.2.3.4:-1"}) {
    EXPECT_FALSE(parseListenAddress(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace derpd::net
