// round_robin: exact shares, nginx's smooth interleaving, plain rotation for equal weights, and
// workers starting apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::weighted;

std::unique_ptr<Balancer> round_robin(std::vector<Candidate> c, uint64_t seed = 1) {
  return find_algorithm("round_robin")->make(std::move(c), seed);
}

// nginx's SWRR as written in ngx_http_upstream_get_peer, one step at a time: the reference.
std::vector<size_t> nginx_swrr(const std::vector<int>& weights, size_t steps) {
  std::vector<int> current(weights.size(), 0);
  int total = 0;
  for (int w : weights) total += w;
  std::vector<size_t> out;
  for (size_t step = 0; step < steps; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    out.push_back(best);
  }
  return out;
}

std::vector<size_t> picks(Balancer& b, size_t n) {
  std::vector<size_t> out;
  PickContext ctx;
  for (size_t i = 0; i < n; ++i) out.push_back(b.pick(ctx)->index());
  return out;
}

bool is_rotation_of(const std::vector<size_t>& got, const std::vector<size_t>& cycle) {
  for (size_t start = 0; start < cycle.size(); ++start) {
    std::vector<size_t> rotated(cycle.begin() + start, cycle.end());
    rotated.insert(rotated.end(), cycle.begin(), cycle.begin() + start);
    if (rotated == got) return true;
  }
  return false;
}

TEST(RoundRobin, SharesAreExact) {
  struct Case {
    std::vector<uint32_t> weights;
    size_t picks;
  };
  for (const Case& c : {Case{{3, 1}, 10000}, Case{{5, 2}, 7000}, Case{{1, 1, 1, 1}, 10000},
                        Case{{5, 3, 2}, 10000}, Case{{256, 1}, 2570}, Case{{4, 6}, 10000}}) {
    upstream::Backend backend(backend_spec(weighted(c.weights)));
    auto b = round_robin(all_of(backend));
    std::vector<size_t> count(c.weights.size(), 0);
    for (size_t s : picks(*b, c.picks)) ++count[s];
    uint64_t total = 0;
    for (uint32_t w : c.weights) total += w;
    for (size_t i = 0; i < c.weights.size(); ++i)
      EXPECT_EQ(count[i], c.picks * c.weights[i] / total)
          << "server " << i << " of case " << c.weights.size();
  }
}

TEST(RoundRobin, FiveToTwoIsInterleavedLikeNginx) {
  upstream::Backend backend(backend_spec(weighted({5, 2})));
  const auto reference = nginx_swrr({5, 2}, 7);
  // nginx gives a b a a a b a; each worker starts somewhere in that cycle.
  EXPECT_EQ(reference, (std::vector<size_t>{0, 1, 0, 0, 0, 1, 0}));
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto b = round_robin(all_of(backend), seed);
    auto got = picks(*b, 70);
    for (size_t cycle = 0; cycle < 10; ++cycle) {
      std::vector<size_t> one(got.begin() + cycle * 7, got.begin() + cycle * 7 + 7);
      EXPECT_TRUE(is_rotation_of(one, reference)) << "seed " << seed;
    }
    size_t run = 0, longest = 0;
    for (size_t s : got) {
      run = s == 0 ? run + 1 : 0;
      longest = std::max(longest, run);
    }
    EXPECT_LE(longest, 3u) << "a burst, not smooth";
  }
}

TEST(RoundRobin, MatchesNginxForThreeServers) {
  // The classic example from nginx's commit message: 5, 1, 1 gives a a b a c a a.
  upstream::Backend backend(backend_spec(weighted({5, 1, 1})));
  auto b = round_robin(all_of(backend), 3);
  EXPECT_TRUE(is_rotation_of(picks(*b, 7), nginx_swrr({5, 1, 1}, 7)));
  EXPECT_EQ(nginx_swrr({5, 1, 1}, 7), (std::vector<size_t>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, EqualWeightsRotatePlainly) {
  for (uint32_t w : {1u, 3u}) {
    upstream::Backend backend(backend_spec(weighted({w, w, w, w})));
    auto b = round_robin(all_of(backend), 11);
    auto got = picks(*b, 40);
    for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i], (got[i - 1] + 1) % 4);
  }
}

