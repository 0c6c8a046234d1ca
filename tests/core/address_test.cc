#include "core/address.h"

#include <gtest/gtest.h>

namespace fulcrum {
namespace {

TEST(SocketAddressTest, ParsesIPv4AndIPv6) {
  auto a = SocketAddress::parse("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->to_string(), "127.0.0.1:8080");
  EXPECT_EQ(a->ip_bytes().size(), 4u);
  auto b = SocketAddress::parse("[::1]:53");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->family(), AF_INET6);
  EXPECT_EQ(b->to_string(), "[::1]:53");
  EXPECT_EQ(b->ip_bytes().size(), 16u);
  auto any = SocketAddress::parse("*:80");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->to_string(), "0.0.0.0:80");
}

TEST(SocketAddressTest, RefusesBadText) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "1.2.3.4:80x",
                          "::1:80", "[::1]80", "[::1", "host.example:80"}) {
    EXPECT_FALSE(SocketAddress::parse(bad)) << bad;
  }
}

TEST(SocketAddressTest, ResolvesNamesWhenAsked) {
  auto a = SocketAddress::parse("localhost:9000", /*resolve=*/true);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port(), 9000);
}

}  // namespace
}  // namespace fulcrum
