#include <gtest/gtest.h>

#include "health/kinds.h"
#include "health/privileges.h"
#include "health/probe_util.h"

namespace fulcrum::health {
namespace {

using testing::backend_spec;
using testing::run_probe;

Outcome ping(const std::string& address, Millis timeout = Millis(1000)) {
  upstream::Backend b(backend_spec("icmp", {address}));
  EventLoop loop;
  auto check = make_icmp_check(b, loop);
  return run_probe(*check, loop, *b.servers()[0], timeout);
}

TEST(IcmpCheckTest, LoopbackAnswersEcho) {
  Outcome o = ping("127.0.0.1:0");
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "echo reply");
}

TEST(IcmpCheckTest, Ipv6LoopbackAnswersEcho) {
  Outcome o = ping("[::1]:80");
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
}

TEST(IcmpCheckTest, SeveralServersOnOneSocketGetTheirOwnReplies) {
  upstream::Backend b(backend_spec("icmp", {"127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0"}));
  EventLoop loop;
  auto check = make_icmp_check(b, loop);
  std::vector<std::optional<Outcome>> out(3);
  std::vector<std::unique_ptr<Probe>> probes;
  for (size_t i = 0; i < 3; ++i)
    probes.push_back(check->probe(*b.servers()[i], [&out, i](Outcome o) { out[i] = std::move(o); }));
  auto until = Clock::now() + Millis(1000);
  while ((!out[0] || !out[1] || !out[2]) && Clock::now() < until) loop.run_once(Millis(5));
  for (auto& o : out) {
    ASSERT_TRUE(o.has_value());
    EXPECT_TRUE(o->passed()) << o->detail;
  }
}

TEST(IcmpCheckTest, NoReplyTimesOut) {
  // A namespace of our own where the kernel ignores echo requests (the sysctl is per namespace).
  std::optional<Outcome> o;
  bool ok =
      testing::in_new_netns([&] { o = ping("127.0.0.1:0", Millis(200)); },
                            [] { testing::write_sysctl("/proc/sys/net/ipv4/icmp_echo_ignore_all", "1"); });
  if (!ok) GTEST_SKIP() << "no network namespaces here";
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, Reason::kIcmpTimeout) << o->detail;
  EXPECT_EQ(o->detail, "no echo reply after 200ms");
  EXPECT_EQ(testing::read_sysctl("/proc/sys/net/ipv4/icmp_echo_ignore_all"), "0");  // ours is untouched
}

TEST(IcmpCheckTest, NoRouteIsUnreachable) {
  std::optional<Outcome> o;
  if (!testing::in_new_netns([&] { o = ping("10.200.0.1:0", Millis(200)); })) GTEST_SKIP();
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, Reason::kIcmpUnreachable) << o->detail;
}

TEST(IcmpCheckTest, WithoutRawSocketsEveryProbeFailsLocally) {
  std::optional<Outcome> o;
  if (testing::read_sysctl("/proc/sys/net/ipv4/ping_group_range") != "1\t0")
    GTEST_SKIP() << "ping sockets allowed";
  ASSERT_TRUE(testing::without_net_raw([&] { o = ping("127.0.0.1:0"); }));
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, Reason::kLocalError) << o->detail;
}

}  // namespace
}  // namespace fulcrum::health
