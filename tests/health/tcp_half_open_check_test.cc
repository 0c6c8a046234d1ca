#include <gtest/gtest.h>

#include "health/kinds.h"
#include "health/privileges.h"
#include "health/probe_util.h"

namespace fulcrum::health {
namespace {

using testing::backend_spec;
using testing::Listener;
using testing::run_probe;

Outcome syn(const std::string& address, Millis timeout = Millis(1000)) {
  upstream::Backend b(backend_spec("tcp_half_open", {address}));
  EventLoop loop;
  auto check = make_tcp_half_open_check(b, loop);
  EXPECT_EQ(check->kind(), "tcp_half_open");
  return run_probe(*check, loop, *b.servers()[0], timeout);
}

TEST(TcpHalfOpenCheckTest, ListeningPortAnswersSynAckAndNoConnectionIsMade) {
  Listener l;
  Outcome o = syn(l.address());
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  EXPECT_EQ(o.detail, "SYN-ACK");
  // The handshake was never completed (our RST ended it), so there is nothing to accept.
  std::this_thread::sleep_for(Millis(50));
  EXPECT_LT(accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK), 0);
  EXPECT_EQ(errno, EAGAIN);
}

TEST(TcpHalfOpenCheckTest, ClosedPortAnswersRst) {
  Outcome o = syn(testing::closed_address());
  EXPECT_EQ(o.reason, Reason::kL4Refused) << o.detail;
  EXPECT_EQ(o.detail, "connection refused (RST)");
}

TEST(TcpHalfOpenCheckTest, Ipv6Loopback) {
  auto fd = listen_socket(*SocketAddress::parse("[::1]:0"));
  ASSERT_TRUE(fd);
  SocketAddress a;
  *a.len_ptr() = sizeof(sockaddr_storage);
  getsockname(fd->get(), a.sa(), a.len_ptr());
  Outcome o = syn(a.to_string());
  EXPECT_EQ(o.reason, Reason::kPass) << o.detail;
  fd = Result<Fd>(Fd());  // close it: the port now refuses
  EXPECT_EQ(syn(a.to_string()).reason, Reason::kL4Refused);
}

TEST(TcpHalfOpenCheckTest, DroppedSynTimesOut) {
  Listener l(0);  // never accepts; once its queue is full the kernel drops SYNs
  std::vector<Fd> fillers;
  for (int i = 0; i < 4; ++i) {
    bool pending = false;
    if (auto fd = connect_socket(*SocketAddress::parse(l.address()), &pending))
      fillers.push_back(std::move(*fd));
  }
  std::this_thread::sleep_for(Millis(50));
  Outcome o = syn(l.address(), Millis(300));
  EXPECT_EQ(o.reason, Reason::kL4Timeout) << o.detail;
  EXPECT_EQ(o.detail, "timeout after 300ms waiting for SYN-ACK");
}

TEST(TcpHalfOpenCheckTest, ManyServersAtOnceOnOneRawSocket) {
  Listener a, b;
  std::string closed = testing::closed_address();
  upstream::Backend be(backend_spec("tcp_half_open", {a.address(), closed, b.address()}));
  EventLoop loop;
  auto check = make_tcp_half_open_check(be, loop);
  std::vector<std::optional<Outcome>> out(3);
  std::vector<std::unique_ptr<Probe>> probes;
  for (size_t i = 0; i < 3; ++i)
    probes.push_back(check->probe(*be.servers()[i], [&out, i](Outcome o) { out[i] = std::move(o); }));
  auto until = Clock::now() + Millis(1000);
  while ((!out[0] || !out[1] || !out[2]) && Clock::now() < until) loop.run_once(Millis(5));
  ASSERT_TRUE(out[0] && out[1] && out[2]);
  EXPECT_EQ(out[0]->reason, Reason::kPass);
  EXPECT_EQ(out[1]->reason, Reason::kL4Refused);
  EXPECT_EQ(out[2]->reason, Reason::kPass);
}

TEST(TcpHalfOpenCheckTest, WithoutCapNetRawFallsBackToTcp) {
  Listener l;
  std::string kind;
  std::optional<Outcome> o;
  ASSERT_TRUE(testing::without_net_raw([&] {
    upstream::Backend b(backend_spec("tcp_half_open", {l.address()}));
    EventLoop loop;
    auto check = make_tcp_half_open_check(b, loop);
    kind = std::string(check->kind());
    o = run_probe(*check, loop, *b.servers()[0], Millis(1000));
  }));
  EXPECT_EQ(kind, "tcp");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, Reason::kPass) << o->detail;
  EXPECT_EQ(o->detail, "connected");
}

}  // namespace
}  // namespace fulcrum::health
