// RFC 9111 parsing and storage decisions (src/cache/policy.cc).
#include "cache/policy.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace fulcrum::cache {
namespace {

using http::Header;

CacheControl cc(std::string_view v) {
  CacheControl c;
  parse_cache_control(v, &c);
  return c;
}

TEST(CacheControlTest, Directives) {
  auto c = cc("max-age=60, public");
  ASSERT_TRUE(c.max_age);
  EXPECT_EQ(*c.max_age, 60);
  EXPECT_TRUE(c.public_);
  EXPECT_FALSE(c.private_);
  c = cc("no-store");
  EXPECT_TRUE(c.no_store);
  c = cc("NO-CACHE, Must-Revalidate, proxy-revalidate");
  EXPECT_TRUE(c.no_cache && c.must_revalidate && c.proxy_revalidate);
  c = cc("s-maxage=10,max-age=5");
  EXPECT_EQ(*c.s_maxage, 10);
  EXPECT_EQ(*c.max_age, 5);
}

TEST(CacheControlTest, QuotedArgumentsAndCommasInside) {
  auto c = cc("private=\"Set-Cookie, X-A\", max-age=30");
  EXPECT_TRUE(c.private_);
  EXPECT_EQ(*c.max_age, 30);
  c = cc("no-cache=\"a,b\", public");
  EXPECT_TRUE(c.no_cache && c.public_);
  c = cc("max-age=\"20\"");  // a quoted delta is tolerated
  EXPECT_EQ(*c.max_age, 20);
  c = cc("community=\"UCI\", max-age=7");  // unknown directives are ignored
  EXPECT_EQ(*c.max_age, 7);
}

TEST(CacheControlTest, InvalidAgesMeanStale) {
  EXPECT_EQ(*cc("max-age=abc").max_age, 0);
  EXPECT_EQ(*cc("max-age=").max_age, 0);
  EXPECT_EQ(*cc("max-age").max_age, 0);
  EXPECT_EQ(*cc("max-age=-5").max_age, 0);
  EXPECT_EQ(*cc("max-age=60, max-age=10").max_age, 10);
  EXPECT_EQ(*cc("max-age=99999999999999999999").max_age, 2147483648LL);
}

TEST(CacheControlTest, WhitespaceAndEmptyElements) {
  auto c = cc(" ,, max-age = 9 ,\tpublic ,");
  EXPECT_TRUE(c.public_);
  ASSERT_TRUE(c.max_age);
  EXPECT_EQ(*c.max_age, 9);
  c = cc("");
  EXPECT_FALSE(c.max_age || c.no_store || c.public_);
}

TEST(HttpDateTest, ThreeForms) {
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), 784111777);
  EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  EXPECT_FALSE(parse_http_date("0"));
  EXPECT_FALSE(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"));
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"));
  EXPECT_FALSE(parse_http_date(""));
}

TEST(HttpDateTest, FormatRoundTrips) {
  char buf[32];
  size_t n = format_http_date(784111777, buf);
  EXPECT_EQ(std::string(buf, n), "Sun, 06 Nov 1994 08:49:37 GMT");
  for (int64_t t : {0LL, 951782400LL, 1700000000LL, 4102444800LL}) {
    n = format_http_date(t, buf);
    EXPECT_EQ(parse_http_date(std::string_view(buf, n)), t);
  }
}

TEST(VaryTest, Names) {
  std::vector<std::string> names;
  EXPECT_TRUE(
      for_each_vary("Accept-Encoding, ,User-Agent", [&](std::string_view n) { names.emplace_back(n); }));
  EXPECT_EQ(names, (std::vector<std::string>{"Accept-Encoding", "User-Agent"}));
  EXPECT_FALSE(for_each_vary("Accept, *", [](std::string_view) {}));
}

TEST(EtagTest, WeakComparison) {
  EXPECT_TRUE(etag_list_matches("\"a\"", "\"a\""));
  EXPECT_TRUE(etag_list_matches("W/\"a\"", "\"a\""));
  EXPECT_TRUE(etag_list_matches("\"x\", \"a\"", "W/\"a\""));
  EXPECT_TRUE(etag_list_matches("*", "\"a\""));
  EXPECT_FALSE(etag_list_matches("\"b\"", "\"a\""));
  EXPECT_FALSE(etag_list_matches("\"a\"", ""));
}

// A parsed response head from text (fields point into `text`, which the caller keeps).
struct Resp {
  std::string text;
  std::array<Header, 64> fields;
  http::ResponseHead head;
  explicit Resp(std::string t, http::Method m = http::Method::kGet) : text(std::move(t)) {
    auto r = http::parse_response(text, fields, &head, m);
    EXPECT_TRUE(r.done()) << text;
  }
};

StoreDecision decide(std::string fields, int status = 200, int64_t ttl_ms = 0, bool auth = false) {
  Resp r("HTTP/1.1 " + std::to_string(status) + " X\r\n" + fields + "Content-Length: 0\r\n\r\n");
  return store_decision(auth, r.head, ttl_ms, 784111777);
}

