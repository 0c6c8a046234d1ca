// The UDP proxy (src/l4/udp_proxy.cc) on loopback sockets, the loop driven by the test: one flow
// per client address and port, chosen by the balancer and kept; replies from the listener's
// address; idle flows expire; a server that refuses (ICMP port unreachable) is left for another.
#include "l4/udp_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/socket.h"

namespace fulcrum::l4 {
namespace {

SocketAddress bound_address(int fd) { return SocketAddress::local_of(fd); }

Fd udp_socket() {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
  return fd;
}

class UdpProxyTest : public ::testing::Test {
 protected:
  void start(size_t servers, Millis idle = Millis(30000), std::string balance = "round_robin") {
    config::Backend spec;
    spec.name = "game";
    spec.balance = std::move(balance);
    spec.health.check = "none";
    for (size_t i = 0; i < servers; ++i) {
      servers_.push_back(udp_socket());
      config::Server s;
      s.name = "g" + std::to_string(i);
      s.address = bound_address(servers_.back().get());
      s.address_text = s.address.to_string();
      spec.servers.push_back(s);
    }
    backend_ = std::make_unique<upstream::Backend>(spec);
    picker_ = std::make_unique<lb::Picker>(*backend_, 1);
    listener_spec_.name = "game";
    listener_spec_.protocol = config::Protocol::kUdp;
    listener_spec_.bind = SocketAddress::parse("127.0.0.1:0").value();
    listener_spec_.idle_timeout = idle;
    auto fd = listen_socket(listener_spec_.bind, SocketType::kDatagram);
    ASSERT_TRUE(fd.ok());
    address_ = bound_address(fd->get());
    listener_ = std::make_unique<UdpListener>(loop_, listener_spec_, backend_->spec(), *picker_, stats_,
                                              std::move(*fd));
  }

