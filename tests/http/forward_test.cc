// Tests for src/http/forward.cc: what the proxy changes in the heads it forwards. Requests: hop-by-hop
// fields out, framing regenerated, X-Forwarded-* and Via added or appended to, the expectation we
// answer ourselves dropped. Responses: framing for 1.1 and 1.0 clients, other codings kept, the
// sticky cookie, the Connection field.
#include "http/forward.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace fulcrum::http {
namespace {

class ForwardTest : public ::testing::Test {
 protected:
  // The request as it would go upstream.
  std::string request(std::string_view raw, RequestForward f = {}) {
    RequestHead head;
    ParseResult r = parse_request(raw, fields_, &head);
    EXPECT_TRUE(r.done()) << raw;
    if (!r.done()) return "";
    if (f.path.empty()) {
      auto q = head.target.find('?');
      f.path = head.target.substr(0, q);
      f.has_query = q != std::string_view::npos;
      if (f.has_query) f.query = head.target.substr(q + 1);
    }
    if (f.host.empty()) f.host = head.host;
    if (f.client_ip.empty()) f.client_ip = "192.0.2.1";
    Buffer out(pool_);
    EXPECT_TRUE(write_request_head(out, head, f));
    return std::string(out.view());
  }
  std::string response(std::string_view raw, ResponseForward f = {}, Method m = Method::kGet) {
    ResponseHead head;
    ParseResult r = parse_response(raw, fields_, &head, m);
    EXPECT_TRUE(r.done()) << raw;
    if (!r.done()) return "";
    Buffer out(pool_);
    EXPECT_TRUE(head.informational() && head.status != 101 ? write_interim_head(out, head)
                                                           : write_response_head(out, head, f));
    return std::string(out.view());
  }

  BufferPool pool_;
  std::array<Header, 64> fields_;
};

TEST_F(ForwardTest, RequestGetsForwardingFields) {
  EXPECT_EQ(request("GET /a?b=1 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n"),
            "GET /a?b=1 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n"
            "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example\r\n"
            "Via: 1.1 fulcrum\r\n\r\n");
}

TEST_F(ForwardTest, ForwardedForAndViaAreAppendedToOthersReplaced) {
  RequestForward f;
  f.https = true;
  std::string out = request(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\nVia: 1.0 edge\r\n"
      "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: evil\r\n\r\n",
      f);
  EXPECT_NE(out.find("X-Forwarded-For: 203.0.113.7, 10.0.0.1, 10.0.0.2, 192.0.2.1\r\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("Via: 1.0 edge, 1.1 fulcrum\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("gopher"), std::string::npos) << out;
  EXPECT_EQ(out.find("evil"), std::string::npos) << out;
  EXPECT_EQ(out.find("X-Forwarded-For:", out.find("X-Forwarded-For:") + 1), std::string::npos) << out;
}

TEST_F(ForwardTest, HopByHopFieldsAreDropped) {
  std::string out = request(
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\n"
      "TE: trailers\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: x\r\nTrailer: X-Sum\r\n"
      "Upgrade: h2c\r\nX-Kept: 1\r\n\r\n");
  for (const char* gone : {"Connection", "X-Private", "Keep-Alive", "TE:", "Proxy-", "Trailer", "Upgrade"})
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << "\n" << out;
  EXPECT_NE(out.find("X-Kept: 1\r\n"), std::string::npos);
}

TEST_F(ForwardTest, FramingIsRegenerated) {
  std::string out = request("POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << out;
  // Repeated identical lengths become one field (some servers refuse repeats).
  out = request("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
  EXPECT_NE(out.find("Content-Length: 5\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("ength: 5", out.find("ength: 5") + 1), std::string::npos) << out;
  EXPECT_EQ(response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

TEST_F(ForwardTest, Http10WithoutHostGetsOneAndSaysSoInVia) {
  RequestForward f;
  f.path = "/";
  f.fallback_host = "10.0.0.5:8080";
  std::string out = request("GET / HTTP/1.0\r\n\r\n", f);
  EXPECT_EQ(out.substr(0, 16), "GET / HTTP/1.1\r\n");
  EXPECT_NE(out.find("Host: 10.0.0.5:8080\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Via: 1.0 fulcrum\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("X-Forwarded-Host"), std::string::npos) << out;
}

TEST_F(ForwardTest, AbsoluteFormAuthorityReplacesHost) {
  RequestForward f;
  f.path = "/x";
  f.host = "real.example";
  f.replace_host = true;
  std::string out = request("GET http://real.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n", f);
  EXPECT_EQ(out.substr(0, 17), "GET /x HTTP/1.1\r\n");
  EXPECT_NE(out.find("Host: real.example\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("other.example"), std::string::npos) << out;
}

TEST_F(ForwardTest, EmptyQueryIsKeptAndExpectationDroppedWhenOurs) {
  RequestForward f;
  f.strip_expect = true;
  std::string out =
      request("POST /a? HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", f);
  EXPECT_EQ(out.substr(0, 18), "POST /a? HTTP/1.1\r");
  EXPECT_EQ(out.find("Expect"), std::string::npos) << out;
  out = request("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_NE(out.find("Expect: 100-continue\r\n"), std::string::npos) << out;
}

TEST_F(ForwardTest, UpgradeIsPassedOnAsOne) {
  std::string out = request(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: "
      "k\r\n\r\n");
  EXPECT_NE(out.find("Connection: Upgrade\r\nUpgrade: websocket\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Sec-WebSocket-Key: k\r\n"), std::string::npos) << out;
}

TEST_F(ForwardTest, ResponseFramingForEachClient) {
  const char* chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
  EXPECT_EQ(response(chunked), "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  ResponseForward ten;
  ten.dechunk = true;
  ten.keep_alive = false;
  ten.client_http10 = true;
  EXPECT_EQ(response(chunked, ten), "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n");
  ResponseForward ten_ka;
  ten_ka.client_http10 = true;
  EXPECT_EQ(response("HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n", ten_ka),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
  // Other codings go on verbatim: we cannot undo them, the client must.
  EXPECT_EQ(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  // Content-Length stays; the backend's Connection and Keep-Alive do not.
  EXPECT_EQ(response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nKeep-Alive: 5\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

TEST_F(ForwardTest, StickyCookieAndUpgrade) {
  ResponseForward f;
  f.cookie_name = "SRV";
  f.cookie_value = "0123456789abcdef";
  EXPECT_EQ(response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: a=b\r\n\r\n", f),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: a=b\r\n"
            "Set-Cookie: SRV=0123456789abcdef; Path=/; HttpOnly\r\n\r\n");
  EXPECT_EQ(response("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
}

TEST_F(ForwardTest, InterimResponses) {
  EXPECT_EQ(response("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n");
  EXPECT_EQ(response("HTTP/1.1 100 Continue\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
}

}  // namespace
}  // namespace fulcrum::http
