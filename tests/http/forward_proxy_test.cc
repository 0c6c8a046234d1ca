// Tests src/http/forward_proxy.cc: what admit() refuses and why (counted reasons), origins for
// literals at once and for names through the resolver thread and its cache, one Server per
// address and port, and cancel().
#include "http/forward_proxy.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>

#include "core/buffer.h"
#include "http/upstream_pool.h"

namespace fulcrum::http {
namespace {

struct Waiter final : OriginWaiter {
  int calls = 0;
  upstream::Server* origin = nullptr;
  int status = -1;
  void on_origin(upstream::Server* o, int s) override {
    ++calls;
    origin = o;
    status = s;
  }
};

class ForwardProxyTest : public ::testing::Test {
 protected:
  ForwardProxyTest() : pool_(loop_, buffers_) {
    spec_.name = "egress";
    spec_.protocol = config::Protocol::kForwardProxy;
    config::Acl acl;
    acl.deny = {"*.blocked.example", "ads.example.com"};
    acl.allow_ports = {443};
    spec_.acl = acl;
    proxy_ = std::make_unique<ForwardProxy>(loop_, pool_, spec_);
  }

  // admit() on a parsed request head; the status (0: admitted).
  int admit(std::string_view raw, ForwardTarget* t, metrics::Refusal* why = nullptr) {
    RequestHead head;
    ParseResult r = parse_request(raw, fields_, &head);
    EXPECT_TRUE(r.done()) << raw;
    metrics::Exchange x;
    int status = proxy_->admit(head, "192.0.2.1", x, t);
    if (why) *why = x.refusal;
    return status;
  }

  void run_until(const Waiter& w) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (w.calls == 0 && std::chrono::steady_clock::now() < deadline) loop_.run_once(Millis(20));
  }

