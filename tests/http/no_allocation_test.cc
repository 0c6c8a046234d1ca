// The HTTP/1 codec allocates nothing (STYLE 8): a thousand keep-alive requests and responses,
// heads fed in pieces and chunked bodies decoded, with global operator new replaced in this test
// binary by a counting pass-through to malloc. Other allocation tests of tests/http belong in this
// file too: a binary can replace operator new only once.
// GCC sees operator delete's free() inlined against a `new` expression and warns; here new is
// malloc underneath, so the pair does match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "http/chunked.h"
#include "http/h1_parser.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// ASan brings its own operator new and checks that frees match it; counting is for plain builds.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCounting = false;
#else
constexpr bool kCounting = true;
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

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

  long before = g_allocations.load();
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
  EXPECT_EQ(g_allocations.load() - before, 0);
  EXPECT_EQ(body_bytes, 11000u);
  EXPECT_EQ(heads, 1000u);
}

}  // namespace
}  // namespace fulcrum::http
