// Tests of the config value helpers in src/config/config.cc: durations, sizes, CIDRs and
// Cidr::contains (v4, v6 and v4-mapped v6), protocol names and error text. Single-threaded.
#include <gtest/gtest.h>

#include <cstring>

#include "config/config.h"

namespace fulcrum::config {
namespace {

TEST(ParseDuration, AcceptsEveryUnit) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  const Case kCases[] = {
      {"250ms", 250}, {"2s", 2000}, {"1m", 60000},    {"1h", 3600000}, {"0", 0},
      {"0s", 0},      {"0ms", 0},   {"1500ms", 1500}, {"90s", 90000},  {"24h", 86400000},
  };
  for (const Case& c : kCases) {
    Millis out{-1};
    EXPECT_TRUE(parse_duration(c.text, &out)) << c.text;
    EXPECT_EQ(out.count(), c.ms) << c.text;
  }
}

TEST(ParseDuration, RefusesBadText) {
  const char* kBad[] = {"",
                        "2x",
                        "s",
                        "ms",
                        "1.5s",
                        "-1s",
                        "2 s",
                        " 2s",
                        "2S",
                        "10",
                        "1m30s",
                        "2sec",
                        "0x10s",
                        "1d",
                        "+1s",
                        "9223372036854775807h",
                        "99999999999999999999999ms"};
  for (const char* text : kBad) {
    Millis out{7};
    EXPECT_FALSE(parse_duration(text, &out)) << "'" << text << "'";
    EXPECT_EQ(out.count(), 7) << "output touched on failure: " << text;
  }
}

TEST(ParseSize, AcceptsBinaryAndDecimalUnits) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  const Case kCases[] = {
      {"512", 512},         {"0", 0},          {"512B", 512},          {"64KiB", 64 * 1024},
      {"32KiB", 32768},     {"1MiB", 1 << 20}, {"10MiB", 10ull << 20}, {"2GiB", 2ull << 30},
      {"1TiB", 1ull << 40}, {"1KB", 1000},     {"1kB", 1000},          {"3MB", 3000000},
      {"1GB", 1000000000},
  };
  for (const Case& c : kCases) {
    uint64_t out = 99;
    EXPECT_TRUE(parse_size(c.text, &out)) << c.text;
    EXPECT_EQ(out, c.bytes) << c.text;
  }
}

TEST(ParseSize, RefusesBadText) {
  const char* kBad[] = {"",   "KiB", "1.5MiB", "-1",    "1 KiB",       "1kib",
                        "1K", "1M",  "1XB",    "MiB64", "16777216TiB", "18446744073709551616"};
  for (const char* text : kBad) {
    uint64_t out = 99;
    EXPECT_FALSE(parse_size(text, &out)) << "'" << text << "'";
    EXPECT_EQ(out, 99u) << text;
  }
}

TEST(ParseCidr, V4WithAndWithoutPrefix) {
  Cidr c;
  ASSERT_TRUE(parse_cidr("10.0.0.0/8", &c));
  EXPECT_EQ(c.family, AF_INET);
  EXPECT_EQ(c.prefix, 8);
  EXPECT_EQ(c.bytes[0], 10);
  EXPECT_EQ(c.text, "10.0.0.0/8");

  ASSERT_TRUE(parse_cidr("1.2.3.4", &c));
  EXPECT_EQ(c.prefix, 32);
  EXPECT_EQ(c.bytes[3], 4);

  ASSERT_TRUE(parse_cidr("0.0.0.0/0", &c));
  EXPECT_EQ(c.prefix, 0);
}

TEST(ParseCidr, ClearsHostBits) {
  Cidr c;
  ASSERT_TRUE(parse_cidr("192.0.2.77/24", &c));
  const unsigned char want[4] = {192, 0, 2, 0};
  EXPECT_EQ(std::memcmp(c.bytes, want, 4), 0);
  ASSERT_TRUE(parse_cidr("192.0.3.255/23", &c));
  const unsigned char want23[4] = {192, 0, 2, 0};
  EXPECT_EQ(std::memcmp(c.bytes, want23, 4), 0);
  ASSERT_TRUE(parse_cidr("2001:db8:ffff::1/33", &c));
  EXPECT_EQ(c.bytes[4], 0x80);  // the 33rd bit kept, the rest cleared
  EXPECT_EQ(c.bytes[5], 0);
  EXPECT_EQ(c.bytes[15], 0);
}

TEST(ParseCidr, V6) {
  Cidr c;
  ASSERT_TRUE(parse_cidr("2001:db8::/32", &c));
  EXPECT_EQ(c.family, AF_INET6);
  EXPECT_EQ(c.prefix, 32);
  EXPECT_EQ(c.bytes[0], 0x20);
  EXPECT_EQ(c.bytes[1], 0x01);
  ASSERT_TRUE(parse_cidr("::1", &c));
  EXPECT_EQ(c.prefix, 128);
  EXPECT_EQ(c.bytes[15], 1);
  ASSERT_TRUE(parse_cidr("::1/128", &c));
  ASSERT_TRUE(parse_cidr("::/0", &c));
}

