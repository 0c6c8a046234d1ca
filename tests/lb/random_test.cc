// random (two choices): the less loaded of two draws wins, loads stay close under held
// connections, weights are respected, and each worker's sequence is its own.
#include <gtest/gtest.h>

#include <algorithm>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::weighted;

std::unique_ptr<Balancer> random_lb(std::vector<Candidate> c, uint64_t seed = 1) {
  return find_algorithm("random")->make(std::move(c), seed);
}

TEST(Random, PrefersTheLessLoaded) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto& s = backend.servers();
  for (int i = 0; i < 50; ++i) s[0]->begin();
  auto b = random_lb(all_of(backend));
  PickContext ctx;
  int busy = 0;
  for (int i = 0; i < 3000; ++i) busy += b->pick(ctx) == s[0].get();
  // Two different servers are drawn; the busy one always loses its comparison.
  EXPECT_EQ(busy, 0);
  testing::end_all(backend);
}

TEST(Random, HeldLoadStaysClose) {
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(10, 1))));
  auto b = random_lb(all_of(backend), 42);
  PickContext ctx;
  for (int i = 0; i < 10000; ++i) b->pick(ctx)->begin();
  int lo = 1 << 30, hi = 0;
  for (auto& s : backend.servers()) {
    lo = std::min(lo, s->active());
    hi = std::max(hi, s->active());
  }
  // One random choice would spread as a binomial (±30 around 1000); two choices stay tight.
  EXPECT_LE(hi - lo, 6) << lo << ".." << hi;
  testing::end_all(backend);
}

TEST(Random, WeightsAreRespected) {
  upstream::Backend backend(backend_spec(weighted({3, 1})));
  PickContext ctx;
  {
    // Idle (short requests): the first draw, which is in proportion to weight, wins ties.
    auto b = random_lb(all_of(backend), 5);
    int heavy = 0;
    for (int i = 0; i < 10000; ++i) heavy += b->pick(ctx)->index() == 0;
    EXPECT_NEAR(heavy / 10000.0, 0.75, 0.02);
  }
  {
    // Held: loads relative to weight even out at 3:1.
    auto b = random_lb(all_of(backend), 6);
    for (int i = 0; i < 4000; ++i) b->pick(ctx)->begin();
    EXPECT_NEAR(backend.servers()[0]->active(), 3000, 20);
    testing::end_all(backend);
  }
}

TEST(Random, SeedsGiveDifferentSequences) {
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(8, 1))));
  auto a = random_lb(all_of(backend), 1);
  auto b = random_lb(all_of(backend), 2);
  auto c = random_lb(all_of(backend), 1);
  PickContext ctx;
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 200; ++i) {
    upstream::Server* x = a->pick(ctx);
    same_ab += x == b->pick(ctx);
    same_ac += x == c->pick(ctx);
  }
  EXPECT_LT(same_ab, 100);
  EXPECT_EQ(same_ac, 200) << "same seed, same sequence: tests are reproducible";
}

TEST(Random, LastUntriedServerIsFound) {
  upstream::Backend backend(backend_spec(weighted({100, 100, 100, 1})));
  auto b = random_lb(all_of(backend));
  TriedSet tried;
  tried.add(0);
  tried.add(1);
  tried.add(2);
  PickContext ctx;
  ctx.tried = &tried;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b->pick(ctx), backend.servers()[3].get());
}

}  // namespace
}  // namespace fulcrum::lb
