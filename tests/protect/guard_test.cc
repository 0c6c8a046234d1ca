// Tests of src/protect/guard.cc and rules.cc: allow/deny CIDRs for IPv4 and IPv6 at accept,
// max_conns_per_client with ConnHold giving back, rules on the raw target, headers and query
// parameters (first match wins, allow short-circuits), and Retry-After on 429.
#include "protect/guard.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fulcrum::protect {
namespace {

struct H {
  std::string_view name, value;
};

SocketAddress addr(const std::string& text) { return *SocketAddress::parse(text); }

config::Cidr cidr(const char* text) {
  config::Cidr c;
  EXPECT_TRUE(config::parse_cidr(text, &c)) << text;
  return c;
}

config::Listener listener(config::Protect p, config::Protocol proto = config::Protocol::kHttp) {
  config::Listener l;
  l.name = "web";
  l.protocol = proto;
  l.protect = std::move(p);
  return l;
}

config::Rule rule(std::string path, std::string header, std::string query, std::string re,
                  std::string action) {
  config::Rule r;
  r.path_regex = std::move(path);
  r.header = std::move(header);
  r.query = std::move(query);
  r.regex = std::move(re);
  r.action = std::move(action);
  return r;
}

TEST(Guard, NothingToEnforceGivesNoGuard) {
  std::optional<Rules::BuildError> err;
  config::Protect p;  // timeouts and max_header_bytes only: the proxy applies those
  EXPECT_EQ(Guard::build(listener(p), &err), nullptr);
  EXPECT_FALSE(err);
}

TEST(Guard, DenyAndAllowV4AndV6) {
  config::Protect p;
  p.deny = {cidr("192.0.2.0/24"), cidr("2001:db8:bad::/48")};
  p.allow = {cidr("192.0.0.0/8"), cidr("2001:db8::/32"), cidr("::1")};
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p), &err);
  ASSERT_TRUE(g);
  auto admit = [&](const char* a) {
    ConnHold hold;
    return g->admit(addr(a), Clock::now(), nullptr, &hold);
  };
  EXPECT_FALSE(admit("192.0.2.9:1"));           // denied, though allowed too: deny wins
  EXPECT_TRUE(admit("192.0.3.9:1"));            // allowed
  EXPECT_FALSE(admit("10.0.0.1:1"));            // not in allow
  EXPECT_FALSE(admit("[::ffff:192.0.2.9]:1"));  // mapped v4 is the v4 client
  EXPECT_TRUE(admit("[::ffff:192.0.3.9]:1"));
  EXPECT_TRUE(admit("[2001:db8:1::5]:1"));
  EXPECT_FALSE(admit("[2001:db8:bad:1::5]:1"));
  EXPECT_TRUE(admit("[::1]:1"));
  EXPECT_FALSE(admit("[::2]:1"));
}

TEST(Guard, MaxConnsPerClientGivesBackOnHoldEnd) {
  config::Protect p;
  p.max_conns_per_client = 2;
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p), &err);
  ASSERT_TRUE(g);
  SocketAddress a = addr("10.1.1.1:5");
  std::vector<ConnHold> holds(3);
  EXPECT_TRUE(g->admit(a, Clock::now(), nullptr, &holds[0]));
  EXPECT_TRUE(g->admit(a, Clock::now(), nullptr, &holds[1]));
  EXPECT_FALSE(g->admit(a, Clock::now(), nullptr, &holds[2]));
  EXPECT_TRUE(g->admit(addr("10.1.1.2:5"), Clock::now(), nullptr, &holds[2]));
  holds[0] = ConnHold();  // a connection ends
  ConnHold h;
  EXPECT_TRUE(g->admit(a, Clock::now(), nullptr, &h));
}

TEST(Guard, RateAnswers429WithRetryAfter) {
  config::Protect p;
  p.rate = config::Rate{0.5};  // one per 2 s
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p), &err);
  ASSERT_TRUE(g);
  std::vector<H> none;
  TimePoint t = Clock::now();
  SocketAddress a = addr("10.2.2.2:5");
  EXPECT_EQ(g->check_request(a, "10.2.2.2", "/", none, 0, t, nullptr).status, 0);  // burst 0: one
  Verdict v = g->check_request(a, "10.2.2.2", "/", none, 0, t, nullptr);
  EXPECT_EQ(v.status, 429);
  EXPECT_EQ(v.reason, metrics::Refusal::kRateLimited);
  EXPECT_EQ(v.extra(), "Retry-After: 2\r\n");
}

