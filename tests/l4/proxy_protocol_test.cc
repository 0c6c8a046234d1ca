#include "l4/proxy_protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace fulcrum::l4 {
namespace {

TEST(ProxyProtocolTest, V1Tcp4) {
  char buf[kMaxProxyHeader];
  size_t n = write_proxy_header(config::ProxyProtocol::kV1, *SocketAddress::parse("192.0.2.1:56324"),
                                *SocketAddress::parse("127.0.0.1:443"), buf);
  EXPECT_EQ(std::string(buf, n), "PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\n");
}

TEST(ProxyProtocolTest, V1Tcp6AndMixed) {
  char buf[kMaxProxyHeader];
  size_t n = write_proxy_header(config::ProxyProtocol::kV1, *SocketAddress::parse("[2001:db8::1]:1000"),
                                *SocketAddress::parse("[::1]:80"), buf);
  EXPECT_EQ(std::string(buf, n), "PROXY TCP6 2001:db8::1 ::1 1000 80\r\n");
  n = write_proxy_header(config::ProxyProtocol::kV1, *SocketAddress::parse("[::1]:1000"),
                         *SocketAddress::parse("127.0.0.1:80"), buf);
  EXPECT_EQ(std::string(buf, n), "PROXY UNKNOWN\r\n");
}

TEST(ProxyProtocolTest, V2Tcp4Layout) {
  char buf[kMaxProxyHeader];
  size_t n = write_proxy_header(config::ProxyProtocol::kV2, *SocketAddress::parse("10.1.2.3:4660"),
                                *SocketAddress::parse("127.0.0.1:80"), buf);
  ASSERT_EQ(n, 28u);
  auto* p = reinterpret_cast<unsigned char*>(buf);
  EXPECT_EQ(std::memcmp(p, "\r\n\r\n\0\r\nQUIT\n", 12), 0);
  EXPECT_EQ(p[12], 0x21);
  EXPECT_EQ(p[13], 0x11);
  EXPECT_EQ(p[14] * 256 + p[15], 12);
  EXPECT_EQ(p[16], 10);
  EXPECT_EQ(p[19], 3);
  EXPECT_EQ(p[20], 127);
  EXPECT_EQ(p[24] * 256 + p[25], 4660);
  EXPECT_EQ(p[26] * 256 + p[27], 80);
}

TEST(ProxyProtocolTest, V2Tcp6AndOff) {
  char buf[kMaxProxyHeader];
  size_t n = write_proxy_header(config::ProxyProtocol::kV2, *SocketAddress::parse("[::1]:1"),
                                *SocketAddress::parse("[::1]:2"), buf);
  EXPECT_EQ(n, 52u);
  EXPECT_EQ(static_cast<unsigned char>(buf[13]), 0x21);
  EXPECT_EQ(write_proxy_header(config::ProxyProtocol::kOff, *SocketAddress::parse("[::1]:1"),
                               *SocketAddress::parse("[::1]:2"), buf),
            0u);
}

}  // namespace
}  // namespace fulcrum::l4
