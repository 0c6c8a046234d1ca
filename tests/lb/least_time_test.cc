// least_time: a slow server gets far fewer requests than a fast one, and a server without a
// sample yet is tried, neither starved nor flooded.
#include <gtest/gtest.h>

#include <queue>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::weighted;

std::unique_ptr<Balancer> least_time(std::vector<Candidate> c, uint64_t seed = 1) {
  return find_algorithm("least_time")->make(std::move(c), seed);
}

// A discrete-time simulation: `per_tick` requests arrive each tick; each is picked, begun, and
// ends after its server's latency, recording that time. Returns picks per server.
std::vector<int> simulate(Balancer& b, const upstream::Backend& backend,
                          const std::vector<int>& latency_ticks, int ticks, int per_tick) {
  struct Done {
    int at;
    upstream::Server* server;
    bool operator>(const Done& o) const { return at > o.at; }
  };
  std::priority_queue<Done, std::vector<Done>, std::greater<>> running;
  std::vector<int> count(backend.servers().size(), 0);
  PickContext ctx;
  for (int t = 0; t < ticks; ++t) {
    while (!running.empty() && running.top().at <= t) {
      upstream::Server* s = running.top().server;
      s->end();
      s->record_time_us(static_cast<uint32_t>(latency_ticks[s->index()] * 100));
      running.pop();
    }
    for (int r = 0; r < per_tick; ++r) {
      upstream::Server* s = b.pick(ctx);
      s->begin();
      ++count[s->index()];
      running.push({t + latency_ticks[s->index()], s});
    }
  }
  testing::end_all(backend);
  return count;
}

TEST(LeastTime, TenTimesSlowerGetsFarFewer) {
  upstream::Backend backend(backend_spec(weighted({1, 1})));
  auto b = least_time(all_of(backend));
  // s0 answers in 50 ticks, s1 in 5: both start without samples.
  auto count = simulate(*b, backend, {50, 5}, 20000, 2);
  EXPECT_GT(count[0], 0) << "the slow server was never even measured";
  EXPECT_LT(count[0] * 10, count[1]) << count[0] << " vs " << count[1];
}

TEST(LeastTime, QueuesSendSomeTrafficToTheSlowerServer) {
  // Under load the fast server's queue makes it slower than the idle slow one, so the slow one
  // is not starved: at 6 per tick s1 (5 ticks) holds about 25 requests, and s0 (50 ticks) is
  // picked whenever its own expected time 50 × (active + 1) is the lower: about 1% of requests.
  upstream::Backend backend(backend_spec(weighted({1, 1})));
  auto count = simulate(*least_time(all_of(backend)), backend, {50, 5}, 20000, 6);
  double slow_share = count[0] / 120000.0;
  EXPECT_GT(slow_share, 0.003);
  EXPECT_LT(slow_share, 0.05);
}

TEST(LeastTime, NewServerIsTriedNotFlooded) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto& s = backend.servers();
  s[0]->record_time_us(1000);
  s[1]->record_time_us(2000);
  s[0]->begin();  // the fast one is busy with one request
  auto b = least_time(all_of(backend));
  PickContext ctx;
  EXPECT_EQ(b->pick(ctx), s[2].get()) << "a server without a sample must be tried";

  // Requests held open and no sample landing yet: the new server is scored as fast as s0, so
  // it takes its share alongside s0, not everything.
  int to_new = 0;
  for (int i = 0; i < 100; ++i) {
    upstream::Server* got = b->pick(ctx);
    got->begin();
    to_new += got == s[2].get();
  }
  EXPECT_GT(to_new, 30);
  EXPECT_LT(to_new, 70);
  EXPECT_NEAR(s[0]->active(), s[2]->active(), 1);
  testing::end_all(backend);
}

TEST(LeastTime, WithoutSamplesItBalancesLikeLeastConn) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto b = least_time(all_of(backend));
  PickContext ctx;
  for (int i = 0; i < 300; ++i) b->pick(ctx)->begin();
  for (auto& s : backend.servers()) EXPECT_EQ(s->active(), 100);
  testing::end_all(backend);
}

TEST(LeastTime, EqualScoresRotate) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  for (auto& s : backend.servers()) s->record_time_us(700);
  auto b = least_time(all_of(backend));
  PickContext ctx;
  std::vector<int> count(3, 0);
  for (int i = 0; i < 300; ++i) ++count[b->pick(ctx)->index()];
  EXPECT_EQ(count, (std::vector<int>{100, 100, 100}));
}

TEST(LeastTime, WeightDividesTheExpectedTime) {
  // Same speed, weights 3:1, requests held: the heavy server is expected to cope with three
  // times the queue.
  upstream::Backend backend(backend_spec(weighted({3, 1})));
  for (auto& s : backend.servers()) s->record_time_us(500);
  auto b = least_time(all_of(backend));
  PickContext ctx;
  for (int i = 0; i < 400; ++i) b->pick(ctx)->begin();
  EXPECT_NEAR(backend.servers()[0]->active(), 300, 3);
  testing::end_all(backend);
}

TEST(LeastTime, TriedFastestGivesTheNext) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto& s = backend.servers();
  s[0]->record_time_us(100);
  s[1]->record_time_us(200);
  s[2]->record_time_us(300);
  auto b = least_time(all_of(backend));
  TriedSet tried;
  PickContext ctx;
  ctx.tried = &tried;
  EXPECT_EQ(b->pick(ctx), s[0].get());
  tried.add(0);
  EXPECT_EQ(b->pick(ctx), s[1].get());
  tried.add(1);
  EXPECT_EQ(b->pick(ctx), s[2].get());
  tried.add(2);
  EXPECT_EQ(b->pick(ctx), nullptr);
}

}  // namespace
}  // namespace fulcrum::lb