TEST(Guard, TcpRateAppliesAtAccept) {
  config::Protect p;
  p.rate = config::Rate{1};
  p.burst = 2;
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p, config::Protocol::kTcp), &err);
  ASSERT_TRUE(g);
  SocketAddress a = addr("10.3.3.3:5");
  TimePoint t = Clock::now();
  ConnHold h;
  EXPECT_TRUE(g->admit(a, t, nullptr, &h));
  EXPECT_TRUE(g->admit(a, t, nullptr, &h));
  EXPECT_FALSE(g->admit(a, t, nullptr, &h));
}

TEST(Rules, RawTargetHeadersQueryFirstMatchWins) {
  config::Protect p;
  p.rules = {rule("^/health$", "", "", "", "allow"),  // an allow ends the search
             rule("\\.\\./", "", "", "", "deny"),          rule("(?i)%2e%2e", "", "", "", "deny"),
             rule("", "User-Agent", "", "sqlmap", "deny"), rule("", "", "id", "(?i)union\\s+select", "deny"),
             rule("^/open", "", "", "", "allow"),          rule("", "X-Evil", "", ".", "deny")};
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p), &err);
  ASSERT_TRUE(g) << (err ? err->message : "");
  std::vector<H> plain = {{"Host", "x"}, {"User-Agent", "curl/8"}};
  std::vector<H> sqlmap = {{"Host", "x"}, {"user-agent", "Mozilla sqlmap/1.5"}};
  std::vector<H> evil = {{"X-Evil", "1"}};
  auto status = [&](std::string_view target, const std::vector<H>& h) {
    return g->check_request(addr("10.4.4.4:1"), "10.4.4.4", target, h, 0, Clock::now(), nullptr).status;
  };
  EXPECT_EQ(status("/a/b", plain), 0);
  EXPECT_EQ(status("/a/../b", plain), 403);                     // raw, not normalised to /b
  EXPECT_EQ(status("/a/%2E%2e/b", plain), 403);                 // not decoded either: its own rule
  EXPECT_EQ(status("/a/b", sqlmap), 403);                       // header name case-insensitive
  EXPECT_EQ(status("/s?q=1&id=1%20UNION%20SELECT", plain), 0);  // raw value: %20 is not \s
  EXPECT_EQ(status("/s?q=1&id=1 union  select", plain), 403);
  EXPECT_EQ(status("/s?xid=union select", plain), 0);  // another parameter
  EXPECT_EQ(status("/health", sqlmap), 0);             // allowed before the header rule
  EXPECT_EQ(status("/open", evil), 0);                 // allow short-circuits the later deny
  EXPECT_EQ(status("/closed", evil), 403);
  Verdict v = g->check_request(addr("10.4.4.4:1"), "10.4.4.4", "/../", plain, 0, Clock::now(), nullptr);
  EXPECT_EQ(v.reason, metrics::Refusal::kRule);
}

TEST(Rules, BadRegexIsRefusedWithItsMark) {
  config::Protect p;
  p.rules = {rule("(", "", "", "", "deny")};
  p.rules[0].mark = {7, 9};
  std::optional<Rules::BuildError> err;
  EXPECT_EQ(Guard::build(listener(p), &err), nullptr);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->mark.line, 7);
  EXPECT_NE(err->message.find("bad regex '('"), std::string::npos);
}

TEST(Guard, BodyLimit) {
  config::Protect p;
  p.max_body_bytes = 100;
  std::optional<Rules::BuildError> err;
  auto g = Guard::build(listener(p), &err);
  ASSERT_TRUE(g);
  std::vector<H> none;
  EXPECT_FALSE(g->body_too_large(100, "x"));
  EXPECT_TRUE(g->body_too_large(101, "x"));
  Verdict v = g->check_request(addr("10.5.5.5:1"), "10.5.5.5", "/", none, 101, Clock::now(), nullptr);
  EXPECT_EQ(v.status, 413);
  EXPECT_EQ(v.reason, metrics::Refusal::kBodyTooLarge);
}

}  // namespace
}  // namespace fulcrum::protect
