// src/admin/admin_server.cc on a loopback socket: routing, the bearer token, PATCH validation
// and its effect on the shared server state, and the JSON views. The server runs on a loop thread
// of the test; requests are plain blocking sockets.
#include "admin/admin_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/socket.h"
#include "metrics/metrics.h"
#include "upstream/server.h"

namespace fulcrum::admin {
namespace {

struct Reply {
  int status = 0;
  std::string head;
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

Reply call(const SocketAddress& addr, const std::string& method, const std::string& path,
           const std::string& body = "", const std::string& extra = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  Reply r;
  if (::connect(fd, addr.sa(), addr.len()) != 0) {
    ::close(fd);
    return r;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n" + extra;
  if (!body.empty() || method == "PATCH" || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string all;
  char buf[65536];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) all.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto end = all.find("\r\n\r\n");
  if (all.size() < 12 || end == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.head = all.substr(0, end);
  r.body = all.substr(end + 4);
  return r;
}

config::Backend make_backend() {
  config::Backend b;
  b.name = "app";
  b.health.check = "none";
  for (int i = 0; i < 2; ++i) {
    config::Server s;
    s.name = "s" + std::to_string(i + 1);
    s.address = *SocketAddress::parse("127.0.0.1:" + std::to_string(9100 + i));
    s.address_text = s.address.to_string();
    s.weight = 2;
    b.servers.push_back(s);
  }
  return b;
}

class AdminServerTest : public ::testing::Test {
 protected:
  void start(const std::string& token = "", ReloadHook reload = {}) {
    backends_.push_back(std::make_unique<upstream::Backend>(make_backend()));
    registry_.add_worker();
    admin_ =
        std::make_unique<AdminServer>(loop_, Sources{&backends_, &registry_, nullptr}, std::move(reload));
    config::Admin spec;
    spec.listen = *SocketAddress::parse("127.0.0.1:0");
    if (!token.empty()) {
      char tmpl[] = "/tmp/fulcrum-admin-token-XXXXXX";
      int fd = mkstemp(tmpl);
      std::string text = token + "\r\nsecond line\n";
      ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
      ::close(fd);
      spec.token_file = tmpl;
      token_file_ = tmpl;
    }
    auto r = admin_->configure(spec);
    ASSERT_TRUE(r) << r.error().message;
    addr_ = admin_->local_address();
    thread_ = std::thread([this] { loop_.run(); });
  }
  void TearDown() override {
    loop_.stop();
    if (thread_.joinable()) thread_.join();
    admin_.reset();
    if (!token_file_.empty()) ::unlink(token_file_.c_str());
  }
  upstream::Server& server(const char* name) { return *backends_[0]->find(name); }

  EventLoop loop_;
  std::vector<std::unique_ptr<upstream::Backend>> backends_;
  metrics::Registry registry_;
  std::unique_ptr<AdminServer> admin_;
  std::thread thread_;
  SocketAddress addr_;
  std::string token_file_;
};

TEST(ConstantTimeTest, Equality) {
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_TRUE(constant_time_equals("abc", "abc"));
  EXPECT_FALSE(constant_time_equals("abc", "abd"));
  EXPECT_FALSE(constant_time_equals("abc", "ab"));
  EXPECT_FALSE(constant_time_equals("ab", "abc"));
  EXPECT_FALSE(constant_time_equals("", "a"));
  EXPECT_FALSE(constant_time_equals(std::string("a\0", 2), "a"));
}

TEST_F(AdminServerTest, ProbesPageAndUnknownPaths) {
  start();
  Reply h = call(addr_, "GET", "/healthz");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "OK\n");
  EXPECT_EQ(call(addr_, "POST", "/healthz").status, 405);
  Reply page = call(addr_, "GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.head.find("text/html"), std::string::npos);
  EXPECT_NE(page.head.find("Content-Security-Policy"), std::string::npos);
  EXPECT_NE(page.body.find("/app.js"), std::string::npos);
  EXPECT_EQ(call(addr_, "GET", "/app.js").status, 200);
  EXPECT_EQ(call(addr_, "GET", "/style.css").status, 200);
  EXPECT_EQ(call(addr_, "GET", "/nope").status, 404);
  Reply m = call(addr_, "GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.head.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(m.body.find("fulcrum_server_weight{backend=\"app\",server=\"s1\"} 2"), std::string::npos);
  admin_->set_stopping();
  EXPECT_EQ(call(addr_, "GET", "/healthz").status, 503);
}

TEST_F(AdminServerTest, BackendsJson) {
  start();
  Reply r = call(addr_, "GET", "/api/v1/backends");
  ASSERT_EQ(r.status, 200);
  auto j = r.json();
  ASSERT_TRUE(j["backends"].is_array());
  auto& s1 = j["backends"][0]["servers"][0];
  EXPECT_EQ(s1["name"], "s1");
  EXPECT_EQ(s1["address"], "127.0.0.1:9100");
  EXPECT_EQ(s1["state"], "up");  // no health check: up from the start
  EXPECT_EQ(s1["weight"], 2);
  EXPECT_EQ(s1["active"], 0);
  EXPECT_EQ(s1["requests"], 0);
  EXPECT_TRUE(s1["last_check"].is_null());
  EXPECT_TRUE(s1.contains("reported_load"));
  EXPECT_EQ(s1["effective_weight"], 2);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends/app").json()["name"], "app");
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends/app/servers").json().size(), 2u);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends/app/servers/s2").json()["name"], "s2");
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends/zzz").status, 404);
  auto stats = call(addr_, "GET", "/api/v1/stats?since=0").json();
  EXPECT_TRUE(stats["points"].is_array());
  EXPECT_EQ(stats["backends"][0]["servers"].size(), 2u);
}

TEST_F(AdminServerTest, PatchChangesTheSharedStateOrNothing) {
  start();
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", R"({"state":"drain"})").json()["state"],
            "drain");
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kDrain);
  EXPECT_EQ(
      call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", R"({"state":"disabled","weight":7})").status,
      200);
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kDisabled);
  EXPECT_EQ(server("s1").base_weight(), 7u);
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", R"({"state":"up"})").json()["state"],
            "up");
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kNone);
  // Each refusal leaves everything as it was, even the valid half of a request.
  for (const char* bad : {R"({"state":"up","weight":999})", R"({"weight":2,"state":"gone"})", "[1]", "{", "",
                          R"({"weight":"3"})", R"({"state":null})", R"({"extra":1})", "{}"}) {
    Reply r = call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_TRUE(r.json().contains("error")) << bad;
  }
  EXPECT_EQ(server("s1").base_weight(), 7u);
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kNone);
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/app/servers/s9", R"({"state":"up"})").status, 404);
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/b9/servers/s1", R"({"state":"up"})").status, 404);
  // The change is in the events the dashboard lists.
  auto events = call(addr_, "GET", "/api/v1/stats").json()["events"];
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0]["from"], "up");
  EXPECT_EQ(events[0]["to"], "drain");
}

