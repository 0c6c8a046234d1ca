#include <gtest/gtest.h>

#include "health/kinds.h"
#include "health/probe_util.h"

namespace fulcrum::health {
namespace {

using testing::backend_spec;
using testing::Listener;
using testing::run_probe;

TEST(TcpCheckTest, PassesOnAListeningPort) {
  Listener l;
  upstream::Backend b(backend_spec("tcp", {l.address()}));
  EventLoop loop;
  auto check = make_tcp_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(1000));
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "connected");
}

TEST(TcpCheckTest, ClosedPortIsRefused) {
  upstream::Backend b(backend_spec("tcp", {testing::closed_address()}));
  EventLoop loop;
  auto check = make_tcp_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(1000));
  EXPECT_EQ(o.reason, Reason::kL4Refused);
  EXPECT_EQ(o.detail, "connection refused");
  EXPECT_STREQ(reason_code(o.reason), "L4CON");
}

TEST(TcpCheckTest, FullAcceptQueueTimesOut) {
  // A listener that never accepts, its queue filled: the kernel drops further SYNs, so our
  // connect neither completes nor fails (tcp_abort_on_overflow is 0 by default).
  Listener l(0);
  std::vector<Fd> fillers;
  for (int i = 0; i < 4; ++i) {
    bool pending = false;
    auto fd = connect_socket(*SocketAddress::parse(l.address()), &pending);
    if (fd) fillers.push_back(std::move(*fd));
  }
  std::this_thread::sleep_for(Millis(50));
  upstream::Backend b(backend_spec("tcp", {l.address()}));
  EventLoop loop;
  auto check = make_tcp_check(b, loop);
  Outcome o = run_probe(*check, loop, *b.servers()[0], Millis(300));
  EXPECT_EQ(o.reason, Reason::kL4Timeout) << o.detail;
  EXPECT_EQ(o.detail, "timeout after 300ms connecting");
}

TEST(TcpCheckTest, RegistryKnowsEveryKindAndNone) {
  for (auto word : {"tcp", "tcp_half_open", "http", "icmp", "none"})
    EXPECT_NE(find_kind(word), nullptr) << word;
  EXPECT_EQ(find_kind("none")->make, nullptr);
  EXPECT_EQ(find_kind("smtp"), nullptr);
}

TEST(TcpCheckTest, ReasonCodesAreDistinct) {
  for (size_t i = 0; i < kReasonCount; ++i)
    for (size_t j = i + 1; j < kReasonCount; ++j)
      EXPECT_STRNE(reason_code(static_cast<Reason>(i)), reason_code(static_cast<Reason>(j)));
  EXPECT_EQ(format_millis(Millis(1000)), "1s");
  EXPECT_EQ(format_millis(Millis(1500)), "1.5s");
  EXPECT_EQ(format_millis(Millis(250)), "250ms");
}

}  // namespace
}  // namespace fulcrum::health
