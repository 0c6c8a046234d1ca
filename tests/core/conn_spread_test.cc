// Tests for src/core/conn_spread.h: connections a single worker's socket accepts are spread
// evenly over the workers that joined; ties stay where they were accepted; a busy listener hands
// over only past its margin (1 + mine/16); closed() gives a place back; hand_over() runs the
// target's adopt() on the target's loop, or frees what it carries if that loop never runs it.
#include "core/conn_spread.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace fulcrum {
namespace {

struct FakeListener {
  std::vector<int> adopted;
  void adopt(std::unique_ptr<int> item, bool counted) {
    EXPECT_TRUE(counted);
    adopted.push_back(*item);
  }
};

// `n` workers, all joined.
struct Workers {
  explicit Workers(size_t n) : spread(n), listeners(n), loops(n) {
    for (size_t i = 0; i < n; ++i) spread.join(i, &listeners[i], &loops[i]);
  }
  ConnSpread<FakeListener> spread;
  std::vector<FakeListener> listeners;
  std::vector<EventLoop> loops;
};

TEST(ConnSpreadTest, BurstOnOneWorkerSpreadsEvenly) {
  Workers w(2);
  std::vector<size_t> got;
  for (int i = 0; i < 10; ++i) got.push_back(w.spread.pick(0));  // all ten accepted by worker 0's socket
  EXPECT_EQ(w.spread.count(0), 5);
  EXPECT_EQ(w.spread.count(1), 5);
  EXPECT_EQ(got[0], 0u);  // a tie stays
  EXPECT_EQ(got[1], 1u);
  EXPECT_EQ(w.spread.listener(1), &w.listeners[1]);
  EXPECT_EQ(&w.spread.loop(1), &w.loops[1]);
}

TEST(ConnSpreadTest, ClosedConnectionsFreeTheirPlace) {
  Workers w(3);
  for (int i = 0; i < 9; ++i) w.spread.pick(i % 3);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(w.spread.count(i), 3) << i;
  w.spread.closed(2);
  w.spread.closed(2);
  EXPECT_EQ(w.spread.pick(0), 2u);  // worker 2 now holds 1, worker 0 holds 3
  EXPECT_EQ(w.spread.count(2), 2);
}

TEST(ConnSpreadTest, BusyListenerKeepsWithinItsMargin) {
  Workers w(2);
  for (int i = 0; i < 64; ++i) w.spread.pick(i % 2);  // 32 each
  // Worker 0 accepts more: it keeps them until it holds 1 + mine/16 more than worker 1.
  size_t kept = 0;
  while (w.spread.pick(0) == 0) ++kept;
  EXPECT_EQ(kept, 3u);  // 35 - 32 = 3 = 1 + 35/16
  EXPECT_EQ(w.spread.count(0), 35);
  EXPECT_EQ(w.spread.count(1), 33);
}

TEST(ConnSpreadTest, WorkersThatHaveNotJoinedGetNothing) {
  ConnSpread<FakeListener> s(2);
  FakeListener a;
  EventLoop la;
  s.join(0, &a, &la);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.pick(0), 0u);
  EXPECT_EQ(s.count(1), 0);
}

TEST(ConnSpreadTest, HandOverRunsOnTheTargetLoop) {
  Workers w(2);
  w.spread.hand_over(1, std::make_unique<int>(7));
  EXPECT_TRUE(w.listeners[1].adopted.empty());  // not before the target's loop turns
  w.loops[0].run_once(Millis(0));
  EXPECT_TRUE(w.listeners[1].adopted.empty());
  w.loops[1].run_once(Millis(0));
  EXPECT_EQ(w.listeners[1].adopted, std::vector<int>{7});
  // One the target never takes is freed with its loop (ASan's leak check would say otherwise).
  w.spread.hand_over(1, std::make_unique<int>(8));
}

}  // namespace
}  // namespace fulcrum