TEST(ParseCidr, RefusesBadText) {
  const char* kBad[] = {"",
                        "/8",
                        "10.0.0.0/",
                        "10.0.0.0/33",
                        "::/129",
                        "10.0.0.0/8/8",
                        "example/8",
                        "10.0.0.0/-1",
                        "10.0.0.0/ 8",
                        "10.0.0/8",
                        "256.0.0.0/8",
                        "[::1]/128",
                        "10.0.0.0/8x",
                        "1.2.3.4:80"};
  for (const char* text : kBad) {
    Cidr c;
    EXPECT_FALSE(parse_cidr(text, &c)) << "'" << text << "'";
  }
}

SocketAddress addr(const char* text) {
  auto r = SocketAddress::parse(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : SocketAddress();
}

Cidr cidr(const char* text) {
  Cidr c;
  EXPECT_TRUE(parse_cidr(text, &c)) << text;
  return c;
}

TEST(CidrContains, V4) {
  Cidr c = cidr("10.0.0.0/8");
  EXPECT_TRUE(c.contains(addr("10.1.2.3:80")));
  EXPECT_TRUE(c.contains(addr("10.255.255.255:1")));
  EXPECT_FALSE(c.contains(addr("11.0.0.1:80")));
  EXPECT_FALSE(c.contains(addr("9.255.255.255:80")));

  Cidr odd = cidr("192.0.2.0/23");  // a prefix that ends inside a byte
  EXPECT_TRUE(odd.contains(addr("192.0.2.1:1")));
  EXPECT_TRUE(odd.contains(addr("192.0.3.255:1")));
  EXPECT_FALSE(odd.contains(addr("192.0.4.0:1")));
  EXPECT_FALSE(odd.contains(addr("192.0.1.255:1")));

  Cidr host = cidr("203.0.113.9");
  EXPECT_TRUE(host.contains(addr("203.0.113.9:5")));
  EXPECT_FALSE(host.contains(addr("203.0.113.8:5")));

  Cidr all = cidr("0.0.0.0/0");
  EXPECT_TRUE(all.contains(addr("1.2.3.4:1")));
  EXPECT_TRUE(all.contains(addr("255.255.255.255:1")));
}

TEST(CidrContains, V6) {
  Cidr c = cidr("2001:db8::/32");
  EXPECT_TRUE(c.contains(addr("[2001:db8::1]:80")));
  EXPECT_TRUE(c.contains(addr("[2001:db8:ffff:ffff::1]:80")));
  EXPECT_FALSE(c.contains(addr("[2001:db9::1]:80")));

  Cidr odd = cidr("2001:db8:8000::/33");
  EXPECT_TRUE(odd.contains(addr("[2001:db8:8000::1]:1")));
  EXPECT_TRUE(odd.contains(addr("[2001:db8:ffff::1]:1")));
  EXPECT_FALSE(odd.contains(addr("[2001:db8:7fff::1]:1")));

  Cidr lo = cidr("::1/128");
  EXPECT_TRUE(lo.contains(addr("[::1]:1")));
  EXPECT_FALSE(lo.contains(addr("[::2]:1")));
}

TEST(CidrContains, FamiliesMeetThroughV4MappedAddresses) {
  // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; a v4 deny must still apply.
  Cidr v4 = cidr("192.0.2.0/24");
  EXPECT_TRUE(v4.contains(addr("[::ffff:192.0.2.9]:1")));
  EXPECT_FALSE(v4.contains(addr("[::ffff:192.0.3.9]:1")));
  EXPECT_FALSE(v4.contains(addr("[::1]:1")));
  EXPECT_FALSE(v4.contains(addr("[2001:db8::c000:209]:1")));  // same low bytes, not mapped

  Cidr mapped = cidr("::ffff:0:0/96");
  EXPECT_TRUE(mapped.contains(addr("1.2.3.4:1")));
  Cidr v6 = cidr("2001:db8::/32");
  EXPECT_FALSE(v6.contains(addr("1.2.3.4:1")));

  Cidr empty;  // never parsed: matches nothing
  EXPECT_FALSE(empty.contains(addr("1.2.3.4:1")));
  EXPECT_FALSE(v4.contains(SocketAddress()));
}

TEST(ProtocolName, EveryProtocol) {
  EXPECT_STREQ(protocol_name(Protocol::kHttp), "http");
  EXPECT_STREQ(protocol_name(Protocol::kHttps), "https");
  EXPECT_STREQ(protocol_name(Protocol::kTcp), "tcp");
  EXPECT_STREQ(protocol_name(Protocol::kUdp), "udp");
  EXPECT_STREQ(protocol_name(Protocol::kDns), "dns");
  EXPECT_STREQ(protocol_name(Protocol::kForwardProxy), "forward_proxy");
}

TEST(ConfigErrorText, FileLineColMessage) {
  ConfigError e{"conf/f.yaml", Mark{12, 7}, "unknown backend 'x'"};
  EXPECT_EQ(e.to_string(), "conf/f.yaml:12:7: unknown backend 'x'");
}

}  // namespace
}  // namespace fulcrum::config
