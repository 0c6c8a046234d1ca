// The HTTP/1 codec allocates nothing (STYLE 8): a thousand keep-alive requests and responses,
// heads fed in pieces and chunked bodies decoded, with global operator new replaced in this test
// binary by a counting pass-through to malloc. Other allocation tests of tests/http belong in this
// file too: a binary can replace operator new only once.
// GCC sees operator delete's free() inlined against a `new` expression and warns; here new is
// malloc underneath, so the pair does match.

#include <gtest/gtest.h>

#include "support/alloc_counter.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "http/chunked.h"
#include "http/h1_parser.h"


constexpr bool kCounting = fulcrum::test::kCountingAllocations;

namespace fulcrum::http {
namespace {

TEST(HttpNoAllocationTest, KeepAliveRequestsResponsesAndChunkedBodies) {
  if (!kCounting) GTEST_SKIP() << "allocation counting is off under ASan";
  // All buffers exist before counting starts, as a worker's pooled buffers would.
  const std::string requests =
      "POST /api/items?x=1 HTTP/1.1\r\nHost: app.example:8080\r\nUser-Agent: bench/1.0\r\n"
      "Accept: application/json\r\nCookie: session=abc; beta=1\r\nConnection: keep-alive, X-Trace\r\n"
      "X-Trace: 1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
      "5;ext=\"v\"\r\nhello\r\n6\r\n world\r\n0\r\nChecksum: 1\r\n\r\n";
  const std::string response =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nSet-Cookie: a=b\r\n\r\n";
  std::array<Header, 100> fields;
  RequestHead req;
  ResponseHead resp;
  RequestParser request_parser;
  ResponseParser response_parser;
  ChunkedDecoder decoder;
  uint64_t body_bytes = 0, heads = 0;

  long before = fulcrum::test::allocations();
  for (int i = 0; i < 1000; ++i) {
    request_parser.reset();
    decoder.reset();
    std::string_view in = requests;
    // The head arrives in three reads.
    ParseResult r;
    for (size_t end : {size_t{20}, size_t{150}, in.size()}) {
      r = request_parser.parse(in.substr(0, end), fields, &req);
      if (!r.need_more()) break;
    }
    ASSERT_TRUE(r.done());
    heads += must_strip(req, req.headers[5]) ? 1 : 0;
    std::string_view body = in.substr(r.consumed);
    while (!body.empty()) {
      ChunkStep s = decoder.decode(body);
      body.remove_prefix(s.consumed);
      if (s.event == ChunkEvent::kData) body_bytes += s.bytes.size();
      if (s.event == ChunkEvent::kDone || s.event == ChunkEvent::kError) break;
    }
    ASSERT_TRUE(decoder.done());
    response_parser.reset();
    ASSERT_TRUE(response_parser.parse(response, fields, &resp, req.method).done());
  }
  EXPECT_EQ(fulcrum::test::allocations() - before, 0);
  EXPECT_EQ(body_bytes, 11000u);
  EXPECT_EQ(heads, 1000u);
}

}  // namespace
}  // namespace fulcrum::http

// ---- the proxy (src/http/proxy.cc) ------------------------------------------------------------
// A thousand keep-alive requests of several shapes through a real HttpListener on loopback, one
// pipelined batch in five: routed (prefix, regex, host, methods, headers, query), balanced by each
// algorithm, forwarded on pooled upstream connections and answered. After a warm-up (buffers and
// pooled connections made, balancers built) the proxy must allocate nothing.

#include "http/proxy_harness.h"

