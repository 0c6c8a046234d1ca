// src/admin/stats_history.cc: rates and quantiles from differences between counter snapshots.
#include "admin/stats_history.h"

#include <gtest/gtest.h>

namespace fulcrum::admin {
namespace {

metrics::SlotTotals slot(std::string backend, std::string server, uint64_t ok, uint64_t errors, size_t bucket,
                         bool tcp = false) {
  metrics::SlotTotals s;
  s.listener = "web";
  s.backend = std::move(backend);
  s.server = std::move(server);
  s.tcp = tcp;
  s.codes[1] = ok;
  s.codes[4] = errors;
  s.count = ok + errors;
  s.buckets[bucket] = ok + errors;
  return s;
}

metrics::Snapshot snap(uint64_t a1, uint64_t a2, uint64_t errors) {
  metrics::Snapshot s;
  s.slots.push_back(slot("app", "a1", a1, 0, 1));          // 0.5-1 ms
  s.slots.push_back(slot("app", "a2", a2, errors, 7));     // 15-25 ms
  s.slots.push_back(slot("db", "d1", 1000, 0, 19, true));  // tcp lifetimes stay out of latency
  metrics::ListenerTotals l;
  l.name = "web";
  l.active = 4;
  s.listeners.push_back(l);
  return s;
}

TEST(StatsHistoryTest, NothingBeforeTwoSamples) {
  StatsHistory h;
  h.sample(snap(10, 10, 0), 100.0, 1000);
  EXPECT_TRUE(h.points().empty());
  EXPECT_EQ(h.total().rps, 0);
  EXPECT_FALSE(h.server("app", "a1").has_latency);
}

TEST(StatsHistoryTest, PointsAreDeltasPerSecond) {
  StatsHistory h;
  h.sample(snap(10, 10, 0), 100.0, 1000);
  h.sample(snap(110, 10, 0), 102.0, 3000);  // 100 requests in 2 s, all at ~0.75 ms
  ASSERT_EQ(h.points().size(), 1u);
  const auto& p = h.points().back();
  EXPECT_EQ(p.t_ms, 3000);
  EXPECT_DOUBLE_EQ(p.rps, 50.0);
  EXPECT_DOUBLE_EQ(p.err_rps, 0.0);
  EXPECT_NEAR(p.p50_ms, 0.75, 1e-9);
  EXPECT_EQ(p.active, 4u);
  ASSERT_EQ(p.backend_rps.size(), 2u);
  EXPECT_EQ(p.backend_rps[0].first, "app");
  EXPECT_DOUBLE_EQ(p.backend_rps[0].second, 50.0);
  EXPECT_DOUBLE_EQ(p.backend_rps[1].second, 0.0);
  h.sample(snap(110, 110, 100), 103.0, 4000);  // 200 slow ones in 1 s, half of them 5xx
  EXPECT_DOUBLE_EQ(h.points().back().rps, 200.0);
  EXPECT_DOUBLE_EQ(h.points().back().err_rps, 100.0);
  EXPECT_GT(h.points().back().p50_ms, 15.0);
  EXPECT_LE(h.points().back().p99_ms, 25.0);
}

TEST(StatsHistoryTest, WindowRatesPerServerAndBackend) {
  StatsHistory h;
  for (int i = 0; i <= 20; ++i) h.sample(snap(10ull * i, 0, 0), i, i * 1000);
  // Over the last kWindow seconds: 10 requests a second on a1, none on a2.
  EXPECT_DOUBLE_EQ(h.server("app", "a1").rps, 10.0);
  EXPECT_TRUE(h.server("app", "a1").has_latency);
  EXPECT_DOUBLE_EQ(h.server("app", "a2").rps, 0.0);
  EXPECT_FALSE(h.server("app", "a2").has_latency);
  EXPECT_DOUBLE_EQ(h.backend("app").rps, 10.0);
  EXPECT_DOUBLE_EQ(h.server("app", "nope").rps, 0.0);
  EXPECT_EQ(h.points().size(), 20u);
  for (int i = 21; i < 700; ++i) h.sample(snap(0, 0, 0), i, i * 1000);
  EXPECT_EQ(h.points().size(), StatsHistory::kKeepPoints);
  EXPECT_DOUBLE_EQ(h.points().back().rps,
                   0.0);  // a counter that went back (never happens) is no negative rate
}

}  // namespace
}  // namespace fulcrum::admin
