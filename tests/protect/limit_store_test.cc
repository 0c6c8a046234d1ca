// Tests of src/protect/local_store.cc and bucket_table.cc: the token bucket's arithmetic on a
// manual clock (burst, refill, Retry-After, slow rates, clamping by a shared store), per-client
// separation, connection counts, and that the limit holds exactly when several threads take from
// one bucket at once; and redis_store.cc failing open when Redis cannot be reached.
#include "protect/limit_store.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "protect/bucket_table.h"

namespace fulcrum::protect {
namespace {

ClientKey key_of(const char* ip) {
  auto a = SocketAddress::parse(std::string(ip) + ":1");
  if (!a) {
    auto b = SocketAddress::parse(std::string("[") + ip + "]:1");
    return ClientKey::of(*b);
  }
  return ClientKey::of(*a);
}

TEST(ClientKey, MappedV4IsV4AndTextRoundTrips) {
  ClientKey a = key_of("192.0.2.7");
  ClientKey b = key_of("::ffff:192.0.2.7");
  EXPECT_EQ(a.len, 4);
  EXPECT_EQ(b.len, 4);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.text(), "192.0.2.7");
  EXPECT_EQ(key_of("2001:db8::1").text(), "2001:db8::1");
  EXPECT_NE(key_of("2001:db8::1").hash, key_of("2001:db8::2").hash);
}

TEST(LocalStore, BurstThenRefusedWithRetryAfterThenRefilled) {
  auto store = make_local_store();
  ClientKey k = key_of("10.0.0.1");
  BucketSpec spec{2, 5};  // 2/s, burst 5
  TimePoint t0 = Clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(store->take_token(k, spec, t0).allowed) << i;
  TakeResult r = store->take_token(k, spec, t0);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 1u);  // 0.5 s to the next token, rounded up to whole seconds
  // 500 ms later exactly one token is back.
  EXPECT_TRUE(store->take_token(k, spec, t0 + Millis(500)).allowed);
  EXPECT_FALSE(store->take_token(k, spec, t0 + Millis(500)).allowed);
  // Long idle refills to the burst, never beyond.
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += store->take_token(k, spec, t0 + Millis(60000)).allowed;
  EXPECT_EQ(allowed, 5);
}

TEST(LocalStore, SlowRateAccumulatesAndRetryAfterCoversTheWait) {
  auto store = make_local_store();
  ClientKey k = key_of("10.0.0.2");
  BucketSpec spec{0.1, 1};  // 6/m
  TimePoint t0 = Clock::now();
  EXPECT_TRUE(store->take_token(k, spec, t0).allowed);
  TakeResult r = store->take_token(k, spec, t0);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 10u);
  // Asked every 100 ms (each refill below one unit must not be lost): allowed again at ~10 s.
  TimePoint t = t0;
  int steps = 0;
  while (!store->take_token(k, spec, t).allowed && steps < 200) t += Millis(100), ++steps;
  EXPECT_GE(steps, 99);
  EXPECT_LE(steps, 101);
}

TEST(LocalStore, HammeredBucketGivesTheRateNoMore) {
  // A client asking every 100 us for 10 s at 20/s, burst 40: 40 + 200 allowed, within rounding
  // (each refill is taken in whole units and whole ms, and must neither repeat nor leak).
  for (double rate : {20.0, 7.4, 1000.0}) {
    auto store = make_local_store();
    ClientKey k = key_of("10.0.1.1");
    BucketSpec spec{rate, 40};
    TimePoint t0 = Clock::now();
    int allowed = 0;
    for (int i = 0; i < 100000; ++i)
      allowed += store->take_token(k, spec, t0 + std::chrono::microseconds(100 * i)).allowed;
    double want = 40 + rate * 10;
    EXPECT_GE(allowed, want * 0.98 - 1) << rate;
    EXPECT_LE(allowed, want + 1) << rate;
  }
}

TEST(BucketTable, ClampLowersNeverRaises) {
  // The Redis store's mirror: what Redis says is left (others took some) lowers the local bucket.
  BucketTable t;
  ClientKey k = key_of("10.0.2.1");
  BucketSpec spec{1, 10};
  TimePoint t0 = Clock::now();
  t.clamp(k, spec, 0, t0);                   // no bucket yet: nothing to lower
  EXPECT_TRUE(t.take(k, spec, t0).allowed);  // 9 left
  t.clamp(k, spec, 2.5, t0);
  EXPECT_TRUE(t.take(k, spec, t0).allowed);
  EXPECT_TRUE(t.take(k, spec, t0).allowed);
  TakeResult r = t.take(k, spec, t0);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 1u);
  t.clamp(k, spec, 9, t0 + Millis(400));  // never raises: 0.5 + 0.4 tokens
  EXPECT_FALSE(t.take(k, spec, t0 + Millis(400)).allowed);
  EXPECT_TRUE(t.take(k, spec, t0 + Millis(600)).allowed);
}