TEST(RoundRobin, WorkersStartApart) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1, 1, 1, 1, 1})));
  std::set<size_t> first;
  for (uint64_t seed = 0; seed < 16; ++seed) first.insert(picks(*round_robin(all_of(backend), seed), 1)[0]);
  EXPECT_GE(first.size(), 4u) << "workers in lock-step";
}

TEST(RoundRobin, LargeWeightsAreScaledNotDropped) {
  // 100 servers weighted 1..100 sum to 5050, past the 4096-entry cycle: shares stay within about
  // a percent and every server keeps some traffic.
  std::vector<uint32_t> weights;
  for (uint32_t w = 1; w <= 100; ++w) weights.push_back(w);
  upstream::Backend backend(backend_spec(weighted(weights)));
  auto b = round_robin(all_of(backend));
  std::vector<int> count(100, 0);
  const int n = 505000;
  for (size_t s : picks(*b, n)) ++count[s];
  for (size_t i = 0; i < 100; ++i) {
    double expected = n * (i + 1) / 5050.0;
    EXPECT_GT(count[i], 0);
    EXPECT_NEAR(count[i], expected, 0.01 * expected + n / 4096.0) << "server " << i;
  }
}

TEST(RoundRobin, AgentScaledWeightsKeepExactSharesAndInterleave) {
  // Three weight-1 servers whose agents report cpu 0.1, 0.1 and 0.9: effective weights 900, 900
  // and 100 (upstream/weight.h), so the busy one gets a ninth of each other's share, spread out.
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  for (auto [i, cpu] : {std::pair{0, 100000u}, {1, 100000u}, {2, 900000u}}) {
    upstream::AgentReport r;
    r.cpu_ppm = cpu;
    backend.servers()[i]->apply_agent_report(r);
  }
  auto b = round_robin(all_of(backend));
  auto got = picks(*b, 1900);
  std::vector<int> count(3, 0);
  for (size_t s : got) ++count[s];
  EXPECT_EQ(count, (std::vector<int>{900, 900, 100}));
  // Between two picks of the busy server, the 18 others of its cycle of 19.
  std::vector<size_t> at;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] == 2) at.push_back(i);
  for (size_t k = 1; k < at.size(); ++k) EXPECT_EQ(at[k] - at[k - 1], 19u) << "not spread evenly";
}

TEST(RoundRobin, UnreducibleScaledWeightsStillShareByWeight) {
  // Scaled weights with no common divisor (4535 and 971 units) exceed the 4096-entry cycle and
  // are scaled down: shares stay within a slot of exact.
  upstream::Backend backend(backend_spec(weighted({1, 1})));
  backend.servers()[0]->set_weight(5);
  upstream::AgentReport r;
  r.cpu_ppm = 93000;  // 5 x 0.907 = 4.535
  backend.servers()[0]->apply_agent_report(r);
  r.cpu_ppm = 29000;  // 1 x 0.971
  backend.servers()[1]->apply_agent_report(r);
  auto cands = all_of(backend);
  ASSERT_EQ(cands[0].weight, 4535u);
  ASSERT_EQ(cands[1].weight, 971u);  // prime: the gcd is 1, the sum 5506
  auto b = round_robin(cands);
  std::vector<int> count(2, 0);
  const int n = 55060;
  for (size_t s : picks(*b, n)) ++count[s];
  EXPECT_NEAR(count[0], n * 4535.0 / 5506, n / 4096.0 + 1);
  EXPECT_NEAR(count[1], n * 971.0 / 5506, n / 4096.0 + 1);
}

TEST(RoundRobin, TriedServerIsSkippedInTurn) {
  upstream::Backend backend(backend_spec(weighted({5, 2, 1})));
  auto b = round_robin(all_of(backend));
  TriedSet tried;
  tried.add(0);
  PickContext ctx;
  ctx.tried = &tried;
  std::vector<int> count(3, 0);
  for (int i = 0; i < 300; ++i) ++count[b->pick(ctx)->index()];
  EXPECT_EQ(count[0], 0);
  EXPECT_EQ(count[1], 200);  // the rest keep their 2:1
  EXPECT_EQ(count[2], 100);
}

}  // namespace
}  // namespace fulcrum::lb
