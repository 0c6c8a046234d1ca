// src/metrics/access_log.cc: both formats, escaping of whatever a client sends, the writer
// thread's batches, and reopening a moved file.
#include "metrics/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "metrics/metrics.h"

namespace fulcrum::metrics {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/fulcrum-access-log-XXXXXX";
  return mkdtemp(tmpl);
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

Exchange request(std::string_view method, std::string_view target, int status, uint64_t bytes) {
  ListenerMetrics m(std::make_shared<Layout>(), nullptr);
  Exchange x;
  m.capture(x, method, target, false, "http://ref.example/", "curl/8");
  x.status = status;
  x.bytes = bytes;
  return x;
}

TEST(AccessLogTest, JsonEscapingAlwaysGivesValidJson) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  std::string out = "\"";
  append_json_escaped(out, all);
  out += '"';
  auto parsed = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << out;
  std::string back = parsed.get<std::string>();
  EXPECT_EQ(back.substr(32, 95), all.substr(32, 95));  // printable ASCII untouched
  std::string q;
  append_json_escaped(q, "a\"b\\c\n");
  EXPECT_EQ(q, "a\\\"b\\\\c\\u000a");
}

TEST(AccessLogTest, CombinedEscapingFollowsNginx) {
  std::string out;
  append_clf_escaped(out, "ua \"1\"\\\x01\xff ok");
  EXPECT_EQ(out, "ua \\x221\\x22\\x5C\\x01\\xFF ok");
}

TEST(AccessLogTest, OffMeansNoLog) {
  config::AccessLog spec;
  spec.path = "off";
  auto log = AccessLog::open(spec);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->get(), nullptr);
  spec.path = "/nonexistent-dir/x.log";
  EXPECT_FALSE(AccessLog::open(spec));
}

TEST(AccessLogTest, JsonAndTcpLinesReachTheFile) {
  std::string dir = temp_dir(), path = dir + "/access.log";
  config::AccessLog spec;
  spec.path = path;
  spec.format = "json";
  {
    auto log = AccessLog::open(spec);
    ASSERT_TRUE(log && *log);
    EventLoop loop;
    AccessLogSink sink(**log, loop);
    SocketAddress v4 = *SocketAddress::parse("192.0.2.7:4242"),
                  v6 = *SocketAddress::parse("[2001:db8::1]:80");
    Exchange x = request("GET", "/a?b=\"c\"", 200, 123);
    sink.http("web", v4, x, 200, 1.5, "app", "s1");
    Exchange none;  // a request refused before it parsed
    sink.http("web", v6, none, 400, 0, "", "");
    sink.tcp("raw", v4, 503, 10, 0, 2.25, "db", "");
    // Destroying the sink flushes; destroying the log writes what is queued.
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u);
  auto a = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(a["listener"], "web");
  EXPECT_EQ(a["client"], "192.0.2.7");
  EXPECT_EQ(a["method"], "GET");
  EXPECT_EQ(a["path"], "/a?b=\"c\"");
  EXPECT_EQ(a["protocol"], "HTTP/1.1");
  EXPECT_EQ(a["status"], 200);
  EXPECT_EQ(a["bytes"], 123);
  EXPECT_DOUBLE_EQ(a["duration_ms"].get<double>(), 1.5);
  EXPECT_EQ(a["backend"], "app");
  EXPECT_EQ(a["server"], "s1");
  EXPECT_TRUE(std::regex_match(a["time"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  auto b = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(b["client"], "2001:db8::1");
  EXPECT_EQ(b["method"], "-");
  auto c = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(c["protocol"], "tcp");
  EXPECT_EQ(c["status"], 503);
  EXPECT_EQ(c["bytes_in"], 10);
}

TEST(AccessLogTest, CombinedLine) {
  std::string dir = temp_dir(), path = dir + "/access.log";
  config::AccessLog spec;
  spec.path = path;
  spec.format = "combined";
  {
    auto log = AccessLog::open(spec);
    EventLoop loop;
    AccessLogSink sink(**log, loop);
    Exchange x = request("POST", "/login", 302, 0);
    sink.http("web", *SocketAddress::parse("10.1.2.3:1"), x, 302, 3, "app", "s2");
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(R"(10\.1\.2\.3 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] )"
                           R"("POST /login HTTP/1\.1" 302 0 "http://ref\.example/" "curl/8")")))
      << lines[0];
}

TEST(AccessLogTest, ReopenWritesToAFreshFileAfterAMove) {
  std::string dir = temp_dir(), path = dir + "/access.log";
  config::AccessLog spec;
  spec.path = path;
  auto log = AccessLog::open(spec);
  EventLoop loop;
  auto sink = std::make_unique<AccessLogSink>(**log, loop);
  Exchange x = request("GET", "/before", 200, 1);
  sink->http("web", SocketAddress(), x, 200, 1, "app", "s1");
  sink->flush();
  for (int i = 0; i < 200 && lines_of(path).empty(); ++i) usleep(10000);
  ASSERT_EQ(lines_of(path).size(), 1u);
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  (*log)->reopen();
  for (int i = 0; i < 200 && (*log)->reopens() == 0; ++i) usleep(10000);
  EXPECT_EQ((*log)->reopens(), 1u);
  x = request("GET", "/after", 200, 1);
  sink->http("web", SocketAddress(), x, 200, 1, "app", "s1");
  sink.reset();
  log->reset();
  auto before = lines_of(path + ".1"), after = lines_of(path);
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(before[0].find("/before"), std::string::npos);
  EXPECT_NE(after[0].find("/after"), std::string::npos);
}

TEST(AccessLogTest, QuietSinkFlushesOnItsTimer) {
  std::string dir = temp_dir(), path = dir + "/access.log";
  config::AccessLog spec;
  spec.path = path;
  auto log = AccessLog::open(spec);
  EventLoop loop;
  AccessLogSink sink(**log, loop);
  Exchange x = request("GET", "/quiet", 200, 1);
  sink.http("web", SocketAddress(), x, 200, 1, "app", "s1");
  for (int i = 0; i < 100 && lines_of(path).empty(); ++i) loop.run_once(Millis(20));
  EXPECT_EQ(lines_of(path).size(), 1u);
  EXPECT_EQ((*log)->lines(), 1u);
}

}  // namespace
}  // namespace fulcrum::metrics
