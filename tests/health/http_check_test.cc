#include <gtest/gtest.h>

#include "health/kinds.h"
#include "health/probe_util.h"

namespace fulcrum::health {
namespace {

using testing::backend_spec;
using testing::HttpServer;
using testing::run_probe;

std::string response(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n" + extra + "\r\n" + body;
}

struct Case {
  std::string check = "http";
  std::string path = "/health";
  std::string host;
  std::vector<int> expect_status{200};
  std::string expect_body;
};

Outcome check_once(HttpServer& server, const Case& c, Millis timeout = Millis(1000)) {
  auto spec = backend_spec("http", {server.address()});
  spec.health.path = c.path;
  spec.health.host = c.host;
  spec.health.expect_status = c.expect_status;
  spec.health.expect_body = c.expect_body;
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_http_check(b, loop);
  return run_probe(*check, loop, *b.servers()[0], timeout);
}

TEST(HttpCheckTest, SendsAStrictRequestAndPassesOn200) {
  HttpServer s([](const std::string&) { return HttpServer::Answer{response(200, "OK\n")}; });
  Case c;
  c.host = "app.internal";
  Outcome o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "HTTP 200");
  ASSERT_EQ(s.heads().size(), 1u);
  EXPECT_EQ(
      s.heads()[0],
      "GET /health HTTP/1.1\r\nHost: app.internal\r\nConnection: close\r\nUser-Agent: fulcrum-health\r\n"
      "Accept: */*\r\n\r\n");
}

TEST(HttpCheckTest, HostDefaultsToTheServerAddress) {
  HttpServer s([](const std::string&) { return HttpServer::Answer{response(200, "")}; });
  EXPECT_TRUE(check_once(s, Case{}).passed());
  EXPECT_NE(s.heads()[0].find("\r\nHost: " + s.address() + "\r\n"), std::string::npos) << s.heads()[0];
}

TEST(HttpCheckTest, UnexpectedStatusFails) {
  HttpServer s([](const std::string&) { return HttpServer::Answer{response(503, "busy\n")}; });
  Outcome o = check_once(s, Case{});
  EXPECT_EQ(o.reason, Reason::kL7Status);
  EXPECT_EQ(o.detail, "HTTP 503");
  EXPECT_STREQ(reason_code(o.reason), "L7STS");
}

TEST(HttpCheckTest, StatusSetIsHonoured) {
  HttpServer s([](const std::string&) { return HttpServer::Answer{response(204, "")}; });
  Case c;
  c.expect_status = {200, 204};
  EXPECT_TRUE(check_once(s, c).passed());
  c.expect_status = {200};
  EXPECT_EQ(check_once(s, c).reason, Reason::kL7Status);
}

TEST(HttpCheckTest, BodyMustContainTheExpectedText) {
  HttpServer s([](const std::string& head) {
    if (head.find("/good") != std::string::npos)
      return HttpServer::Answer{response(200, "{\"status\":\"UP\"}")};
    return HttpServer::Answer{response(200, "{\"status\":\"DOWN\"}")};
  });
  Case c;
  c.expect_body = "\"status\":\"UP\"";
  c.path = "/good";
  EXPECT_EQ(check_once(s, c).reason, Reason::kPass);
  c.path = "/bad";
  Outcome o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kL7Body);
  EXPECT_EQ(o.detail, "body lacks \"\"status\":\"UP\"\"");
}

TEST(HttpCheckTest, BodyIsFoundAcrossReadsChunksAndWithoutLength) {
  std::string chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n4\r\n, UP\r\n"
      "6\r\n there\r\n0\r\n\r\n";
  std::string eof_body = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall systems UP";
  HttpServer s([&](const std::string& head) {
    if (head.find("/chunked") != std::string::npos) return HttpServer::Answer{chunked, false, 60};
    if (head.find("/eof") != std::string::npos) return HttpServer::Answer{eof_body, false, 40};
    return HttpServer::Answer{response(200, "xxxxxxxxxxxxxxxxxxxxUP"), false, 60};
  });
  Case c;
  c.expect_body = "o, UP t";  // spans two chunks: found only in the decoded body
  c.path = "/chunked";
  EXPECT_EQ(check_once(s, c).reason, Reason::kPass);
  c.expect_body = "UP";
  c.path = "/eof";
  EXPECT_EQ(check_once(s, c).reason, Reason::kPass);
  c.path = "/length";
  EXPECT_EQ(check_once(s, c).reason, Reason::kPass);
  c.expect_body = "DOWN";
  c.path = "/chunked";
  EXPECT_EQ(check_once(s, c).reason, Reason::kL7Body);
}

