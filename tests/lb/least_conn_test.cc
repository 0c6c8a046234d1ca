// least_conn: with long-held connections (a streaming service), the server with fewer open
// connections relative to weight gets the next one; counts are shared by every worker's
// balancer; ties go in turn.
#include <gtest/gtest.h>

#include <algorithm>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::weighted;

std::unique_ptr<Balancer> least_conn(std::vector<Candidate> c, uint64_t seed = 1) {
  return find_algorithm("least_conn")->make(std::move(c), seed);
}

void hold(upstream::Server& s, int n) {
  for (int i = 0; i < n; ++i) s.begin();
}

TEST(LeastConn, FewerOpenConnectionsGetTheNextOne) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto& s = backend.servers();
  hold(*s[0], 5);
  hold(*s[1], 2);
  auto b = least_conn(all_of(backend));
  PickContext ctx;
  // s2 is empty: it takes the next two, then s1 and s2 share until both reach s0's five.
  EXPECT_EQ(b->pick(ctx), s[2].get());
  s[2]->begin();
  EXPECT_EQ(b->pick(ctx), s[2].get());
  s[2]->begin();
  for (int i = 0; i < 6; ++i) {
    upstream::Server* got = b->pick(ctx);
    ASSERT_NE(got, s[0].get()) << "the busiest server took a connection";
    got->begin();
  }
  EXPECT_EQ(s[0]->active(), 5);
  EXPECT_EQ(s[1]->active(), 5);
  EXPECT_EQ(s[2]->active(), 5);
  // A stream on s0 ends: s0 is now the least loaded.
  s[0]->end();
  EXPECT_EQ(b->pick(ctx), s[0].get());
  testing::end_all(backend);
}

TEST(LeastConn, WeightsScaleTheCounts) {
  upstream::Backend backend(backend_spec(weighted({2, 1})));
  auto b = least_conn(all_of(backend));
  PickContext ctx;
  for (int i = 0; i < 300; ++i) {
    b->pick(ctx)->begin();
    int a = backend.servers()[0]->active();
    int c = backend.servers()[1]->active();
    ASSERT_LE(std::abs(a - 2 * c), 2) << "after " << i + 1 << " streams";
  }
  EXPECT_NEAR(backend.servers()[0]->active(), 200, 2);
  testing::end_all(backend);
}

TEST(LeastConn, CountsAreSharedAcrossWorkers) {
  // Two workers' balancers (different seeds) over the same servers: each sees the streams the
  // other opened, so the total stays even rather than each worker balancing only its own.
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1})));
  auto w1 = least_conn(all_of(backend), 1);
  auto w2 = least_conn(all_of(backend), 2);
  PickContext ctx;
  for (int i = 0; i < 400; ++i) {
    (i % 3 == 0 ? w2 : w1)->pick(ctx)->begin();
    int lo = 1 << 30, hi = 0;
    for (auto& s : backend.servers()) {
      lo = std::min(lo, s->active());
      hi = std::max(hi, s->active());
    }
    ASSERT_LE(hi - lo, 1);
  }
  testing::end_all(backend);
}

TEST(LeastConn, TiesGoInTurnByWeight) {
  // Short requests: counts are 0 at every pick, so every pick is a tie. Equal weights rotate;
  // unequal weights share by weight rather than all going to the first server.
  upstream::Backend equal(backend_spec(weighted({1, 1, 1})));
  auto b = least_conn(all_of(equal));
  PickContext ctx;
  std::vector<int> count(3, 0);
  size_t last = 99;
  for (int i = 0; i < 3000; ++i) {
    size_t got = b->pick(ctx)->index();
    EXPECT_NE(got, last);
    last = got;
    ++count[got];
  }
  EXPECT_EQ(count, (std::vector<int>{1000, 1000, 1000}));

  upstream::Backend uneven(backend_spec(weighted({3, 1})));
  auto u = least_conn(all_of(uneven));
  int heavy = 0;
  for (int i = 0; i < 4000; ++i) heavy += u->pick(ctx)->index() == 0;
  EXPECT_EQ(heavy, 3000);
}

TEST(LeastConn, TriedLeastLoadedGivesTheNext) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto& s = backend.servers();
  hold(*s[0], 3);
  hold(*s[1], 1);
  auto b = least_conn(all_of(backend));
  TriedSet tried;
  tried.add(2);
  PickContext ctx;
  ctx.tried = &tried;
  EXPECT_EQ(b->pick(ctx), s[1].get());
  tried.add(1);
  EXPECT_EQ(b->pick(ctx), s[0].get());
  tried.add(0);
  EXPECT_EQ(b->pick(ctx), nullptr);
  testing::end_all(backend);
}

}  // namespace
}  // namespace fulcrum::lb
