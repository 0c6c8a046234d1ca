// Tests for src/http/router.cc: each match condition alone and together, first match wins, no
// match is -1 (404), regular expressions compiled once and refused when invalid, and the field
// lookups routing and hashing share (headers, query parameters, cookies).
#include "http/router.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fulcrum::http {
namespace {

config::Route route_to(std::string backend, std::optional<config::Match> match = std::nullopt) {
  config::Route r;
  r.backend = std::move(backend);
  r.match = std::move(match);
  return r;
}

config::Match match_host(std::string host) {
  config::Match m;
  m.host = std::move(host);
  return m;
}

config::Match match_prefix(std::string prefix) {
  config::Match m;
  m.path_prefix = std::move(prefix);
  return m;
}

config::Match match_regex(std::string re) {
  config::Match m;
  m.path_regex = std::move(re);
  return m;
}

// Builds a router over `routes`; the listener must outlive it (the router points into it).
struct Fixture {
  explicit Fixture(std::vector<config::Route> routes) {
    listener.name = "web";
    listener.routes = std::move(routes);
    auto r = Router::build(listener);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if (r) router = std::move(*r);
  }
  int match(std::string_view method, std::string_view host, std::string_view path,
            std::string_view query = {}, std::vector<Header> headers = {}) {
    for (auto& h : headers) h.token = lookup_header_token(h.name);
    RouteInput in{method, host, path, query, headers};
    return router ? router->match(in) : -2;
  }
  config::Listener listener;
  std::unique_ptr<Router> router;
};

TEST(RouterTest, NoRoutesMatchNothing) {
  Fixture f({});
  EXPECT_EQ(f.match("GET", "a", "/"), -1);
}

TEST(RouterTest, RouteWithoutMatchTakesEverything) {
  Fixture f({route_to("app")});
  EXPECT_EQ(f.match("GET", "a", "/"), 0);
  EXPECT_EQ(f.match("DELETE", "", "/x/y", "q=1"), 0);
}

TEST(RouterTest, HostIgnoresCaseAndPort) {
  Fixture f({route_to("api", match_host("api.example.com")), route_to("v6", match_host("[::1]"))});
  EXPECT_EQ(f.match("GET", "api.example.com", "/"), 0);
  EXPECT_EQ(f.match("GET", "API.Example.COM", "/"), 0);
  EXPECT_EQ(f.match("GET", "api.example.com:8080", "/"), 0);
  EXPECT_EQ(f.match("GET", "[::1]:8080", "/"), 1);
  EXPECT_EQ(f.match("GET", "[::1]", "/"), 1);
  EXPECT_EQ(f.match("GET", "www.example.com", "/"), -1);
  EXPECT_EQ(f.match("GET", "api.example.com.evil", "/"), -1);
  EXPECT_EQ(f.match("GET", "xapi.example.com", "/"), -1);
  EXPECT_EQ(f.match("GET", "", "/"), -1);  // HTTP/1.0 without Host
}

TEST(RouterTest, PathPrefixIsAPlainPrefixOfThePath) {
  Fixture f({route_to("static", match_prefix("/static/"))});
  EXPECT_EQ(f.match("GET", "h", "/static/"), 0);
  EXPECT_EQ(f.match("GET", "h", "/static/css/a.css"), 0);
  EXPECT_EQ(f.match("GET", "h", "/static"), -1);
  EXPECT_EQ(f.match("GET", "h", "/Static/a"), -1);  // paths are case-sensitive
  EXPECT_EQ(f.match("GET", "h", "/x/static/a"), -1);
}

TEST(RouterTest, PathRegexIsUnanchoredRe2OnThePathOnly) {
  Fixture f(
      {route_to("img", match_regex(R"(\.(png|jpg)$)")), route_to("api", match_regex("^/api/v[0-9]+/"))});
  EXPECT_EQ(f.match("GET", "h", "/a/b.png"), 0);
  EXPECT_EQ(f.match("GET", "h", "/a/b.jpg", "v=2"), 0);  // the query is not part of the path
  EXPECT_EQ(f.match("GET", "h", "/a/b.png.txt"), -1);
  EXPECT_EQ(f.match("GET", "h", "/api/v2/users"), 1);
  EXPECT_EQ(f.match("GET", "h", "/x/api/v2/users"), -1);
  EXPECT_EQ(f.match("GET", "h", "/api/vx/"), -1);
}

TEST(RouterTest, InvalidRegexIsRefusedAtBuild) {
  config::Listener l;
  l.routes.push_back(route_to("x", match_regex("(unclosed")));
  auto r = Router::build(l);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("(unclosed"), std::string::npos) << r.error().message;
}

TEST(RouterTest, MethodsAreAnExactList) {
  config::Match m;
  m.methods = {"GET", "POST"};
  Fixture f({route_to("rw", m)});
  EXPECT_EQ(f.match("GET", "h", "/"), 0);
  EXPECT_EQ(f.match("POST", "h", "/"), 0);
  EXPECT_EQ(f.match("PUT", "h", "/"), -1);
  EXPECT_EQ(f.match("get", "h", "/"), -1);  // methods are case-sensitive (RFC 9110 9.1)
}

