// The shared LRU store and its entries (src/cache/store.cc, src/cache/entry.cc): eviction by
// size, Vary variants, pending fills and waiters, refresh by a 304, many threads at once.
#include "cache/store.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <random>
#include <string>
#include <thread>

#include "core/event_loop.h"

namespace fulcrum::cache {
namespace {

using http::Header;

constexpr int64_t kNow = 1'700'000'000'000;  // ms

struct Req {
  std::string text;
  std::array<Header, 64> fields;
  http::RequestHead head;
  explicit Req(std::string extra = "") : text("GET / HTTP/1.1\r\nHost: h\r\n" + extra + "\r\n") {
    EXPECT_TRUE(http::parse_request(text, fields, &head).done());
  }
};

struct Resp {
  std::string text;
  std::array<Header, 64> fields;
  http::ResponseHead head;
  explicit Resp(std::string t) : text(std::move(t)) {
    EXPECT_TRUE(http::parse_response(text, fields, &head).done());
  }
};

std::shared_ptr<const Entry> make(const Req& req, std::string body,
                                  std::string fields = "Cache-Control: max-age=60\r\n", int64_t now = kNow) {
  Resp r("HTTP/1.1 200 OK\r\n" + fields + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  StoreDecision d = store_decision(false, r.head, 0, now / 1000);
  EXPECT_TRUE(d.store) << d.reason;
  EntryBuilder b(req.head, r.head, d, now);
  b.append(body);
  return b.finish();
}

Store::Lookup look(Store& s, std::string_view key, const Req& req, int64_t now = kNow, bool may_fill = true,
                   std::shared_ptr<Waiter> w = nullptr) {
  return s.lookup(key, req.head.headers, now, false, may_fill, false, w);
}

TEST(KeyTest, Pieces) {
  std::string k;
  build_key(k, "http", "Example.COM:8080", "/a/b", "x=1&Y=2", true);
  EXPECT_EQ(k, "http://example.com:8080/a/b?x=1&Y=2");
  build_key(k, "https", "h", "/", "", true);
  EXPECT_EQ(k, "https://h/?");
  build_key(k, "http", "h", "/", "", false);
  EXPECT_EQ(k, "http://h/");
}

TEST(EntryTest, HeadHasLengthAndNoHopByHopFields) {
  Req req;
  auto e =
      make(req, "hello",
           "Cache-Control: max-age=60\r\nConnection: close\r\nAge: 5\r\nX-Cache: HIT\r\nETag: \"e\"\r\n");
  EXPECT_NE(e->head.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(e->head.find("Connection"), std::string::npos);
  EXPECT_EQ(e->head.find("X-Cache"), std::string::npos);
  EXPECT_EQ(e->head.find("Age:"), std::string::npos);
  EXPECT_EQ(e->head_304.rfind("HTTP/1.1 304 Not Modified\r\n", 0), 0u);
  EXPECT_NE(e->head_304.find("ETag: \"e\""), std::string::npos);
  EXPECT_EQ(e->etag, "\"e\"");
  EXPECT_EQ(e->initial_age_ms, 5000);  // Age from upstream counts
  EXPECT_TRUE(e->fresh(kNow + 54000));
  EXPECT_FALSE(e->fresh(kNow + 55000));
}

TEST(EntryTest, RefreshBy304UpdatesFields) {
  Req req;
  auto e = make(req, "body", "Cache-Control: max-age=1\r\nETag: \"v\"\r\nX-Old: 1\r\n");
  Resp nm("HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=100\r\nX-Old: 2\r\n\r\n");
  auto f = refresh_entry(*e, nm.head, false, 0, kNow + 5000);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->body, "body");
  EXPECT_EQ(f->lifetime_ms, 100000);
  EXPECT_TRUE(f->fresh(kNow + 50000));
  EXPECT_NE(f->head.find("X-Old: 2\r\n"), std::string::npos);
  EXPECT_EQ(f->head.find("X-Old: 1"), std::string::npos);
  EXPECT_NE(f->head.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_EQ(f->etag, "\"v\"");
  // A 304 without Date: the entry's Date becomes now, not the first fetch's (or it would be stale).
  auto dated =
      make(req, "d", "Cache-Control: max-age=10\r\nETag: \"v\"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n");
  Resp bare("HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\n\r\n");
  auto later = refresh_entry(*dated, bare.head, false, 0, kNow + 3'600'000);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->initial_age_ms, 0);
  EXPECT_TRUE(later->fresh(kNow + 3'605'000));
  EXPECT_NE(later->head.find("Date: Tue, 14 Nov 2023 23:13:20 GMT"), std::string::npos) << later->head;
  Resp no("HTTP/1.1 304 Not Modified\r\nCache-Control: no-store\r\n\r\n");
  EXPECT_FALSE(refresh_entry(*e, no.head, false, 0, kNow));
}

TEST(StoreTest, MissFillsThenHits) {
  Store s(1 << 20, 0);
  Req req;
  auto r = look(s, "k", req);
  EXPECT_EQ(r.action, Store::Action::kFill);
  s.insert("k", make(req, "v"));
  r = look(s, "k", req);
  ASSERT_EQ(r.action, Store::Action::kHit);
  EXPECT_EQ(r.entry->body, "v");
  // Stale: the next lookup fills again, with the stale entry to revalidate.
  r = look(s, "k", req, kNow + 61000);
  EXPECT_EQ(r.action, Store::Action::kFill);
  ASSERT_TRUE(r.entry);
  s.release("k");
  // Revalidation asked by the request.
  r = s.lookup("k", req.head.headers, kNow, true, true, false, nullptr);
  EXPECT_EQ(r.action, Store::Action::kFill);
  s.release("k");
  EXPECT_EQ(look(s, "k", req).action, Store::Action::kHit);
  EXPECT_EQ(look(s, "other", req, kNow, false).action, Store::Action::kBypass);
}

TEST(StoreTest, EvictsLeastRecentlyUsedBySize) {
  Store s(64 * 1024, 0);  // one shard; objects up to 8 KiB
  Req req;
  std::string body(4000, 'x');
  for (int i = 0; i < 30; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(look(s, k, req).action, Store::Action::kFill);
    s.insert(k, make(req, body));
    EXPECT_EQ(look(s, "k0", req).action, Store::Action::kHit) << i;  // k0 is kept in use
  }
  auto st = s.stats();
  EXPECT_LE(st.bytes, 64u * 1024);
  EXPECT_GT(st.evictions, 0u);
  EXPECT_EQ(look(s, "k0", req).action, Store::Action::kHit);
  EXPECT_EQ(look(s, "k29", req).action, Store::Action::kHit);
  EXPECT_EQ(look(s, "k1", req, kNow, false).action, Store::Action::kBypass);  // gone
  // Too large an object is not stored.
  ASSERT_EQ(look(s, "big", req).action, Store::Action::kFill);
  s.insert("big", make(req, std::string(10000, 'b')));
  EXPECT_EQ(look(s, "big", req, kNow, false).action, Store::Action::kBypass);
}

TEST(StoreTest, VaryVariants) {
  Store s(1 << 20, 0);
  Req gzip("Accept-Encoding: gzip\r\n"), plain("Accept-Encoding: identity\r\n"), none;
  std::string f = "Cache-Control: max-age=60\r\nVary: Accept-Encoding\r\n";
  ASSERT_EQ(look(s, "k", gzip).action, Store::Action::kFill);
  s.insert("k", make(gzip, "gz", f));
  EXPECT_EQ(look(s, "k", gzip).action, Store::Action::kHit);
  ASSERT_EQ(look(s, "k", plain).action, Store::Action::kFill);
  s.insert("k", make(plain, "id", f));
  ASSERT_EQ(look(s, "k", none).action, Store::Action::kFill);
  s.insert("k", make(none, "none", f));
  EXPECT_EQ(look(s, "k", gzip).entry->body, "gz");
  EXPECT_EQ(look(s, "k", plain).entry->body, "id");
  EXPECT_EQ(look(s, "k", none).entry->body, "none");
  // Two field lines are one joined value.
  Req two("Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n"), joined("Accept-Encoding: gzip, br\r\n");
  ASSERT_EQ(look(s, "k", two).action, Store::Action::kFill);
  s.insert("k", make(two, "two", f));
  EXPECT_EQ(look(s, "k", joined).entry->body, "two");
  // A new response for a variant replaces it.
  ASSERT_EQ(s.lookup("k", gzip.head.headers, kNow, true, true, false, nullptr).action, Store::Action::kFill);
  s.insert("k", make(gzip, "gz2", f));
  EXPECT_EQ(look(s, "k", gzip).entry->body, "gz2");
  EXPECT_EQ(s.stats().objects, 4u);
}

TEST(StoreTest, WaitersWokenOnTheirLoopWhenTheFillEnds) {
  Store s(1 << 20, 0);
  Req req;
  EventLoop loop;
  int woken = 0;
  ASSERT_EQ(look(s, "k", req).action, Store::Action::kFill);
  std::vector<std::shared_ptr<Waiter>> ws;
  for (int i = 0; i < 3; ++i) {
    auto w = std::make_shared<Waiter>();
    w->loop = &loop;
    w->wake = [&woken] { ++woken; };
    ASSERT_EQ(look(s, "k", req, kNow, true, w).action, Store::Action::kWait);
    ws.push_back(w);
  }
  // A cancelled waiter is not woken, even if its wake was already posted.
  ws[2]->wake = nullptr;
  s.cancel("k", ws[2].get());
  std::thread filler([&] { s.insert("k", make(req, "v")); });
  filler.join();
  for (int i = 0; i < 10 && woken < 2; ++i) loop.run_once(Millis(50));
  EXPECT_EQ(woken, 2);
  EXPECT_EQ(look(s, "k", req).action, Store::Action::kHit);
  // A fill given up wakes the waiters too, and leaves no marker behind.
  ASSERT_EQ(look(s, "u", req).action, Store::Action::kFill);
  ASSERT_EQ(look(s, "u", req, kNow, true, ws[0]).action, Store::Action::kWait);
  s.release("u");
  for (int i = 0; i < 10 && woken < 3; ++i) loop.run_once(Millis(50));
  EXPECT_EQ(woken, 3);
  EXPECT_EQ(look(s, "u", req).action, Store::Action::kFill);
}

TEST(StoreTest, InvalidateDropsEntries) {
  Store s(1 << 20, 0);
  Req req;
  look(s, "k", req);
  s.insert("k", make(req, "v"));
  s.invalidate("k");
  EXPECT_EQ(look(s, "k", req).action, Store::Action::kFill);
}

TEST(StoreTest, ManyThreadsInsertAndLookUp) {
  Store s(8 << 20, 0);  // two shards
  std::atomic<int> hits{0}, fills{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      Req req;
      std::mt19937 rng(t);
      for (int i = 0; i < 5000; ++i) {
        std::string k = "key" + std::to_string(rng() % 500);
        auto r = look(s, k, req);
        if (r.action == Store::Action::kHit) {
          ++hits;
          EXPECT_EQ(r.entry->body.size(), 3000u);
        } else if (r.action == Store::Action::kFill) {
          ++fills;
          if (rng() % 4 == 0)
            s.release(k);
          else
            s.insert(k, make(req, std::string(3000, 'z')));
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_GT(hits.load(), 0);
  EXPECT_GE(fills.load(), 500);
  EXPECT_LE(s.stats().bytes, 8u << 20);
}

}  // namespace
}  // namespace fulcrum::cache
