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

// The worker's open-file cache: the same answers as without it, small bodies with the head.
class OpenFileCacheTest : public StaticSiteTest {
 protected:
  struct Served {
    int status;
    std::string out;  // head, and the body when it went inline
    uint64_t offset, length;
    int fd;
  };
  Served serve(StaticSite& site, std::string_view path, TimePoint now, std::vector<http::Header> headers = {}) {
    BufferPool pool;
    Buffer out(pool);
    FileReply r = site.serve(http::Method::kGet, path, headers, false, out, &cache_, now);
    return {r.status, std::string(out.view()), r.offset, r.length, r.fd()};
  }
  static std::string body_of(const std::string& out) { return out.substr(out.find("\r\n\r\n") + 4); }
  StaticSite site() {
    config::StaticSite spec;
    spec.root = root_;
    return StaticSite(spec);
  }
  OpenFileCache cache_;
  TimePoint t0 = Clock::now();
};

TEST_F(OpenFileCacheTest, SmallFilesGoWithTheHeadAndAreServedFromTheCacheForASecond) {
  StaticSite s = site();
  Served a = serve(s, "/app.js", t0);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.length, 0u);  // nothing left to send: the body is in `out`
  EXPECT_EQ(body_of(a.out), "console.log(1)");
  EXPECT_NE(a.out.find("Content-Type: text/javascript"), std::string::npos);
  EXPECT_EQ(cache_.size(), 1u);
  // Changed on disk (another size, so another ETag): within the second the cached copy answers,
  // after it the file is opened again.
  write(root_ + "/app.js", "console.log(22)");
  EXPECT_EQ(body_of(serve(s, "/app.js", t0 + Millis(900)).out), "console.log(1)");
  Served b = serve(s, "/app.js", t0 + Millis(1000));
  EXPECT_EQ(body_of(b.out), "console.log(22)");
  EXPECT_NE(b.out.find("Content-Length: 15\r\n"), std::string::npos);
  // Removed: 404 once the entry is too old, and a missing file is not cached.
  unlink((root_ + "/app.js").c_str());
  EXPECT_EQ(serve(s, "/app.js", t0 + Millis(1500)).status, 200);
  EXPECT_EQ(serve(s, "/app.js", t0 + Millis(2000)).status, 404);
  EXPECT_EQ(serve(s, "/missing", t0).status, 404);
}

TEST_F(OpenFileCacheTest, RangesConditionalsAndIndexesFromTheCache) {
  StaticSite s = site();
  serve(s, "/data.bin", t0);
  Served r = serve(s, "/data.bin", t0, {h(http::HeaderToken::kRange, "bytes=2-4")});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(body_of(r.out), "234");
  EXPECT_NE(r.out.find("Content-Range: bytes 2-4/10"), std::string::npos);
  std::string head = serve(s, "/data.bin", t0).out;
  auto at = head.find("ETag: ") + 6;
  std::string etag = head.substr(at, head.find("\r\n", at) - at);
  Served nm = serve(s, "/data.bin", t0, {h(http::HeaderToken::kIfNoneMatch, etag)});
  EXPECT_EQ(nm.status, 304);
  EXPECT_EQ(body_of(nm.out), "");
  EXPECT_EQ(body_of(serve(s, "/docs/", t0).out), "docs");
  EXPECT_NE(serve(s, "/docs/", t0).out.find("text/html"), std::string::npos);  // the index's type
}

TEST_F(OpenFileCacheTest, LargeFilesKeepTheirDescriptorAndSitesDoNotShareEntries) {
  std::string big(20000, 'x');
  write(root_ + "/big.txt", big);
  StaticSite s = site();
  Served a = serve(s, "/big.txt", t0);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.length, big.size());
  ASSERT_GE(a.fd, 0);  // the cache's descriptor: sendfile from it
  Served b = serve(s, "/big.txt", t0 + Millis(10));
  EXPECT_EQ(b.fd, a.fd);
  // Another site (another root, or the same config reloaded) never sees this one's entries.
  std::string other = dir_ + "/other";
  mkdir(other.c_str(), 0755);
  write(other + "/big.txt", "small");
  config::StaticSite spec;
  spec.root = other;
  StaticSite s2(spec);
  EXPECT_EQ(body_of(serve(s2, "/big.txt", t0).out), "small");
}

TEST_F(OpenFileCacheTest, TraversalIsRefusedAndTheCacheIsBounded) {
  StaticSite s = site();
  for (const char* p : {"/../secret.txt", "/%2e%2e/secret.txt", "/leak.txt"}) EXPECT_EQ(serve(s, p, t0).status, 404);
  // A file swapped for a symlink out of root is refused once its entry is too old.
  serve(s, "/index.html", t0);
  unlink((root_ + "/index.html").c_str());
  symlink((dir_ + "/secret.txt").c_str(), (root_ + "/index.html").c_str());
  EXPECT_EQ(serve(s, "/index.html", t0 + Millis(1000)).status, 404);
  for (int i = 0; i < 300; ++i) {
    std::string name = "/f" + std::to_string(i);
    write(root_ + name, "x");
    EXPECT_EQ(serve(s, name, t0).status, 200);
  }
  EXPECT_EQ(cache_.size(), OpenFileCache::kMaxEntries);
  EXPECT_EQ(body_of(serve(s, "/f299", t0).out), "x");
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
