// Picker: a worker's balancer for one backend, rebuilt when a server's state or weight moves
// the backend's generation. Never a down server; spares stand in for missing primaries.
#include <gtest/gtest.h>

#include <set>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::backend_spec;
using testing::ServerSpec;
using testing::weighted;

using upstream::Health;

std::set<std::string> names_picked(Picker& p, int n, const PickContext& ctx = {}) {
  std::set<std::string> out;
  for (int i = 0; i < n; ++i) {
    upstream::Server* s = p.pick(ctx);
    if (s) out.insert(s->name());
  }
  return out;
}

class PickerByAlgorithm : public ::testing::TestWithParam<const Algorithm*> {};

TEST_P(PickerByAlgorithm, NeverPicksADownServer) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1}), std::string(GetParam()->word)));
  Picker picker(backend, 3);
  SocketAddress client = testing::ipv4(0x0a000001);
  // Different clients and keys, so the hashing algorithms reach every server.
  auto spread = [&](int n) {
    std::set<std::string> out;
    for (int i = 0; i < n; ++i) {
      std::string key = "k" + std::to_string(i);
      client = testing::ipv4(0x0a000000u + static_cast<uint32_t>(i));
      PickContext ctx;
      ctx.key = key;
      ctx.client = &client;
      upstream::Server* s = picker.pick(ctx);
      if (s) {
        out.insert(s->name());
        s->begin();
        s->end();
      }
    }
    return out;
  };
  EXPECT_EQ(spread(300), (std::set<std::string>{"s0", "s1", "s2"}));
  backend.servers()[2]->set_health(Health::kDown);
  EXPECT_EQ(spread(300), (std::set<std::string>{"s0", "s1"}));
  backend.servers()[2]->set_health(Health::kUp);
  EXPECT_EQ(spread(300), (std::set<std::string>{"s0", "s1", "s2"}));
  backend.servers()[0]->set_admin(upstream::Admin::kDrain);
  backend.servers()[1]->set_weight(0);
  EXPECT_EQ(spread(300), (std::set<std::string>{"s2"}));
}

std::vector<const Algorithm*> rows() {
  std::vector<const Algorithm*> out;
  for (const Algorithm& a : algorithms()) out.push_back(&a);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Registry, PickerByAlgorithm, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<const Algorithm*>& info) {
                           return std::string(info.param->word);
                         });

TEST(Picker, BackupStandsInForAMissingPrimary) {
  upstream::Backend backend(backend_spec({{"a"}, {"b"}, {"spare", 1, true}}));
  Picker picker(backend, 1);
  EXPECT_EQ(names_picked(picker, 100), (std::set<std::string>{"a", "b"})) << "spare used while idle";
  backend.find("a")->set_health(Health::kDown);
  EXPECT_EQ(names_picked(picker, 100), (std::set<std::string>{"b", "spare"}));
  backend.find("a")->set_health(Health::kUp);
  EXPECT_EQ(names_picked(picker, 100), (std::set<std::string>{"a", "b"}));
}

TEST(Picker, AllDownPicksNothing) {
  upstream::Backend backend(backend_spec({{"a"}, {"b"}, {"spare", 1, true}}));
  Picker picker(backend, 1);
  backend.find("a")->set_health(Health::kDown);
  backend.find("b")->set_health(Health::kDown);
  EXPECT_EQ(names_picked(picker, 10), (std::set<std::string>{"spare"}));
  backend.find("spare")->set_health(Health::kDown);
  PickContext ctx;
  EXPECT_EQ(picker.pick(ctx), nullptr);
  backend.find("b")->set_health(Health::kUp);
  EXPECT_EQ(names_picked(picker, 10), (std::set<std::string>{"b"}));
}

TEST(Picker, CheckingServersTakeNoTraffic) {
  // With a health check configured, servers start `checking` and take nothing until up.
  auto spec = backend_spec({{"a"}, {"b"}});
  spec.health.check = "tcp";
  upstream::Backend backend(spec);
  Picker picker(backend, 1);
  PickContext ctx;
  EXPECT_EQ(picker.pick(ctx), nullptr);
  backend.find("b")->set_health(Health::kUp);
  EXPECT_EQ(names_picked(picker, 10), (std::set<std::string>{"b"}));
}

TEST(Picker, WeightChangeIsSeen) {
  upstream::Backend backend(backend_spec({{"a", 1}, {"b", 1}}));
  Picker picker(backend, 1);
  PickContext ctx;
  int a = 0;
  for (int i = 0; i < 100; ++i) a += picker.pick(ctx)->name() == "a";
  EXPECT_EQ(a, 50);
  backend.find("a")->set_weight(3);
  a = 0;
  for (int i = 0; i < 100; ++i) a += picker.pick(ctx)->name() == "a";
  EXPECT_EQ(a, 75);
}

TEST(Picker, UnknownWordFallsBackToRoundRobin) {
  upstream::Backend backend(backend_spec({{"a"}, {"b"}}, "no_such_algorithm"));
  Picker picker(backend, 1);
  EXPECT_EQ(names_picked(picker, 10), (std::set<std::string>{"a", "b"}));
}

TEST(Picker, TriedServersAreSkipped) {
  upstream::Backend backend(backend_spec({{"a"}, {"b"}, {"c"}}, "least_conn"));
  Picker picker(backend, 1);
  TriedSet tried;
  PickContext ctx;
  ctx.tried = &tried;
  std::set<std::string> seen;
  while (upstream::Server* s = picker.pick(ctx)) {
    ASSERT_TRUE(seen.insert(s->name()).second);
    tried.add(s->index());
  }
  EXPECT_EQ(seen.size(), 3u);
}

}  // namespace
}  // namespace fulcrum::lb
