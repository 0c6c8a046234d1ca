// Tests for src/http/h2_memory.cc, the allocator nghttp2 sessions use: contents survive realloc
// across size classes and into (and out of) large blocks, calloc zeroes, a freed small block is
// reused on the same thread, and a whole HTTP/2 session runs on it (nghttp2 client against
// server, both in memory).
#include "http/h2_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace fulcrum::http {
namespace {

TEST(H2MemoryTest, ReallocKeepsContentsAcrossClasses) {
  nghttp2_mem* m = h2_thread_memory();
  auto* p = static_cast<char*>(m->malloc(10, m->mem_user_data));
  std::memcpy(p, "0123456789", 10);
  for (size_t size : {31, 33, 100, 1024, 1025, 5000, 20000, 600, 10}) {
    p = static_cast<char*>(m->realloc(p, size, m->mem_user_data));
    ASSERT_NE(p, nullptr) << size;
    ASSERT_EQ(std::memcmp(p, "0123456789", 10), 0) << size;
    std::memset(p + 10, 'x', size - 10);  // the whole of it is usable
  }
  m->free(p, m->mem_user_data);
  m->free(nullptr, m->mem_user_data);
  void* fresh = m->realloc(nullptr, 0, m->mem_user_data);  // realloc of nothing: a new block
  EXPECT_NE(fresh, nullptr);
  m->free(fresh, m->mem_user_data);
}

TEST(H2MemoryTest, CallocZeroes) {
  nghttp2_mem* m = h2_thread_memory();
  for (size_t n : {1, 7, 64, 300, 2000}) {
    auto* p = static_cast<char*>(m->malloc(n, m->mem_user_data));
    std::memset(p, 0xab, n);
    m->free(p, m->mem_user_data);
    auto* z = static_cast<unsigned char*>(m->calloc(n, 1, m->mem_user_data));
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << n << " " << i;
    m->free(z, m->mem_user_data);
  }
  EXPECT_EQ(m->calloc(SIZE_MAX / 2, 4, m->mem_user_data), nullptr);  // overflow refused
}

#if !defined(__SANITIZE_ADDRESS__)
TEST(H2MemoryTest, SmallBlocksAreReused) {
  nghttp2_mem* m = h2_thread_memory();
  void* a = m->malloc(200, m->mem_user_data);
  m->free(a, m->mem_user_data);
  void* b = m->malloc(210, m->mem_user_data);  // same 32-byte class
  EXPECT_EQ(a, b);
  m->free(b, m->mem_user_data);
}
#endif

// A client and a server session on this memory, exchanging 200 requests through buffers.
TEST(H2MemoryTest, SessionsRunOnIt) {
  struct Side {
    nghttp2_session* s = nullptr;
    int responses = 0;
  } server, client;
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, [](nghttp2_session* s, const nghttp2_frame* f, void* ud) -> int {
        auto* side = static_cast<Side*>(ud);
        if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
        if (nghttp2_session_check_server_session(s)) {
          static const std::string big(3000, 'v');
          nghttp2_nv nv[] = {{(uint8_t*)":status", (uint8_t*)"200", 7, 3, 0},
                             {(uint8_t*)"x-long", (uint8_t*)big.data(), 6, big.size(), 0}};
          return nghttp2_submit_response(s, f->hd.stream_id, nv, 2, nullptr);
        }
        ++side->responses;
        return 0;
      });
  nghttp2_session_server_new3(&server.s, cb, &server, nullptr, h2_thread_memory());
  nghttp2_session_client_new3(&client.s, cb, &client, nullptr, h2_thread_memory());
  nghttp2_submit_settings(server.s, 0, nullptr, 0);
  nghttp2_submit_settings(client.s, 0, nullptr, 0);
  auto pump = [](nghttp2_session* from, nghttp2_session* to) {
    const uint8_t* d;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(from, &d)) > 0) ASSERT_EQ(nghttp2_session_mem_recv(to, d, n), n);
    ASSERT_EQ(n, 0);
  };
  int sent = 0;
  for (int round = 0; round < 40 && client.responses < 200; ++round) {
    for (int i = 0; i < 10 && sent < 200; ++i, ++sent) {
      std::string path = "/" + std::to_string(sent);
      nghttp2_nv nv[] = {{(uint8_t*)":method", (uint8_t*)"GET", 7, 3, 0},
                         {(uint8_t*)":scheme", (uint8_t*)"https", 7, 5, 0},
                         {(uint8_t*)":authority", (uint8_t*)"a.test", 10, 6, 0},
                         {(uint8_t*)":path", (uint8_t*)path.data(), 5, path.size(), 0}};
      ASSERT_GT(nghttp2_submit_request(client.s, nullptr, nv, 4, nullptr, nullptr), 0);
    }
    pump(client.s, server.s);
    pump(server.s, client.s);
  }
  EXPECT_EQ(client.responses, 200);
  nghttp2_session_del(client.s);
  nghttp2_session_del(server.s);
  nghttp2_session_callbacks_del(cb);
}

}  // namespace
}  // namespace fulcrum::http