TEST(StoreDecisionTest, Freshness) {
  auto d = decide("Cache-Control: max-age=60\r\n");
  EXPECT_TRUE(d.store);
  EXPECT_EQ(d.lifetime_ms, 60000);
  d = decide("Cache-Control: max-age=60, s-maxage=5\r\n");
  EXPECT_EQ(d.lifetime_ms, 5000);
  EXPECT_TRUE(d.must_revalidate);  // s-maxage implies proxy-revalidate
  d = decide("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nExpires: Sun, 06 Nov 1994 08:50:37 GMT\r\n");
  EXPECT_TRUE(d.store);
  EXPECT_EQ(d.lifetime_ms, 60000);
  d = decide("Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n");  // no Date: from now
  EXPECT_EQ(d.lifetime_ms, 60000);
  d = decide("Cache-Control: max-age=10\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
  EXPECT_EQ(d.lifetime_ms, 10000);  // max-age wins over Expires
}

TEST(StoreDecisionTest, DefaultTtlOnlyWithoutFreshnessInformation) {
  EXPECT_FALSE(decide("", 200, 0).store);
  auto d = decide("", 200, 30000);
  EXPECT_TRUE(d.store);
  EXPECT_EQ(d.lifetime_ms, 30000);
  EXPECT_FALSE(decide("Expires: 0\r\n", 200, 30000).store);  // invalid Expires: stale, no validator
  EXPECT_TRUE(decide("Expires: 0\r\nETag: \"x\"\r\n", 200, 30000).store);
}

TEST(StoreDecisionTest, Refusals) {
  EXPECT_FALSE(decide("Cache-Control: no-store, max-age=60\r\n").store);
  EXPECT_FALSE(decide("Cache-Control: private, max-age=60\r\n").store);
  EXPECT_FALSE(decide("Cache-Control: private=\"x\", max-age=60\r\n").store);
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\nVary: *\r\n").store);
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\nSet-Cookie: a=1\r\n").store);
  EXPECT_FALSE(decide("Cache-Control: max-age=0\r\n").store);  // stale at once, nothing to revalidate
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\n", 206).store);
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\n", 302).store);
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\n", 500).store);
  EXPECT_TRUE(decide("Cache-Control: max-age=60\r\n", 404).store);
  EXPECT_TRUE(decide("Cache-Control: max-age=60\r\n", 301).store);
}

TEST(StoreDecisionTest, NoCacheStoredOnlyWithValidator) {
  EXPECT_FALSE(decide("Cache-Control: no-cache\r\n").store);
  auto d = decide("Cache-Control: no-cache, max-age=60\r\nETag: \"v\"\r\n");
  EXPECT_TRUE(d.store);
  EXPECT_EQ(d.lifetime_ms, 0);
}

TEST(StoreDecisionTest, SetCookieOnlyWhenPublicWithExplicitFreshness) {
  auto d = decide("Cache-Control: public, max-age=60\r\nSet-Cookie: a=1\r\n");
  EXPECT_TRUE(d.store);
  EXPECT_TRUE(d.strip_set_cookie);
  EXPECT_FALSE(decide("Cache-Control: public\r\nSet-Cookie: a=1\r\n", 200, 60000).store);
}

TEST(StoreDecisionTest, Authorization) {
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\n", 200, 0, true).store);
  EXPECT_TRUE(decide("Cache-Control: max-age=60, public\r\n", 200, 0, true).store);
  EXPECT_TRUE(decide("Cache-Control: s-maxage=60\r\n", 200, 0, true).store);
  EXPECT_TRUE(decide("Cache-Control: max-age=60, must-revalidate\r\n", 200, 0, true).store);
  EXPECT_FALSE(decide("Cache-Control: max-age=60\r\n", 200, 0, false).auth_ok);
}

struct Req {
  std::string text;
  std::array<Header, 64> fields;
  http::RequestHead head;
  explicit Req(std::string t) : text(std::move(t)) {
    EXPECT_TRUE(http::parse_request(text, fields, &head).done());
  }
};

RequestPolicy req_policy(std::string method, std::string fields) {
  Req r(method + " / HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n");
  return request_policy(r.head);
}

TEST(RequestPolicyTest, Cases) {
  auto p = req_policy("GET", "");
  EXPECT_TRUE(p.cacheable_method);
  EXPECT_FALSE(p.bypass || p.revalidate || p.authorization || p.conditional);
  EXPECT_TRUE(req_policy("HEAD", "").cacheable_method);
  EXPECT_TRUE(req_policy("POST", "").bypass);
  EXPECT_TRUE(req_policy("GET", "Cache-Control: no-store\r\n").bypass);
  EXPECT_TRUE(req_policy("GET", "Range: bytes=0-1\r\n").bypass);
  EXPECT_TRUE(req_policy("GET", "Cache-Control: no-cache\r\n").revalidate);
  EXPECT_TRUE(req_policy("GET", "Cache-Control: max-age=0\r\n").revalidate);
  EXPECT_TRUE(req_policy("GET", "Pragma: no-cache\r\n").revalidate);
  // 5.4: Pragma is ignored when Cache-Control is present.
  EXPECT_FALSE(req_policy("GET", "Pragma: no-cache\r\nCache-Control: max-age=5\r\n").revalidate);
  EXPECT_TRUE(req_policy("GET", "Authorization: Basic x\r\n").authorization);
  EXPECT_TRUE(req_policy("GET", "Cache-Control: only-if-cached\r\n").only_if_cached);
  EXPECT_TRUE(req_policy("GET", "If-None-Match: \"a\"\r\n").conditional);
  EXPECT_TRUE(req_policy("GET", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n").conditional);
}

}  // namespace
}  // namespace fulcrum::cache
