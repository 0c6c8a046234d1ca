// Weight arithmetic (src/upstream/weight.cc) and how Server applies agent reports: the scale, the
// 1% floor, N%, the deadband that keeps noisy cpu samples from rebuilding balancers, the
// generation moving only on real changes, and the agent's state beside the operator's.
#include "upstream/weight.h"

#include <gtest/gtest.h>

#include "upstream/server.h"

namespace fulcrum::upstream {
namespace {

TEST(WeightTest, ScaleKeepsConfiguredRatios) {
  EXPECT_EQ(effective_weight({.base = 1}), kWeightScale);
  EXPECT_EQ(effective_weight({.base = 5}), 5 * kWeightScale);
  EXPECT_EQ(effective_weight({.base = 256}), 256 * kWeightScale);
  EXPECT_EQ(effective_weight({.base = 0}), 0u) << "weight 0 takes no new traffic";
}

TEST(WeightTest, EveryFactorMultiplies) {
  struct Case {
    WeightFactors f;
    uint32_t want;
  };
  const Case cases[] = {
      {{.base = 1, .ramp_permille = 100}, 100},                // slow start at a tenth
      {{.base = 3, .load_permille = 900}, 2700},               // cpu 0.1 on weight 3
      {{.base = 1, .load_permille = 100}, 100},                // cpu 0.9 on weight 1
      {{.base = 1, .load_permille = kLoadFloorPermille}, 10},  // the 1% floor of weight 1
      {{.base = 2, .percent = 50}, 1000},                      // N%
      {{.base = 2, .percent = 256}, 5120},                     // more than configured
      {{.base = 1, .percent = 0}, 0},                          // 0%: no new traffic
      {{.base = 4, .ramp_permille = 500, .percent = 50, .load_permille = 500}, 500},
      {{.base = 1, .ramp_permille = 100, .load_permille = kLoadFloorPermille}, 1},  // 0.1% rounds to 1 unit
      {{.base = 1, .ramp_permille = 0}, 1},  // never 0 while base and % are not
      {{.base = 256, .ramp_permille = 1000, .percent = 256, .load_permille = 1000}, 655360},  // the largest
      {{.base = 1, .ramp_permille = 5000, .percent = 9999, .load_permille = 5000},
       2560},  // inputs are capped
  };
  for (const Case& c : cases)
    EXPECT_EQ(effective_weight(c.f), c.want) << c.f.base << " x " << c.f.ramp_permille << "‰ x "
                                             << c.f.percent << "% x " << c.f.load_permille << "‰";
}

TEST(WeightTest, LoadFactorIsOneMinusTheBusierResourceFlooredAtOnePercent) {
  EXPECT_EQ(load_permille(0, 0), 1000u);
  EXPECT_EQ(load_permille(100000, 0), 900u);
  EXPECT_EQ(load_permille(100000, 900000), 100u) << "the busier of cpu and mem counts";
  EXPECT_EQ(load_permille(900000, 100000), 100u);
  EXPECT_EQ(load_permille(990000, 0), 10u);
  EXPECT_EQ(load_permille(1000000, 0), kLoadFloorPermille) << "fully busy keeps 1%";
  EXPECT_EQ(load_permille(995000, 0), kLoadFloorPermille);
  EXPECT_EQ(load_permille(5000000, 0), kLoadFloorPermille) << "more than 1 is taken as 1";
  EXPECT_EQ(load_permille(123456, 0), 877u) << "rounded to the nearest per mille";
}

TEST(WeightTest, DeadbandIgnoresNoiseButFollowsDriftAndEnds) {
  EXPECT_FALSE(load_moved(700, 700));
  EXPECT_FALSE(load_moved(700, 690)) << "a point of cpu noise";
  EXPECT_FALSE(load_moved(700, 719));
  EXPECT_TRUE(load_moved(700, 720)) << "two points is a change";
  EXPECT_TRUE(load_moved(700, 680));
  EXPECT_TRUE(load_moved(990, 1000)) << "idle again: always back to all of it";
  EXPECT_TRUE(load_moved(20, kLoadFloorPermille)) << "the floor is always reached";
  // Near the floor an eighth of the factor is the band: 30 -> 26 is 13% less weight.
  EXPECT_FALSE(load_moved(30, 28));
  EXPECT_TRUE(load_moved(30, 26));
  EXPECT_TRUE(load_moved(12, 11)) << "small factors move by at least one";
  // Drift: small steps that each stay inside the band still add up to a change.
  uint32_t in_use = 900, applied = 0;
  for (uint32_t f = 900; f >= 800; f -= 5)
    if (load_moved(in_use, f)) {
      in_use = f;
      ++applied;
    }
  EXPECT_EQ(in_use, 800u);
  EXPECT_EQ(applied, 5u) << "one change per 20 per mille, not one per report";
}

config::Backend one_server(uint32_t weight = 1) {
  config::Backend b;
  b.name = "b";
  b.health.check = "none";
  config::Server s;
  s.name = "s1";
  s.address = *SocketAddress::parse("127.0.0.1:9000");
  s.weight = weight;
  b.servers.push_back(s);
  return b;
}

AgentReport cpu(double f) {
  AgentReport r;
  r.cpu_ppm = static_cast<uint32_t>(f * 1e6 + 0.5);
  return r;
}

AgentReport state(AgentState s) {
  AgentReport r;
  r.state = s;
  return r;
}

TEST(ServerAgentTest, CpuScalesAWeightOneServer) {
  Backend b(one_server(1));
  Server& s = *b.servers()[0];
  EXPECT_EQ(s.scaled_weight(), kWeightScale);
  s.apply_agent_report(cpu(0.9));
  EXPECT_EQ(s.scaled_weight(), 100u);
  EXPECT_DOUBLE_EQ(s.effective_weight(), 0.1);
  s.apply_agent_report(cpu(1.0));
  EXPECT_EQ(s.scaled_weight(), 10u) << "1% of weight 1";
  EXPECT_TRUE(s.usable()) << "a busy server is still picked now and then";
  EXPECT_EQ(s.base_weight(), 1u) << "the configured meaning is untouched";
  EXPECT_EQ(s.configured_weight(), 1u);
}

TEST(ServerAgentTest, GenerationMovesOnlyOnRealChanges) {
  Backend b(one_server(3));
  Server& s = *b.servers()[0];
  uint64_t g = b.generation();
  s.apply_agent_report(cpu(0.1));
  EXPECT_EQ(s.scaled_weight(), 2700u);
  EXPECT_EQ(b.generation(), g + 1);
  g = b.generation();
  s.apply_agent_report(cpu(0.1));
  s.apply_agent_report(cpu(0.11));  // noise inside the deadband
  s.apply_agent_report(cpu(0.095));
  EXPECT_EQ(b.generation(), g) << "no rebuild storm from noisy samples";
  EXPECT_EQ(s.scaled_weight(), 2700u);
  EXPECT_EQ(s.reported_load().cpu_ppm, 95000u) << "the API shows the latest sample all the same";
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_EQ(b.generation(), g + 1) << "none -> up is a state change (shown in the API)";
  g = b.generation();
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_EQ(b.generation(), g);
  AgentReport both;
  both.state = AgentState::kDrain;
  both.percent = 50;
  s.apply_agent_report(both);
  EXPECT_EQ(b.generation(), g + 1) << "a state and a weight change in one reply: one rebuild";
  EXPECT_EQ(s.agent_results(AgentResult::kOk), 7u);
}

TEST(ServerAgentTest, PartsNotNamedKeepTheirLastValue) {
  Backend b(one_server(2));
  Server& s = *b.servers()[0];
  AgentReport r;
  r.percent = 50;
  r.mem_ppm = 500000;
  s.apply_agent_report(r);
  EXPECT_EQ(s.scaled_weight(), 500u);  // 2 x 50% x (1 - 0.5)
  s.apply_agent_report(cpu(0.2));      // mem 0.5 still counts: max(0.2, 0.5)
  EXPECT_EQ(s.scaled_weight(), 500u);
  s.apply_agent_report(cpu(0.8));
  EXPECT_EQ(s.scaled_weight(), 200u);
  ReportedLoad load = s.reported_load();
  EXPECT_TRUE(load.valid);
  EXPECT_EQ(load.percent, 50u);
  EXPECT_EQ(load.cpu_ppm, 800000u);
  EXPECT_EQ(load.mem_ppm, 500000u);
  EXPECT_EQ(load.load_permille, 200u);
  EXPECT_EQ(load.state, AgentState::kNone);
}

TEST(ServerAgentTest, SlowStartAndAgentCombine) {
  Backend b(one_server(1));
  Server& s = *b.servers()[0];
  s.set_ramp(100);
  s.apply_agent_report(cpu(0.5));
  EXPECT_EQ(s.scaled_weight(), 50u) << "weight 1 at a tenth and half busy: 5% of it";
  s.set_weight(4);
  EXPECT_EQ(s.scaled_weight(), 200u);
  s.set_ramp(1000);
  EXPECT_EQ(s.scaled_weight(), 2000u);
}

TEST(ServerAgentTest, AgentStateSitsBesideTheOperators) {
  Backend b(one_server());
  Server& s = *b.servers()[0];
  ASSERT_TRUE(s.usable());
  s.apply_agent_report(state(AgentState::kDrain));
  EXPECT_FALSE(s.usable());
  EXPECT_EQ(b.state_of(s), State::kDrain);
  EXPECT_TRUE(b.serving().empty());
  s.apply_agent_report(state(AgentState::kDown));
  EXPECT_EQ(b.state_of(s), State::kDown);
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_TRUE(s.usable());
  EXPECT_EQ(b.state_of(s), State::kUp);

  // An operator's drain is not undone by the agent's up ...
  s.set_admin(Admin::kDrain);
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_FALSE(s.usable());
  EXPECT_EQ(b.state_of(s), State::kDrain);
  // ... and the operator's up does not undo the agent's down: each clears only its own.
  s.apply_agent_report(state(AgentState::kDown));
  s.set_admin(Admin::kNone);
  EXPECT_FALSE(s.usable());
  EXPECT_EQ(b.state_of(s), State::kDown);
  s.set_admin(Admin::kDisabled);
  EXPECT_EQ(b.state_of(s), State::kDisabled) << "the operator's word is shown first";
  s.set_admin(Admin::kNone);
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_TRUE(s.usable());
  // The agent's up does not bring back a server its health check holds down.
  s.set_health(Health::kDown);
  s.apply_agent_report(state(AgentState::kUp));
  EXPECT_FALSE(s.usable());
}

TEST(ServerAgentTest, ProblemsKeepTheLastReport) {
  Backend b(one_server(1));
  Server& s = *b.servers()[0];
  AgentReport r = cpu(0.5);
  r.state = AgentState::kDrain;
  s.apply_agent_report(r);
  uint64_t g = b.generation();
  s.record_agent_problem(AgentResult::kFailed, "connection refused [L4CON]");
  s.record_agent_problem(AgentResult::kMalformed, "malformed reply: unknown word 'busy'");
  EXPECT_EQ(b.generation(), g);
  EXPECT_EQ(s.agent_state(), AgentState::kDrain);
  EXPECT_EQ(s.scaled_weight(), 500u);
  ReportedLoad load = s.reported_load();
  EXPECT_EQ(load.last_error, "malformed reply: unknown word 'busy'");
  EXPECT_EQ(s.agent_results(AgentResult::kFailed), 1u);
  EXPECT_EQ(s.agent_results(AgentResult::kMalformed), 1u);
  s.apply_agent_report(cpu(0.5));
  EXPECT_TRUE(s.reported_load().last_error.empty()) << "a good reply clears the error";
}

}  // namespace
}  // namespace fulcrum::upstream
