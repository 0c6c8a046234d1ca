// Tests for src/core/conn_spread.h: connections a single worker's socket accepts are spread
// evenly over the workers that joined; ties stay where they were accepted; a busy listener hands
// over only past its margin (1 + mine/16); closed() gives a place back.
#include "core/conn_spread.h"

#include <gtest/gtest.h>

#include <vector>

namespace fulcrum {
namespace {

struct FakeListener {};

TEST(ConnSpreadTest, BurstOnOneWorkerSpreadsEvenly) {
  ConnSpread<FakeListener> s(2);
  FakeListener a, b;
  EventLoop la, lb;
  s.join(0, &a, &la);
  s.join(1, &b, &lb);
  std::vector<size_t> got;
  for (int i = 0; i < 10; ++i) got.push_back(s.pick(0));  // all ten accepted by worker 0's socket
  EXPECT_EQ(s.count(0), 5);
  EXPECT_EQ(s.count(1), 5);
  EXPECT_EQ(got[0], 0u);  // a tie stays
  EXPECT_EQ(got[1], 1u);
  EXPECT_EQ(s.listener(1), &b);
  EXPECT_EQ(&s.loop(1), &lb);
}

TEST(ConnSpreadTest, ClosedConnectionsFreeTheirPlace) {
  ConnSpread<FakeListener> s(3);
  FakeListener l[3];
  EventLoop loops[3];
  for (size_t i = 0; i < 3; ++i) s.join(i, &l[i], &loops[i]);
  for (int i = 0; i < 9; ++i) s.pick(i % 3);
  EXPECT_EQ(s.count(0) + s.count(1) + s.count(2), 9);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(s.count(i), 3) << i;
  s.closed(2);
  s.closed(2);
  EXPECT_EQ(s.pick(0), 2u);  // worker 2 now holds 1, worker 0 holds 3
  EXPECT_EQ(s.count(2), 2);
}

TEST(ConnSpreadTest, BusyListenerKeepsWithinItsMargin) {
  ConnSpread<FakeListener> s(2);
  FakeListener a, b;
  EventLoop la, lb;
  s.join(0, &a, &la);
  s.join(1, &b, &lb);
  for (int i = 0; i < 64; ++i) s.pick(i % 2);  // 32 each
  // Worker 0 accepts more: it keeps them until it holds 1 + mine/16 more than worker 1.
  size_t kept = 0;
  while (s.pick(0) == 0) ++kept;
  EXPECT_EQ(kept, 3u);  // 35 - 32 = 3 = 1 + 35/16
  EXPECT_EQ(s.count(0), 35);
  EXPECT_EQ(s.count(1), 33);
}

TEST(ConnSpreadTest, WorkersThatHaveNotJoinedGetNothing) {
  ConnSpread<FakeListener> s(2);
  FakeListener a;
  EventLoop la;
  s.join(0, &a, &la);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.pick(0), 0u);
  EXPECT_EQ(s.count(1), 0);
}

}  // namespace
}  // namespace fulcrum