TEST(LocalStore, ClientsHaveTheirOwnBuckets) {
  auto store = make_local_store();
  BucketSpec spec{1, 1};
  TimePoint t0 = Clock::now();
  EXPECT_TRUE(store->take_token(key_of("10.0.0.3"), spec, t0).allowed);
  EXPECT_FALSE(store->take_token(key_of("10.0.0.3"), spec, t0).allowed);
  EXPECT_TRUE(store->take_token(key_of("10.0.0.4"), spec, t0).allowed);
  EXPECT_TRUE(store->take_token(key_of("2001:db8::3"), spec, t0).allowed);
  EXPECT_FALSE(store->take_token(key_of("::ffff:10.0.0.3"), spec, t0).allowed);
}

TEST(LocalStore, ManyClientsDoNotDisturbOneAnother) {
  auto store = make_local_store();
  BucketSpec spec{1, 3};
  TimePoint t0 = Clock::now();
  // 100k distinct clients, each taking its burst: every one gets exactly 3.
  int wrong = 0;
  for (uint32_t i = 0; i < 100000; ++i) {
    SocketAddress a =
        *SocketAddress::parse("10." + std::to_string(i >> 16) + "." + std::to_string((i >> 8) & 255) + "." +
                              std::to_string(i & 255) + ":1");
    ClientKey k = ClientKey::of(a);
    int got = 0;
    for (int j = 0; j < 4; ++j) got += store->take_token(k, spec, t0).allowed;
    // A client evicted from a crowded probe window gets a fresh (full) bucket: more, never fewer.
    if (got < 3) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(LocalStore, ExactAcrossThreads) {
  auto store = make_local_store();
  ClientKey k = key_of("10.0.0.5");
  BucketSpec spec{0.001, 1000};  // no refill to speak of during the test: exactly the burst
  TimePoint t0 = Clock::now();
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i)
        if (store->take_token(k, spec, t0).allowed) allowed.fetch_add(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 1000);
}

TEST(LocalStore, ConnectionCountsAcrossThreads) {
  auto store = make_local_store();
  ClientKey k = key_of("10.0.0.6");
  EXPECT_EQ(store->acquire_conn(k, 2), Admit::kCounted);
  EXPECT_EQ(store->acquire_conn(k, 2), Admit::kCounted);
  EXPECT_EQ(store->acquire_conn(k, 2), Admit::kRefused);
  EXPECT_EQ(store->acquire_conn(key_of("10.0.0.7"), 2), Admit::kCounted);
  store->release_conn(k);
  EXPECT_EQ(store->acquire_conn(k, 2), Admit::kCounted);
  store->release_conn(k);
  store->release_conn(k);
  store->release_conn(key_of("10.0.0.7"));

  // 4 threads acquire and release; the count never exceeds the max and ends at zero.
  std::atomic<int> live{0}, peak{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        if (store->acquire_conn(k, 3) != Admit::kCounted) {
          refused.fetch_add(1);
          continue;
        }
        int n = live.fetch_add(1) + 1;
        int p = peak.load();
        while (n > p && !peak.compare_exchange_weak(p, n)) {
        }
        live.fetch_sub(1);
        store->release_conn(k);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(store->acquire_conn(k, 3), Admit::kCounted);
  EXPECT_EQ(store->acquire_conn(k, 3), Admit::kRefused);
}

TEST(RedisStore, FailsOpenWhileRedisIsUnreachable) {
  // A port nobody listens on: connect is refused; every decision lets the request in, says so
  // (failed_open, for the counter) and never blocks the caller.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), len), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  ::close(fd);
  auto store = make_redis_store("127.0.0.1:" + std::to_string(ntohs(sin.sin_port)), "t");
  ClientKey k = key_of("10.0.3.1");
  BucketSpec spec{1, 1};
  auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) {
    TakeResult r = store->take_token(k, spec, Clock::now());
    EXPECT_TRUE(r.allowed);
    EXPECT_TRUE(r.failed_open);
  }
  EXPECT_EQ(store->acquire_conn(k, 1), Admit::kUncounted);
  EXPECT_EQ(store->acquire_conn(k, 1), Admit::kUncounted);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a connect attempt has come and gone
}

}  // namespace
}  // namespace fulcrum::protect
