// The demo's load agent (src/app/demo_agent.cc): its line parses as an agent reply, and the CPU
// meter sees real CPU burnt on its thread and nothing while the thread sleeps.
#include "app/demo_agent.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <thread>

#include "core/socket.h"
#include "health/agent_reply.h"

namespace fulcrum::app {
namespace {

// Runs `loop` on this thread until `done` or `within` has passed.
template <typename Pred>
bool run_until(EventLoop& loop, Pred done, Millis within) {
  auto until = Clock::now() + within;
  while (!done() && Clock::now() < until) loop.run_once(Millis(5));
  return done();
}

TEST(DemoAgentTest, MeterSeesBurntCpuAndLineParses) {
  EventLoop loop;
  CpuMeter meter(loop);
  // Burn CPU on this (the loop's) thread in slices, turning the loop between them.
  auto burn_until = Clock::now() + Millis(1100);
  while (Clock::now() < burn_until) {
    int64_t until = CpuMeter::thread_cpu_ns() + 20000000;
    volatile uint64_t spin = 0;
    while (CpuMeter::thread_cpu_ns() < until) spin = spin + 1;
    loop.run_once(Millis(0));
  }
  // On a machine busy elsewhere the thread gets less than a whole core; it still gets some.
  EXPECT_GT(meter.usage(), 0.2);
  EXPECT_LE(meter.usage(), 1.0);
  double busy = meter.usage();
  run_until(
      loop, [] { return false; }, Millis(1300));  // idle: only the loop's own turns
  EXPECT_LT(meter.usage(), 0.1) << "was " << busy;

  LoadAgent agent(loop, meter);
  ASSERT_TRUE(agent.listen(*SocketAddress::parse("127.0.0.1:0")).ok());
  uint16_t port = agent.port();

  bool pending = false;
  auto c = connect_socket(*SocketAddress::parse("127.0.0.1:" + std::to_string(port)), &pending);
  ASSERT_TRUE(c.ok());
  std::string got;
  run_until(
      loop,
      [&] {
        char buf[256];
        ssize_t n = recv(c->get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<size_t>(n));
        return got.find('\n') != std::string::npos;
      },
      Millis(2000));
  ASSERT_FALSE(got.empty());
  ASSERT_EQ(got.back(), '\n');
  auto reply = health::parse_agent_reply(got.substr(0, got.size() - 1));
  ASSERT_TRUE(reply.ok()) << got << ": " << reply.error().message;
  EXPECT_EQ(reply->state, upstream::AgentState::kUp);
  ASSERT_TRUE(reply->cpu_ppm.has_value());
  EXPECT_LT(*reply->cpu_ppm, 100000u) << got;

  agent.set_drain(true);
  EXPECT_EQ(agent.line().rfind("drain cpu=", 0), 0u) << agent.line();
}

}  // namespace
}  // namespace fulcrum::app