namespace fulcrum::http {
namespace {

constexpr std::string_view kProxyRequests[] = {
    "GET /api/items?id=7 HTTP/1.1\r\nHost: shop.example\r\nX-User: u1\r\nCookie: S=x; theme=dark\r\n"
    "User-Agent: t/1\r\n\r\n",
    "POST /api/items HTTP/1.1\r\nHost: shop.example\r\nX-User: u2\r\nContent-Length: 5\r\n"
    "Expect: 100-continue\r\n\r\nhello",
    "PUT /upload?id=8 HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n"
    "X-Forwarded-For: 203.0.113.9\r\nVia: 1.1 edge\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
    "GET /chunked/page.png HTTP/1.1\r\nHost: img.example:8080\r\nConnection: keep-alive, X-Trace\r\n"
    "X-Trace: 1\r\nKeep-Alive: timeout=5\r\n\r\n",
};

struct ProxyCase {
  const char* name;
  const char* backend;  // YAML lines of the backend after its name
};

const ProxyCase kProxyCases[] = {
    {"round_robin", "balance: round_robin"},
    {"least_conn", "balance: least_conn"},
    {"least_time", "balance: least_time"},
    {"random", "balance: random"},
    {"ip_hash", "balance: ip_hash"},
    {"hash_header", "balance: hash\n    hash_key: header:X-User"},
    {"hash_path", "balance: hash\n    hash_key: path"},
    {"sticky", "balance: round_robin\n    sticky: { cookie: S }"},
};

std::string proxy_config(const ProxyCase& c) {
  return std::string(R"(workers: 1
listeners:
  - name: web
    bind: 127.0.0.1:1
    protocol: http
    routes:
      - match: { host: img.example, path_regex: '\.(png|jpg)$' }
        backend: app
      - match: { path_prefix: /api/, methods: [GET, POST], headers: { X-User: u1 } }
        backend: app
      - match: { query: { id: "8" } }
        backend: app
      - backend: app
backends:
  - name: app
    )") + c.backend + R"(
    servers:
      - { name: a, address: 127.0.0.1:{PORT0} }
      - { name: b, address: 127.0.0.1:{PORT1} }
)";
}

class ProxyNoAllocationTest : public ::testing::TestWithParam<ProxyCase> {};

TEST_P(ProxyNoAllocationTest, ThousandKeepAliveRequestsThroughHttpListener) {
  // Under ASan the traffic still runs (memory errors show), only the counts are not checked.
  testing::TinyBackend a, b;
  testing::ProxyUnderTest proxy(proxy_config(GetParam()), {&a, &b});
  ASSERT_TRUE(proxy.error.empty()) << proxy.error;
  testing::TinyClient client(proxy.port);
  std::string batch;
  for (auto r : kProxyRequests) batch += r;

  size_t sent = 0, ok = 0;
  auto round = [&](size_t i) {
    if (i % 5 == 4) {  // four requests in one write, answered in order
      if (!client.send(batch)) return false;
      sent += 4;
    } else {
      if (!client.send(kProxyRequests[i % 4])) return false;
      sent += 1;
    }
    return proxy.run_until([&] {
      while (ok < sent && client.response_done()) ok += client.status() == 200 ? 1 : 1000000;
      return ok >= sent || client.closed();
    }) && ok == sent;
  };
  long start = fulcrum::test::allocations();
  for (size_t i = 0; i < 100; ++i) ASSERT_TRUE(round(i)) << "warm-up round " << i;
  long before = fulcrum::test::allocations();
  if (kCounting) {
    EXPECT_GT(before - start, 0) << "the counter sees the warm-up (connections, buffers)";
  }
  for (size_t i = 0; i < 1000; ++i) ASSERT_TRUE(round(i)) << "round " << i;
  long allocations = fulcrum::test::allocations() - before;
  if (kCounting) {
    EXPECT_EQ(allocations, 0) << "allocations over " << (sent - 160) << " requests";
  }
  EXPECT_EQ(a.requests() + b.requests(), sent);
  EXPECT_GE(sent - 160, 1000u);
  // One upstream connection per server, reused for everything (the first request to each opens it).
  EXPECT_LE(a.connections() + b.connections(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Balancers, ProxyNoAllocationTest, ::testing::ValuesIn(kProxyCases),
                         [](const ::testing::TestParamInfo<ProxyCase>& info) { return info.param.name; });

}  // namespace
}  // namespace fulcrum::http

// ---- cache hits (src/cache/) ------------------------------------------------------------------
// Hits, HEAD from a GET entry, a 304 to a conditional request and a Vary-free query key, a
// thousand times on a keep-alive connection: after the first misses filled the store, a hit takes
// a shared_ptr copy and writes from the entry, and allocates nothing.

namespace fulcrum::http {
namespace {

constexpr std::string_view kCacheRequests[] = {
    "GET /a HTTP/1.1\r\nHost: Shop.Example\r\nUser-Agent: t/1\r\n\r\n",
    "GET /b?x=1 HTTP/1.1\r\nHost: shop.example\r\nAccept-Encoding: gzip\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: shop.example\r\nIf-None-Match: \"nope\", \"x\"\r\n\r\n",
    "GET /chunked/c HTTP/1.1\r\nHost: shop.example\r\n\r\n",
};

TEST(CacheNoAllocationTest, ThousandHitsOnKeepAlive) {
  testing::TinyBackend a;
  testing::ProxyUnderTest proxy(R"(workers: 1
listeners:
  - name: web
    bind: 127.0.0.1:1
    protocol: http
    routes:
      - backend: app
        cache: { size: 1MiB, default_ttl: 60s }
backends:
  - name: app
    servers:
      - { name: a, address: 127.0.0.1:{PORT0} }
)",
                                {&a});
  ASSERT_TRUE(proxy.error.empty()) << proxy.error;
  testing::TinyClient client(proxy.port);
  size_t sent = 0, ok = 0;
  auto round = [&](size_t i) {
    if (!client.send(kCacheRequests[i % 4])) return false;
    ++sent;
    return proxy.run_until([&] {
      while (ok < sent && client.response_done()) ok += client.status() == 200 ? 1 : 1000000;
      return ok >= sent || client.closed();
    }) && ok == sent;
  };
  for (size_t i = 0; i < 100; ++i) ASSERT_TRUE(round(i)) << "warm-up round " << i;
  EXPECT_EQ(a.requests(), 3u);  // /a, /b?x=1 and /chunked/c once each; the rest are hits
  long before = fulcrum::test::allocations();
  for (size_t i = 0; i < 1000; ++i) ASSERT_TRUE(round(i)) << "round " << i;
  long allocations = fulcrum::test::allocations() - before;
  if (kCounting) {
    EXPECT_EQ(allocations, 0) << "allocations over 1000 cache hits";
  }
  EXPECT_EQ(a.requests(), 3u);
}

}  // namespace
}  // namespace fulcrum::http
