#include "core/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

namespace fulcrum {
namespace {

TEST(EventLoopTest, TimersFireInDeadlineOrder) {
  EventLoop loop;
  std::vector<int> order;
  Timer a(loop, [&] { order.push_back(1); });
  Timer b(loop, [&] { order.push_back(2); });
  Timer c(loop, [&] { order.push_back(3); });
  c.arm(Millis(30));
  a.arm(Millis(10));
  b.arm(Millis(20));
  for (int i = 0; i < 50 && order.size() < 3; ++i) loop.run_once(Millis(10));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoopTest, CancelledAndDestroyedTimersDoNotFire) {
  EventLoop loop;
  int fired = 0;
  Timer a(loop, [&] { ++fired; });
  a.arm(Millis(1));
  a.cancel();
  {
    Timer b(loop, [&] { ++fired; });
    b.arm(Millis(1));
  }
  for (int i = 0; i < 5; ++i) loop.run_once(Millis(5));
  EXPECT_EQ(fired, 0);
  EXPECT_FALSE(a.armed());
}

TEST(EventLoopTest, ReArmingLaterDelaysTheTimer) {
  EventLoop loop;
  int fired = 0;
  Timer t(loop, [&] { ++fired; });
  t.arm(Millis(10));
  t.arm(Millis(60));  // lazy move: stays filed at 10ms, re-filed when that comes due
  auto start = Clock::now();
  while (fired == 0 && Clock::now() - start < std::chrono::seconds(2)) loop.run_once(Millis(5));
  EXPECT_EQ(fired, 1);
  EXPECT_GE(Clock::now() - start, Millis(55));
}

TEST(EventLoopTest, ReArmingEarlierMovesTheTimer) {
  EventLoop loop;
  int fired = 0;
  Timer t(loop, [&] { ++fired; });
  t.arm(Millis(5000));
  t.arm(Millis(5));
  auto start = Clock::now();
  while (fired == 0 && Clock::now() - start < std::chrono::seconds(2)) loop.run_once(Millis(5));
  EXPECT_EQ(fired, 1);
  EXPECT_LT(Clock::now() - start, Millis(1000));
}

TEST(EventLoopTest, ManyTimersKeepHeapOrder) {
  EventLoop loop;
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<int> order;
  // Deadlines in a scrambled order; they must fire sorted.
  for (int i = 0; i < 200; ++i) {
    int d = (i * 37) % 200;
    timers.push_back(std::make_unique<Timer>(loop, [&order, d] { order.push_back(d); }));
    timers.back()->arm(Millis(d / 4));
  }
  for (int i = 0; i < 20; i += 2) timers[i]->cancel();
  auto start = Clock::now();
  while (order.size() < 190 && Clock::now() - start < std::chrono::seconds(3)) loop.run_once(Millis(5));
  ASSERT_EQ(order.size(), 190u);
  for (size_t i = 1; i < order.size(); ++i) EXPECT_LE(order[i - 1] / 4, order[i] / 4);
}

TEST(EventLoopTest, PostFromAnotherThreadRunsOnLoop) {
  EventLoop loop;
  std::thread::id ran_on;
  std::thread runner([&] { loop.run(); });
  std::thread::id runner_id = runner.get_id();
  std::thread poster([&] { loop.post([&] { ran_on = std::this_thread::get_id(); loop.stop(); }); });
  poster.join();
  runner.join();
  EXPECT_EQ(ran_on, runner_id);
}

struct Reader final : IoHandler {
  int fd;
  std::string got;
  void on_io(uint32_t events) override {
    if (!(events & EPOLLIN)) return;
    char buf[64];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) got.append(buf, n);
  }
};

TEST(EventLoopTest, DeliversReadinessEdgeTriggered) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  EventLoop loop;
  Reader r;
  r.fd = sv[0];
  ASSERT_TRUE(loop.add(sv[0], &r));
  ASSERT_EQ(::write(sv[1], "hello", 5), 5);
  loop.run_once(Millis(100));
  EXPECT_EQ(r.got, "hello");
  ASSERT_EQ(::write(sv[1], " world", 6), 6);
  loop.run_once(Millis(100));
  EXPECT_EQ(r.got, "hello world");
  loop.remove(sv[0]);
  ::close(sv[0]);
  ::close(sv[1]);
}

struct Counted final : Deferred {
  int* deleted;
  explicit Counted(int* d) : deleted(d) {}
  ~Counted() override { ++*deleted; }
};

TEST(EventLoopTest, DeferredDeleteHappensAfterTheTurn) {
  EventLoop loop;
  int deleted = 0;
  loop.defer_delete(new Counted(&deleted));
  EXPECT_EQ(deleted, 0);
  loop.run_once(Millis(0));
  EXPECT_EQ(deleted, 1);
}

}  // namespace
}  // namespace fulcrum