  // Servers answer "g<i>:<payload>" to whoever sent; returns when pred() holds (~2s at most).
  bool pump(const std::function<bool()>& pred, int rounds = 400) {
    for (int i = 0; i < rounds; ++i) {
      serve();
      if (pred()) return true;
      loop_.run_once(Millis(5));
    }
    serve();
    return pred();
  }
  void serve() {
    char buf[70000];
    for (size_t i = 0; i < servers_.size(); ++i) {
      if (!servers_[i]) continue;
      for (;;) {
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        ssize_t n = ::recvfrom(servers_[i].get(), buf, sizeof(buf), MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 0) break;
        ++received_[i];
        std::string reply = "g" + std::to_string(i) + ":" + std::string(buf, static_cast<size_t>(n));
        ::sendto(servers_[i].get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    }
  }
  void send(int client, const std::string& payload) {
    ASSERT_EQ(::sendto(client, payload.data(), payload.size(), 0, address_.sa(), address_.len()),
              static_cast<ssize_t>(payload.size()));
  }
  // The next reply to `client`, and where it came from; "" on timeout.
  std::string reply(int client, SocketAddress* from = nullptr, int rounds = 400) {
    std::string out;
    pump(
        [&] {
          char buf[70000];
          sockaddr_storage src{};
          socklen_t len = sizeof(src);
          ssize_t n =
              ::recvfrom(client, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&src), &len);
          if (n < 0) return false;
          out.assign(buf, static_cast<size_t>(n));
          if (from) *from = SocketAddress(reinterpret_cast<sockaddr*>(&src), len);
          return true;
        },
        rounds);
    return out;
  }

  EventLoop loop_;
  std::vector<Fd> servers_;
  std::map<size_t, int> received_;
  std::unique_ptr<upstream::Backend> backend_;
  std::unique_ptr<lb::Picker> picker_;
  config::Listener listener_spec_;
  SocketAddress address_;
  metrics::UdpCounters stats_;  // the worker's metrics own them in fulcrum; outlives listener_
  std::unique_ptr<UdpListener> listener_;
};

TEST_F(UdpProxyTest, EachClientPortSticksToOneServer) {
  start(3);
  std::vector<Fd> clients;
  for (int i = 0; i < 6; ++i) clients.push_back(udp_socket());
  std::map<int, std::string> server_of;
  std::map<std::string, int> per_server;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 6; ++i) {
      send(clients[i].get(), "m" + std::to_string(round));
      SocketAddress from;
      std::string r = reply(clients[i].get(), &from);
      ASSERT_FALSE(r.empty()) << "client " << i << " round " << round;
      EXPECT_EQ(from, address_);  // from the listener's address, not the flow socket's
      std::string server = r.substr(0, r.find(':'));
      EXPECT_EQ(r.substr(r.find(':') + 1), "m" + std::to_string(round));
      if (round == 0) {
        server_of[i] = server;
        ++per_server[server];
      } else {
        EXPECT_EQ(server, server_of[i]) << "client " << i << " moved";
      }
    }
  }
  // Round robin over new flows: two clients per server.
  EXPECT_EQ(per_server.size(), 3u);
  for (auto& [s, n] : per_server) EXPECT_EQ(n, 2) << s;
  EXPECT_EQ(listener_->flows(), 6u);
  EXPECT_EQ(listener_->stats().flows_created.get(), 6u);
  EXPECT_EQ(listener_->stats().datagrams_in.get(), 24u);
  EXPECT_EQ(listener_->stats().datagrams_out.get(), 24u);
  EXPECT_EQ(&listener_->stats(), &stats_);  // counts into the struct it was given
  EXPECT_EQ(stats_.active_flows.get(), 6u);
  EXPECT_EQ(stats_.bytes_in.get(), 24u * 2);         // "m0".."m3"
  EXPECT_EQ(stats_.bytes_out.get(), 24u * (2 + 3));  // "gN:" + payload
  EXPECT_EQ(stats_.dropped_send.get() + stats_.dropped_socket.get(), 0u);
  for (auto& s : backend_->servers()) EXPECT_EQ(s->active(), 2);  // least_conn sees flows
}

TEST_F(UdpProxyTest, LargeDatagramsPassWhole) {
  start(1);
  Fd c = udp_socket();
  int buf = 1 << 20;
  setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  std::string big(60000, 'x');
  send(c.get(), big);
  EXPECT_EQ(reply(c.get()), "g0:" + big);
}

TEST_F(UdpProxyTest, IdleFlowsExpire) {
  start(2, Millis(100));
  Fd c = udp_socket();
  send(c.get(), "a");
  std::string first = reply(c.get());
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(listener_->flows(), 1u);
  ASSERT_TRUE(pump([&] { return listener_->flows() == 0; }));
  EXPECT_EQ(listener_->stats().flows_expired.get(), 1u);
  EXPECT_EQ(backend_->servers()[0]->active() + backend_->servers()[1]->active(), 0);
  // The next datagram opens a new flow; round robin moves it to the other server.
  send(c.get(), "b");
  std::string second = reply(c.get());
  ASSERT_FALSE(second.empty());
  EXPECT_NE(first.substr(0, 2), second.substr(0, 2));
  EXPECT_EQ(listener_->stats().flows_created.get(), 2u);
}

TEST_F(UdpProxyTest, TrafficKeepsAFlowAlive) {
  start(1, Millis(150));
  Fd c = udp_socket();
  for (int i = 0; i < 6; ++i) {
    send(c.get(), "x");
    ASSERT_FALSE(reply(c.get()).empty());
    pump([] { return false; }, 10);  // ~50ms
  }
  EXPECT_EQ(listener_->stats().flows_created.get(), 1u);
  EXPECT_EQ(listener_->stats().flows_expired.get(), 0u);
}

TEST_F(UdpProxyTest, RefusingServerIsLeftForAnother) {
  start(2);
  servers_[0].reset();  // g0's port is closed: datagrams to it meet ICMP port unreachable
  std::vector<Fd> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(udp_socket());
  for (auto& c : clients) {
    // The first datagram of a flow on g0 is lost (its refusal is only known afterwards); the
    // client retries, as UDP clients do, and the retry goes to g1.
    std::string r;
    for (int attempt = 0; attempt < 3 && r.empty(); ++attempt) {
      send(c.get(), "hi");
      r = reply(c.get(), nullptr, 40);
    }
    EXPECT_EQ(r, "g1:hi");
  }
  EXPECT_GE(listener_->stats().flows_failed.get(), 1u);
  EXPECT_GE(backend_->servers()[0]->failures(), 1u);
}

TEST_F(UdpProxyTest, NoServerDropsAndCounts) {
  start(1);
  backend_->servers()[0]->set_health(upstream::Health::kDown);
  Fd c = udp_socket();
  send(c.get(), "x");
  EXPECT_TRUE(pump([&] { return listener_->stats().dropped_no_server.get() == 1; }));
  EXPECT_EQ(listener_->flows(), 0u);
  EXPECT_EQ(stats_.flows_created.get(), 0u);
  EXPECT_EQ(stats_.datagrams_in.get(), 0u);
}

TEST_F(UdpProxyTest, StopClosesFlows) {
  start(1);
  Fd c = udp_socket();
  send(c.get(), "x");
  ASSERT_FALSE(reply(c.get()).empty());
  listener_->stop_accepting();
  EXPECT_EQ(listener_->flows(), 0u);
  EXPECT_EQ(backend_->servers()[0]->active(), 0);
  EXPECT_EQ(stats_.flows_stopped.get(), 1u);
  loop_.run_once(Millis(0));  // deletes the closed flows
}

// Every flow opened ends in exactly one way (idle, failed, stopped) or is still open, and the
// counters stay readable after the listener is gone (a reload retires it; /metrics still sums it).
TEST_F(UdpProxyTest, EveryFlowIsAccountedForAndCountersOutliveTheListener) {
  start(2, Millis(100));
  Fd idle = udp_socket();
  send(idle.get(), "a");
  ASSERT_FALSE(reply(idle.get()).empty());
  ASSERT_TRUE(pump([&] { return stats_.flows_expired.get() == 1; }));
  std::vector<Fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(udp_socket());
    send(clients.back().get(), "bb");
    ASSERT_FALSE(reply(clients.back().get()).empty());
  }
  EXPECT_EQ(stats_.flows_created.get(), 4u);
  EXPECT_EQ(stats_.active_flows.get(), 3u);
  listener_.reset();  // as a retired worker does: stop, then destroy
  loop_.run_once(Millis(0));
  EXPECT_EQ(stats_.active_flows.get(), 0u);
  EXPECT_EQ(stats_.flows_stopped.get(), 3u);
  EXPECT_EQ(stats_.flows_created.get(), stats_.active_flows.get() + stats_.flows_expired.get() +
                                            stats_.flows_failed.get() + stats_.flows_stopped.get());
  EXPECT_EQ(stats_.datagrams_in.get(), 4u);
  EXPECT_EQ(stats_.datagrams_out.get(), 4u);
  EXPECT_EQ(stats_.bytes_in.get(), 1u + 3 * 2);
  EXPECT_EQ(stats_.bytes_out.get(), 4u * 3 + 1 + 3 * 2);
}

TEST(UdpFlowKey, DistinguishesPortAndAddress) {
  auto a = UdpListener::key_of(SocketAddress::parse("127.0.0.1:1000").value());
  auto b = UdpListener::key_of(SocketAddress::parse("127.0.0.1:1001").value());
  auto c = UdpListener::key_of(SocketAddress::parse("127.0.0.2:1000").value());
  auto d = UdpListener::key_of(SocketAddress::parse("[::1]:1000").value());
  EXPECT_EQ(a, UdpListener::key_of(SocketAddress::parse("127.0.0.1:1000").value()));
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_FALSE(a == d);
}

}  // namespace
}  // namespace fulcrum::l4