TEST(RouterTest, HeadersMatchByNameInAnyCaseAndExactValue) {
  config::Match m;
  m.headers = {{"X-Canary", "1"}, {"X-Team", "blue"}};
  Fixture f({route_to("canary", m)});
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"x-canary", "1"}, {"X-TEAM", "blue"}}), 0);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"X-Canary", "1"}}), -1);  // every pair must match
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"X-Canary", "10"}, {"X-Team", "blue"}}), -1);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"X-Canary", "1"}, {"X-Team", "Blue"}}), -1);  // values exact
  EXPECT_EQ(f.match("GET", "h", "/", {}, {}), -1);
}

TEST(RouterTest, QueryParametersMatchRawValues) {
  config::Match m;
  m.query = {{"v", "2"}};
  Fixture f({route_to("v2", m)});
  EXPECT_EQ(f.match("GET", "h", "/", "v=2"), 0);
  EXPECT_EQ(f.match("GET", "h", "/", "a=1&v=2&b"), 0);
  EXPECT_EQ(f.match("GET", "h", "/", "v=22"), -1);
  EXPECT_EQ(f.match("GET", "h", "/", "vv=2"), -1);
  EXPECT_EQ(f.match("GET", "h", "/", "v"), -1);
  EXPECT_EQ(f.match("GET", "h", "/", ""), -1);
  EXPECT_EQ(f.match("GET", "h", "/", "v=1&v=2"), -1);  // the first occurrence decides
}

TEST(RouterTest, CookiesMatchAcrossCookieFields) {
  config::Match m;
  m.cookies = {{"beta", "1"}};
  Fixture f({route_to("beta", m)});
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Cookie", "beta=1"}}), 0);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Cookie", "a=b; beta=1; c=d"}}), 0);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Cookie", "a=b"}, {"cookie", "beta=1"}}), 0);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Cookie", "xbeta=1"}}), -1);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Cookie", "beta=10"}}), -1);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"Set-Cookie", "beta=1"}}), -1);
  EXPECT_EQ(f.match("GET", "h", "/", {}, {{"X-Cookie", "beta=1"}}), -1);
}

TEST(RouterTest, ConditionsOfOneRouteAllMustHold) {
  config::Match m;
  m.host = "img.example.com";
  m.path_regex = R"(\.png$)";
  m.query = {{"v", "2"}};
  m.cookies = {{"beta", "1"}};
  m.methods = {"GET"};
  Fixture f({route_to("images", m)});
  std::vector<Header> cookie = {{"Cookie", "beta=1"}};
  EXPECT_EQ(f.match("GET", "img.example.com", "/a.png", "v=2", cookie), 0);
  EXPECT_EQ(f.match("HEAD", "img.example.com", "/a.png", "v=2", cookie), -1);
  EXPECT_EQ(f.match("GET", "www.example.com", "/a.png", "v=2", cookie), -1);
  EXPECT_EQ(f.match("GET", "img.example.com", "/a.gif", "v=2", cookie), -1);
  EXPECT_EQ(f.match("GET", "img.example.com", "/a.png", "v=1", cookie), -1);
  EXPECT_EQ(f.match("GET", "img.example.com", "/a.png", "v=2", {}), -1);
}

TEST(RouterTest, FirstMatchWins) {
  config::Match get_api = match_prefix("/api/");
  get_api.methods = {"GET"};
  Fixture f({route_to("read", get_api), route_to("api", match_prefix("/api/")), route_to("all")});
  EXPECT_EQ(f.match("GET", "h", "/api/x"), 0);
  EXPECT_EQ(f.match("POST", "h", "/api/x"), 1);
  EXPECT_EQ(f.match("POST", "h", "/other"), 2);
  // A catch-all first shadows everything after it.
  Fixture g({route_to("all"), route_to("api", match_prefix("/api/"))});
  EXPECT_EQ(g.match("GET", "h", "/api/x"), 0);
}

TEST(RouterTest, SharedLookups) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_FALSE(iequals("a~", "a^"));

  std::string_view v;
  EXPECT_TRUE(find_query_param("a=1&user=u7&b=2", "user", &v));
  EXPECT_EQ(v, "u7");
  EXPECT_TRUE(find_query_param("flag&x=1", "flag", &v));
  EXPECT_EQ(v, "");
  EXPECT_TRUE(find_query_param("e=a%20b", "e", &v));
  EXPECT_EQ(v, "a%20b");  // raw: no decoding
  EXPECT_FALSE(find_query_param("", "a", &v));
  EXPECT_FALSE(find_query_param("&&", "a", &v));

  std::vector<Header> h = {
      {"Host", "x"}, {"Cookie", "  sid=abc ;theme=dark"}, {"X-User", "u1"}, {"x-user", "u2"}};
  EXPECT_TRUE(find_cookie(h, "sid", &v));
  EXPECT_EQ(v, "abc");
  EXPECT_TRUE(find_cookie(h, "theme", &v));
  EXPECT_EQ(v, "dark");
  EXPECT_FALSE(find_cookie(h, "the", &v));
  EXPECT_TRUE(find_header(h, "X-USER", &v));
  EXPECT_EQ(v, "u1");  // the first field
  EXPECT_FALSE(find_header(h, "X-Missing", &v));
}

}  // namespace
}  // namespace fulcrum::http
