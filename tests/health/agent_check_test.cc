// The agent probe (src/health/agent_check.cc) against loopback agents: one line read and handed
// back, every way a reply can go wrong sorted into a reason code; and the service applying agent
// reports on their own schedule: weights follow cpu, drain takes a server out, and a silent,
// refusing or garbling agent changes nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "health/health_service.h"
#include "health/kinds.h"
#include "health/probe_util.h"

namespace fulcrum::health {
namespace {

using testing::Listener;
using testing::run_probe;
using upstream::AgentState;

// A loopback agent: each connection gets `reply` and is closed, unless `hold` keeps it open
// (after sending whatever `reply` holds) until the agent stops.
class Agent {
 public:
  explicit Agent(std::string reply) : reply_(std::move(reply)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Agent() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return listener_.port; }
  void set(std::string reply, bool hold = false) {
    std::lock_guard lock(mu_);
    reply_ = std::move(reply);
    hold_ = hold;
  }
  int connections() const { return connections_.load(); }

 private:
  void run() {
    std::vector<Fd> held;
    while (!stop_) {
      pollfd p{listener_.fd.get(), POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      Fd c(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      ++connections_;
      std::string reply;
      bool hold;
      {
        std::lock_guard lock(mu_);
        reply = reply_;
        hold = hold_;
      }
      if (!reply.empty()) send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
      if (hold) held.push_back(std::move(c));
    }
  }

  Listener listener_;
  std::mutex mu_;
  std::string reply_;
  bool hold_ = false;
  std::atomic<int> connections_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A backend whose one server listens nowhere in particular: the agent has a port of its own.
config::Backend agent_backend(uint16_t agent_port, Millis interval = Millis(2000)) {
  config::Backend b = testing::backend_spec("none", {testing::closed_address()});
  config::Agent agent;
  agent.port = agent_port;
  agent.interval = interval;
  b.health.agent = agent;
  return b;
}

Outcome probe_once(uint16_t agent_port, Millis timeout = Millis(1000)) {
  upstream::Backend b(agent_backend(agent_port));
  EventLoop loop;
  auto check = make_agent_check(b, loop);
  return run_probe(*check, loop, *b.servers()[0], timeout);
}

TEST(AgentCheckTest, ReadsOneLine) {
  Agent agent("up 50% cpu=0.25\n");
  Outcome o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "up 50% cpu=0.25");
}

TEST(AgentCheckTest, KeepsTheCarriageReturnForTheParserAndIgnoresWhatFollowsTheLine) {
  Agent agent("drain\r\nmore lines are not read\n");
  Outcome o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "drain\r");
}

TEST(AgentCheckTest, DoesNotWaitForTheCloseOnceTheLineIsIn) {
  Agent agent("");
  agent.set("cpu=0.5\n", /*hold=*/true);
  auto start = Clock::now();
  Outcome o = probe_once(agent.port(), Millis(2000));
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_LT(Clock::now() - start, Millis(1000));
}

TEST(AgentCheckTest, LongestLineFitsAndOneByteMoreIsRefused) {
  Agent agent(std::string(255, 'x') + "\n");
  Outcome o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail.size(), 255u);
  agent.set(std::string(256, 'x') + "\n");
  o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_EQ(o.detail, "reply longer than 256 bytes");
  agent.set(std::string(100000, 'x'), /*hold=*/true);  // a server that streams: stop at 256
  o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_EQ(o.detail, "reply longer than 256 bytes");
}

TEST(AgentCheckTest, CloseWithoutALineIsMalformed) {
  Agent agent("");
  Outcome o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_EQ(o.detail, "connection closed without a reply");
  agent.set("up 50%");
  o = probe_once(agent.port());
  EXPECT_EQ(o.reason, Reason::kL7Bad);
  EXPECT_EQ(o.detail, "connection closed before the end of the line");
}

TEST(AgentCheckTest, SilentAgentTimesOutAndRefusedIsL4) {
  Agent agent("");
  agent.set("up", /*hold=*/true);  // no newline, never closes
  Outcome o = probe_once(agent.port(), Millis(200));
  EXPECT_EQ(o.reason, Reason::kL7Timeout);
  EXPECT_EQ(o.detail, "timeout after 200ms");
  Listener gone;
  uint16_t port = gone.port;
  gone.fd.reset();
  o = probe_once(port);
  EXPECT_EQ(o.reason, Reason::kL4Refused);
}

TEST(AgentCheckTest, ServerAgentPortOverridesTheBackendsPort) {
  Agent agent("up\n");
  config::Backend spec = agent_backend(1);  // nothing there
  spec.servers[0].agent_port = agent.port();
  upstream::Backend b(spec);
  EventLoop loop;
  auto check = make_agent_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(1000));
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
}

bool eventually(const std::function<bool()>& pred, Millis within = Millis(2000)) {
  auto until = Clock::now() + within;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(Millis(2));
  }
  return pred();
}