  EventLoop loop_;
  BufferPool buffers_;
  UpstreamPool pool_;
  config::Listener spec_;
  std::unique_ptr<ForwardProxy> proxy_;
  std::array<Header, 32> fields_;
};

TEST_F(ForwardProxyTest, AdmitsAbsoluteUrisAndConnect) {
  ForwardTarget t;
  EXPECT_EQ(admit("GET http://Example.COM./x HTTP/1.1\r\nHost: example.com\r\n\r\n", &t), 0);
  EXPECT_EQ(t.host(), "example.com");  // lower case, final dot gone: one cache entry
  EXPECT_EQ(t.port, 80);
  EXPECT_FALSE(t.tunnel);
  EXPECT_EQ(admit("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", &t), 0);
  EXPECT_EQ(t.host(), "::1");
  EXPECT_EQ(t.kind, Authority::Kind::kIpv6);
  EXPECT_TRUE(t.tunnel);
}

TEST_F(ForwardProxyTest, RefusalsHaveReasons) {
  ForwardTarget t;
  metrics::Refusal why;
  EXPECT_EQ(admit("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", &t, &why), 400);
  EXPECT_EQ(why, metrics::Refusal::kParseError);
  EXPECT_EQ(admit("GET http://a.blocked.example/ HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 403);
  EXPECT_EQ(why, metrics::Refusal::kAclDenied);
  EXPECT_EQ(admit("CONNECT ads.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 403);
  EXPECT_EQ(why, metrics::Refusal::kAclDenied);
  EXPECT_EQ(admit("CONNECT example.com:22 HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 403);
  EXPECT_EQ(why, metrics::Refusal::kPortDenied);
  // allow_ports limits CONNECT only.
  EXPECT_EQ(admit("GET http://example.com:22/ HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 0);
  EXPECT_EQ(admit("GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 501);
  EXPECT_EQ(why, metrics::Refusal::kNotImplemented);
  EXPECT_EQ(admit("GET http://user@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 400);
  EXPECT_EQ(admit("GET http://example.com:0/ HTTP/1.1\r\nHost: x\r\n\r\n", &t, &why), 400);
}

TEST_F(ForwardProxyTest, LiteralsNeedNoLookupAndShareAServerPerAddressAndPort) {
  ForwardTarget t;
  Waiter w;
  int status = -1;
  ASSERT_EQ(admit("GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  upstream::Server* a = proxy_->origin(t, &w, &status);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->address().to_string(), "127.0.0.1:8080");
  EXPECT_EQ(proxy_->origin(t, &w, &status), a);
  ASSERT_EQ(admit("GET http://127.0.0.1:8081/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  EXPECT_NE(proxy_->origin(t, &w, &status), a);
  ASSERT_EQ(admit("GET http://[::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  upstream::Server* six = proxy_->origin(t, &w, &status);
  ASSERT_NE(six, nullptr);
  EXPECT_EQ(six->address().to_string(), "[::1]:8080");
  EXPECT_EQ(proxy_->origins(), 3u);
  EXPECT_EQ(w.calls, 0);
}

TEST_F(ForwardProxyTest, NamesResolveOnTheResolverThreadAndAreCached) {
  ForwardTarget t;
  Waiter w;
  int status = -1;
  ASSERT_EQ(admit("GET http://localhost:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  EXPECT_EQ(proxy_->origin(t, &w, &status), nullptr);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(w.calls, 0);  // never from inside origin()
  run_until(w);
  ASSERT_EQ(w.calls, 1);
  ASSERT_NE(w.origin, nullptr);
  EXPECT_EQ(w.origin->address().port(), 8080);
  // Cached now: at once, and the same Server as for the address itself.
  Waiter w2;
  EXPECT_EQ(proxy_->origin(t, &w2, &status), w.origin);
  ForwardTarget lit;
  ASSERT_EQ(
      admit(w.origin->address().family() == AF_INET ? "GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: x\r\n\r\n"
                                                    : "GET http://[::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n",
            &lit),
      0);
  EXPECT_EQ(proxy_->origin(lit, &w2, &status), w.origin);
  EXPECT_EQ(w2.calls, 0);
}

TEST_F(ForwardProxyTest, UnresolvableIs502AndCachedBriefly) {
  ForwardTarget t;
  Waiter w;
  int status = -1;
  ASSERT_EQ(admit("GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  EXPECT_EQ(proxy_->origin(t, &w, &status), nullptr);
  run_until(w);
  ASSERT_EQ(w.calls, 1);
  EXPECT_EQ(w.origin, nullptr);
  EXPECT_EQ(w.status, 502);
  Waiter w2;
  EXPECT_EQ(proxy_->origin(t, &w2, &status), nullptr);
  EXPECT_EQ(status, 502);
  EXPECT_EQ(w2.calls, 0);
}

TEST_F(ForwardProxyTest, CancelledWaitersAreNotTold) {
  ForwardTarget t;
  Waiter gone, stays;
  int status = -1;
  ASSERT_EQ(admit("GET http://localhost:9/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  EXPECT_EQ(proxy_->origin(t, &gone, &status), nullptr);
  EXPECT_EQ(proxy_->origin(t, &stays, &status), nullptr);  // joins the same lookup
  proxy_->cancel(&gone);
  run_until(stays);
  EXPECT_EQ(stays.calls, 1);
  EXPECT_EQ(gone.calls, 0);
}

TEST_F(ForwardProxyTest, ARefusedAddressMovesOnToTheNameNextOne) {
  proxy_->on_resolved("dual.test", {*SocketAddress::parse("127.0.0.1:0"), *SocketAddress::parse("[::1]:0")},
                      0);
  ForwardTarget t;
  Waiter w;
  int status = -1;
  ASSERT_EQ(admit("GET http://dual.test:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  upstream::Server* v4 = proxy_->origin(t, &w, &status);
  ASSERT_NE(v4, nullptr);
  EXPECT_EQ(v4->address().to_string(), "127.0.0.1:8080");
  upstream::Server* v6 = proxy_->next_origin(t, *v4);
  ASSERT_NE(v6, nullptr);
  EXPECT_EQ(v6->address().to_string(), "[::1]:8080");
  EXPECT_EQ(proxy_->next_origin(t, *v6), nullptr);  // the last one
  ForwardTarget lit;
  ASSERT_EQ(admit("GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", &lit), 0);
  EXPECT_EQ(proxy_->next_origin(lit, *v4), nullptr);  // a literal has one address
}

TEST_F(ForwardProxyTest, GoesAtOnceWhileALookupIsUnderWay) {
  ForwardTarget t;
  Waiter w;
  int status = -1;
  ASSERT_EQ(admit("GET http://localhost:9/ HTTP/1.1\r\nHost: x\r\n\r\n", &t), 0);
  EXPECT_EQ(proxy_->origin(t, &w, &status), nullptr);
  proxy_.reset();  // a reload or stop: never waits for the resolver thread
  // Its answer, if it comes, finds nobody and is dropped.
  for (int i = 0; i < 10; ++i) loop_.run_once(Millis(20));
  EXPECT_EQ(w.calls, 0);
}

}  // namespace
}  // namespace fulcrum::http
