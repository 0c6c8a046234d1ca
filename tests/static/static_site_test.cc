#include "static/static_site.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <string>

namespace fulcrum::staticfiles {
namespace {

class StaticSiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fulcrum-static-XXXXXX";
    dir_ = mkdtemp(tmpl);
    root_ = dir_ + "/root";
    mkdir(root_.c_str(), 0755);
    mkdir((root_ + "/docs").c_str(), 0755);
    write(root_ + "/index.html", "<h1>home</h1>");
    write(root_ + "/docs/index.html", "docs");
    write(root_ + "/app.js", "console.log(1)");
    write(root_ + "/data.bin", "0123456789");
    write(dir_ + "/secret.txt", "top secret");
    symlink((dir_ + "/secret.txt").c_str(), (root_ + "/leak.txt").c_str());
    symlink("app.js", (root_ + "/alias.js").c_str());
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  static void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

  struct Got {
    int status;
    std::string head;
    uint64_t offset, length;
    bool has_file;
  };
  Got get(std::string_view path, std::vector<http::Header> headers = {}, http::Method m = http::Method::kGet,
          std::string fallback = "") {
    config::StaticSite spec;
    spec.root = root_;
    spec.fallback = fallback;
    StaticSite site(spec);
    EXPECT_TRUE(site.ok()) << site.error();
    BufferPool pool;
    Buffer out(pool);
    FileReply r = site.serve(m, path, headers, false, out);
    return {r.status, std::string(out.view()), r.offset, r.length, r.file.valid()};
  }
  static http::Header h(http::HeaderToken t, std::string_view v) { return http::Header{"x", v, t}; }

  std::string dir_, root_;
};

TEST_F(StaticSiteTest, ServesFilesWithTypeLengthAndValidators) {
  Got g = get("/app.js");
  EXPECT_EQ(g.status, 200);
  EXPECT_TRUE(g.has_file);
  EXPECT_EQ(g.length, 14u);
  EXPECT_NE(g.head.find("Content-Type: text/javascript"), std::string::npos);
  EXPECT_NE(g.head.find("Content-Length: 14\r\n"), std::string::npos);
  EXPECT_NE(g.head.find("ETag: \""), std::string::npos);
  EXPECT_NE(g.head.find("Last-Modified: "), std::string::npos);
  EXPECT_NE(g.head.find("Date: "), std::string::npos);
}

TEST_F(StaticSiteTest, IndexFilesForDirectories) {
  EXPECT_EQ(get("/").length, 13u);
  EXPECT_NE(get("/").head.find("text/html"), std::string::npos);
  EXPECT_EQ(get("/docs/").length, 4u);
  EXPECT_EQ(get("/docs").length, 4u);
}

TEST_F(StaticSiteTest, TraversalAttemptsGet404) {
  for (const char* p : {"/../secret.txt", "/docs/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
                        "/..%2fsecret.txt", "/%252e%252e/secret.txt", "/leak.txt", "/app.js%00.png",
                        "/missing.html", "relative", "/%zz", "/docs/%2e%2e/%2e%2e/secret.txt"}) {
    Got g = get(p);
    EXPECT_EQ(g.status, 404) << p;
    EXPECT_FALSE(g.has_file) << p;
  }
  EXPECT_EQ(get("/alias.js").status, 200);  // a symlink that stays inside root is fine
  EXPECT_EQ(get("/./docs/./index.html").status, 200);
}

TEST_F(StaticSiteTest, ConditionalRequestsGet304) {
  Got g = get("/app.js");
  auto at = g.head.find("ETag: ") + 6;
  std::string etag = g.head.substr(at, g.head.find("\r\n", at) - at);
  auto lm_at = g.head.find("Last-Modified: ") + 15;
  std::string lm = g.head.substr(lm_at, g.head.find("\r\n", lm_at) - lm_at);
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfNoneMatch, etag)}).status, 304);
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfNoneMatch, "\"other\", W/" + etag)}).status, 304);
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfNoneMatch, "\"other\"")}).status, 200);
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfModifiedSince, lm)}).status, 304);
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfModifiedSince, "Sun, 06 Nov 1994 08:49:37 GMT")}).status, 200);
  // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
  EXPECT_EQ(get("/app.js", {h(http::HeaderToken::kIfNoneMatch, "\"other\""), h(http::HeaderToken::kIfModifiedSince, lm)})
                .status,
            200);
}