TEST_F(AdminServerTest, TokenGuardsTheApi) {
  start("t0ken");
  EXPECT_EQ(call(addr_, "GET", "/healthz").status, 200);
  EXPECT_EQ(call(addr_, "GET", "/metrics").status, 200);
  EXPECT_EQ(call(addr_, "GET", "/").status, 200);
  Reply no = call(addr_, "GET", "/api/v1/backends");
  EXPECT_EQ(no.status, 401);
  EXPECT_NE(no.head.find("WWW-Authenticate: Bearer"), std::string::npos);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends", "", "Authorization: Bearer t0ke\r\n").status, 401);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends", "", "Authorization: Bearer t0ken2\r\n").status, 401);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends", "", "Authorization: t0ken\r\n").status, 401);
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", R"({"state":"drain"})").status, 401);
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kNone);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/backends", "", "Authorization: Bearer t0ken\r\n").status, 200);
  EXPECT_EQ(call(addr_, "PATCH", "/api/v1/backends/app/servers/s1", R"({"state":"drain"})",
                 "Authorization: Bearer t0ken\r\n")
                .status,
            200);
  EXPECT_EQ(server("s1").admin(), upstream::Admin::kDrain);
}

TEST_F(AdminServerTest, ReloadHook) {
  int calls = 0;
  start("", [&calls] {
    ++calls;
    return std::make_pair(false, std::string("f.yaml:3:5: unknown backend 'x'"));
  });
  EXPECT_EQ(call(addr_, "GET", "/api/v1/reload").status, 405);
  Reply r = call(addr_, "POST", "/api/v1/reload");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["ok"], false);
  EXPECT_EQ(r.json()["error"], "f.yaml:3:5: unknown backend 'x'");
  EXPECT_EQ(calls, 1);
}

TEST_F(AdminServerTest, DemoHookMakesAnAppFailOrRecover) {
  start();
  EXPECT_EQ(call(addr_, "POST", "/api/v1/demo/app1/fail").status, 404);  // not the demo: no such API
  EXPECT_EQ(call(addr_, "GET", "/api/v1/stats").json()["demo"], false);
  std::vector<std::pair<std::string, bool>> calls;  // the hook runs on the admin loop's thread
  loop_.post([this, &calls] {
    admin_->set_demo_hook([&calls](const std::string& app, bool fail) {
      calls.emplace_back(app, fail);
      return app == "app1";
    });
  });
  for (int i = 0; i < 100 && !call(addr_, "GET", "/api/v1/stats").json()["demo"]; ++i) usleep(10000);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/stats").json()["demo"], true);
  EXPECT_EQ(call(addr_, "GET", "/api/v1/demo/app1/fail").status, 405);
  EXPECT_EQ(call(addr_, "POST", "/api/v1/demo/app1/explode").status, 404);
  Reply r = call(addr_, "POST", "/api/v1/demo/app1/fail");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["ok"], true);
  EXPECT_EQ(call(addr_, "POST", "/api/v1/demo/app1/recover").status, 200);
  EXPECT_EQ(call(addr_, "POST", "/api/v1/demo/nope/fail").status, 404);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], std::make_pair(std::string("app1"), true));
  EXPECT_EQ(calls[1], std::make_pair(std::string("app1"), false));
}

TEST_F(AdminServerTest, ReloadWithoutHookIs501) {
  start();
  EXPECT_EQ(call(addr_, "POST", "/api/v1/reload").status, 501);
}

TEST(AdminServerConfigTest, MissingOrEmptyTokenFileIsAnError) {
  EventLoop loop;
  std::vector<std::unique_ptr<upstream::Backend>> backends;
  metrics::Registry registry;
  AdminServer admin(loop, Sources{&backends, &registry, nullptr});
  config::Admin spec;
  spec.listen = *SocketAddress::parse("127.0.0.1:0");
  spec.token_file = "/nonexistent/admin.token";
  EXPECT_FALSE(admin.configure(spec));
  char tmpl[] = "/tmp/fulcrum-admin-empty-XXXXXX";
  int fd = mkstemp(tmpl);
  ::close(fd);
  spec.token_file = tmpl;
  auto r = admin.configure(spec);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("empty"), std::string::npos);
  ::unlink(tmpl);
}

}  // namespace
}  // namespace fulcrum::admin