TEST(HttpCheckTest, ServerThatNeverAnswersTimesOutAtLayer7) {
  HttpServer s([](const std::string&) { return HttpServer::Answer{"", true}; });
  Outcome o = check_once(s, Case{}, Millis(200));
  EXPECT_EQ(o.reason, Reason::kL7Timeout);
  EXPECT_EQ(o.detail, "timeout after 200ms");
}

TEST(HttpCheckTest, GarbageAndEarlyCloseAreBadResponses) {
  HttpServer s([](const std::string& head) {
    if (head.find("/garbage") != std::string::npos) return HttpServer::Answer{"SSH-2.0-OpenSSH_9.2\r\n"};
    if (head.find("/short") != std::string::npos) return HttpServer::Answer{"HTTP/1.1 200 OK\r\nContent-"};
    return HttpServer::Answer{""};  // closes at once
  });
  Case c;
  c.path = "/garbage";
  Outcome o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_NE(o.detail.find("not an HTTP status line"), std::string::npos) << o.detail;
  c.path = "/close";
  o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_EQ(o.detail, "connection closed without a response");
  c.path = "/short";
  c.expect_body = "UP";
  o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kL7Bad) << o.detail;
}

TEST(HttpCheckTest, BodyIsSearchedInItsFirst64KiBOnly) {
  std::string big(100 * 1024, 'x');
  big += "UP";
  HttpServer s([&](const std::string&) { return HttpServer::Answer{response(200, big)}; });
  Case c;
  c.expect_body = "UP";
  Outcome o = check_once(s, c);
  EXPECT_EQ(o.reason, Reason::kL7Body);
  EXPECT_NE(o.detail.find("first 64 KiB"), std::string::npos) << o.detail;
}

TEST(HttpCheckTest, ClosedPortIsRefusedAtLayer4) {
  auto spec = backend_spec("http", {testing::closed_address()});
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_http_check(b, loop);
  EXPECT_EQ(run_probe(*check, loop, *b.servers()[0], Millis(1000)).reason, Reason::kL4Refused);
}

// A backend with `tls:`: the check speaks TLS, so a server that does not fails at layer 6. (A
// passing TLS check needs certificates: tests/integration/test_https.py covers it.)
TEST(HttpCheckTest, TlsBackendAgainstAPlainServerFailsTheHandshake) {
  testing::Listener l;
  std::thread server([&] {
    pollfd p{l.fd.get(), POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) return;
    Fd c(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    std::this_thread::sleep_for(Millis(100));
  });
  auto spec = backend_spec("http", {l.address()});
  spec.tls = config::BackendTls{};
  spec.tls->verify = false;
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_http_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(1000));
  server.join();
  EXPECT_EQ(o.reason, Reason::kL6Error) << o.detail;
  EXPECT_EQ(o.detail.rfind("tls handshake: ", 0), 0u) << o.detail;
}

TEST(HttpCheckTest, TlsHandshakeWithASilentServerTimesOutAtLayer6) {
  testing::Listener l;  // the kernel completes the connect; nobody answers the ClientHello
  auto spec = backend_spec("http", {l.address()});
  spec.tls = config::BackendTls{};
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_http_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(200));
  EXPECT_EQ(o.reason, Reason::kL6Timeout) << o.detail;
  EXPECT_EQ(o.detail, "timeout after 200ms in the tls handshake");
}

TEST(HttpCheckTest, TlsWithAnUnreadableCaFailsLocally) {
  testing::Listener l;
  auto spec = backend_spec("http", {l.address()});
  spec.tls = config::BackendTls{};
  spec.tls->ca = "/nonexistent/ca.pem";
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_http_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(200));
  EXPECT_EQ(o.reason, Reason::kLocalError) << o.detail;
  EXPECT_NE(o.detail.find("/nonexistent/ca.pem"), std::string::npos) << o.detail;
}

}  // namespace
}  // namespace fulcrum::health