TEST_F(StaticSiteTest, RangesGive206Or416) {
  Got g = get("/data.bin", {h(http::HeaderToken::kRange, "bytes=2-5")});
  EXPECT_EQ(g.status, 206);
  EXPECT_EQ(g.offset, 2u);
  EXPECT_EQ(g.length, 4u);
  EXPECT_NE(g.head.find("Content-Range: bytes 2-5/10"), std::string::npos);
  g = get("/data.bin", {h(http::HeaderToken::kRange, "bytes=-3")});
  EXPECT_EQ(g.offset, 7u);
  EXPECT_EQ(g.length, 3u);
  g = get("/data.bin", {h(http::HeaderToken::kRange, "bytes=8-")});
  EXPECT_EQ(g.length, 2u);
  g = get("/data.bin", {h(http::HeaderToken::kRange, "bytes=4-100")});
  EXPECT_EQ(g.length, 6u);
  g = get("/data.bin", {h(http::HeaderToken::kRange, "bytes=10-")});
  EXPECT_EQ(g.status, 416);
  EXPECT_NE(g.head.find("Content-Range: bytes */10"), std::string::npos);
  EXPECT_EQ(get("/data.bin", {h(http::HeaderToken::kRange, "bytes=1-2,4-5")}).status, 200);
  EXPECT_EQ(get("/data.bin", {h(http::HeaderToken::kRange, "items=1-2")}).status, 200);
  // A stale If-Range turns the range request into a full response.
  EXPECT_EQ(get("/data.bin", {h(http::HeaderToken::kRange, "bytes=1-2"), h(http::HeaderToken::kIfRange, "\"old\"")})
                .status,
            200);
}

TEST_F(StaticSiteTest, HeadHasNoBodyAndOtherMethodsGet405) {
  Got g = get("/app.js", {}, http::Method::kHead);
  EXPECT_EQ(g.status, 200);
  EXPECT_FALSE(g.has_file);
  EXPECT_NE(g.head.find("Content-Length: 14"), std::string::npos);
  g = get("/app.js", {}, http::Method::kPost);
  EXPECT_EQ(g.status, 405);
  EXPECT_NE(g.head.find("Allow: GET, HEAD"), std::string::npos);
}

TEST_F(StaticSiteTest, FallbackServesTheAppForUnknownPaths) {
  Got g = get("/users/42/settings", {}, http::Method::kGet, "/index.html");
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.length, 13u);
  EXPECT_EQ(get("/../secret.txt", {}, http::Method::kGet, "/index.html").length, 13u);  // still never the secret
}

TEST(HttpDateTest, RoundTrips) {
  EXPECT_EQ(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  int64_t t = 0;
  ASSERT_TRUE(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t));
  EXPECT_EQ(t, 784111777);
  EXPECT_FALSE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t));
  EXPECT_FALSE(parse_http_date("garbage", &t));
}

TEST(CleanPathTest, Decodes) {
  std::string out;
  EXPECT_TRUE(StaticSite::clean_path("/a%20b/c.txt", &out));
  EXPECT_EQ(out, "a b/c.txt");
  EXPECT_TRUE(StaticSite::clean_path("//a///b/", &out));
  EXPECT_EQ(out, "a/b");
  EXPECT_FALSE(StaticSite::clean_path("/a/%00", &out));
  EXPECT_FALSE(StaticSite::clean_path("/a/%2", &out));
}

}  // namespace
}  // namespace fulcrum::staticfiles
