#include "upstream/server.h"

#include <gtest/gtest.h>

namespace fulcrum::upstream {
namespace {

config::Backend make_backend(int primaries, int spares, const std::string& check = "tcp") {
  config::Backend b;
  b.name = "b";
  b.health.check = check;
  for (int i = 0; i < primaries + spares; ++i) {
    config::Server s;
    s.name = (i < primaries ? "p" : "s") + std::to_string(i < primaries ? i + 1 : i - primaries + 1);
    s.address = *SocketAddress::parse("127.0.0.1:" + std::to_string(9000 + i));
    s.backup = i >= primaries;
    b.servers.push_back(s);
  }
  return b;
}

std::vector<std::string> names(const std::vector<Server*>& v) {
  std::vector<std::string> out;
  for (auto* s : v) out.push_back(s->name());
  return out;
}

void all_up(Backend& b) {
  for (auto& s : b.servers()) s->set_health(Health::kUp);
}

TEST(BackendTest, ServersWithoutCheckStartUpOthersChecking) {
  Backend none(make_backend(2, 0, "none"));
  EXPECT_EQ(none.serving().size(), 2u);
  Backend checked(make_backend(2, 0, "tcp"));
  EXPECT_TRUE(checked.serving().empty());
  EXPECT_EQ(checked.state_of(*checked.servers()[0]), State::kChecking);
}

TEST(BackendTest, SparesStandByWhilePrimariesServe) {
  Backend b(make_backend(3, 2));
  all_up(b);
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"p1", "p2", "p3"}));
  EXPECT_EQ(b.state_of(*b.find("s1")), State::kStandby);
}

TEST(BackendTest, EachDownPrimaryIsReplacedByOneSpareInOrder) {  // N+M
  Backend b(make_backend(3, 2));
  all_up(b);
  b.find("p2")->set_health(Health::kDown);
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"p1", "p3", "s1"}));
  EXPECT_EQ(b.state_of(*b.find("s1")), State::kUp);
  EXPECT_EQ(b.state_of(*b.find("s2")), State::kStandby);
  b.find("p1")->set_admin(Admin::kDrain);
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"p3", "s1", "s2"}));
  b.find("p3")->set_health(Health::kDown);  // three missing, two spares: keep what there is
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"s1", "s2"}));
  // The primary comes back: its spare returns to standby.
  b.find("p2")->set_health(Health::kUp);
  b.find("p1")->set_admin(Admin::kNone);
  b.find("p3")->set_health(Health::kUp);
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"p1", "p2", "p3"}));
  EXPECT_EQ(b.state_of(*b.find("s1")), State::kStandby);
}

TEST(BackendTest, DownSpareIsSkipped) {
  Backend b(make_backend(1, 2));
  all_up(b);
  b.find("s1")->set_health(Health::kDown);
  b.find("p1")->set_health(Health::kDown);
  EXPECT_EQ(names(b.serving()), (std::vector<std::string>{"s2"}));
}

TEST(BackendTest, StateChangesMoveTheGeneration) {
  Backend b(make_backend(2, 0));
  uint64_t g = b.generation();
  b.find("p1")->set_health(Health::kUp);
  EXPECT_GT(b.generation(), g);
  g = b.generation();
  b.find("p1")->set_health(Health::kUp);  // no change, no bump
  EXPECT_EQ(b.generation(), g);
  b.find("p1")->set_weight(7);
  EXPECT_GT(b.generation(), g);
}

TEST(ServerTest, EwmaDecaysTowardNewSamples) {
  Backend b(make_backend(1, 0));
  Server& s = *b.servers()[0];
  EXPECT_EQ(s.ewma_us(), 0u);
  s.record_time_us(1000);
  EXPECT_EQ(s.ewma_us(), 1000u);
  for (int i = 0; i < 40; ++i) s.record_time_us(100);
  EXPECT_LT(s.ewma_us(), 120u);
  EXPECT_GE(s.ewma_us(), 100u);
}

}  // namespace
}  // namespace fulcrum::upstream