TEST(AgentServiceTest, ReportsApplyOnTheirOwnScheduleAndProblemsChangeNothing) {
  Agent agent("cpu=0.9\n");
  upstream::Backend b(agent_backend(agent.port(), Millis(30)));
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b});
  ASSERT_TRUE(svc.has_work()) << "an agent alone is work for the service";
  svc.start();
  ASSERT_TRUE(eventually([&] { return s.scaled_weight() == 100u; })) << s.scaled_weight();
  EXPECT_TRUE(s.usable());

  agent.set("drain cpu=0.1\n");
  ASSERT_TRUE(eventually([&] { return s.agent_state() == AgentState::kDrain; }));
  EXPECT_FALSE(s.usable());
  EXPECT_EQ(s.scaled_weight(), 900u);
  EXPECT_EQ(b.state_of(s), upstream::State::kDrain);

  // Garbage, a silent agent, one that closes without a line, one that refuses: each is counted
  // and none changes the state, the weight or the generation.
  uint64_t g = b.generation();
  for (auto [reply, hold] : {std::pair<std::string, bool>{"up cpu=0.0 busy\n", false},
                             {"\x01\xff\n", false},
                             {"up", true},
                             {"", false}}) {
    agent.set(reply, hold);
    int before = agent.connections();
    ASSERT_TRUE(eventually([&] { return agent.connections() >= before + 2; })) << "probes go on";
  }
  EXPECT_EQ(b.generation(), g);
  EXPECT_EQ(s.agent_state(), AgentState::kDrain);
  EXPECT_EQ(s.scaled_weight(), 900u);
  EXPECT_GT(s.agent_results(upstream::AgentResult::kMalformed), 0u);
  EXPECT_GT(s.agent_results(upstream::AgentResult::kFailed), 0u);
  EXPECT_FALSE(s.reported_load().last_error.empty());

  agent.set("up\n");
  ASSERT_TRUE(eventually([&] { return s.usable(); }));
  EXPECT_EQ(s.scaled_weight(), 900u) << "cpu=0.1 still stands: up alone does not reset it";
  svc.stop();
}

TEST(AgentServiceTest, AgentDownAndBackRampsWithSlowStart) {
  Agent agent("down\n");
  config::Backend spec = agent_backend(agent.port(), Millis(20));
  spec.servers[0].weight = 10;
  spec.health.slow_start = Millis(400);
  upstream::Backend b(spec);
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b});
  svc.start();
  ASSERT_TRUE(eventually([&] { return s.agent_state() == AgentState::kDown; }));
  EXPECT_EQ(b.state_of(s), upstream::State::kDown);
  agent.set("up\n");
  ASSERT_TRUE(eventually([&] { return s.usable(); }));
  EXPECT_LT(s.scaled_weight(), 10 * upstream::kWeightScale) << "back from down: slow start";
  ASSERT_TRUE(eventually([&] { return s.scaled_weight() == 10 * upstream::kWeightScale; }));
  svc.stop();
}

}  // namespace
}  // namespace fulcrum::health
