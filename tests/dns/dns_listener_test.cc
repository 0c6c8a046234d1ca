// The DNS listener (src/dns/dns_listener.cc) on loopback sockets, the loop driven by the test:
// UDP batches, replies from the address queried (wildcard binds), TCP framing with pipelined and
// split queries, TC then TCP, malformed input closing a TCP connection, and stop.
#include "dns/dns_listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "core/socket.h"
#include "dns/dns_fixture.h"

namespace fulcrum::dns {
namespace {

using testing::decode;
using testing::Decoded;
using testing::make_query;

class DnsListenerTest : public ::testing::Test {
 protected:
  void start(const std::vector<testing::ServerSpec>& servers, const char* bind = "127.0.0.1:0",
             uint32_t answers = 0) {
    backend_ = std::make_unique<upstream::Backend>(testing::backend_spec(servers));
    spec_.name = "dns";
    spec_.protocol = config::Protocol::kDns;
    spec_.bind = SocketAddress::parse(bind).value();
    // A free UDP port whose TCP twin is free too (other tests on this machine take TCP ports).
    for (int attempt = 0; attempt < 50 && !listener_; ++attempt) {
      auto udp = listen_socket(spec_.bind, SocketType::kDatagram);
      ASSERT_TRUE(udp.ok());
      port_ = SocketAddress::local_of(udp->get()).port();
      SocketAddress same = spec_.bind;
      same.set_port(port_);
      auto tcp = listen_socket(same, SocketType::kStream);
      if (!tcp.ok()) continue;
      zone_ = {"www.example.com", backend_.get(), 30, answers};
      listener_ = std::make_unique<DnsListener>(loop_, spec_, std::span<const ZoneConfig>(&zone_, 1), 0,
                                                stats_, std::move(*udp), std::move(*tcp));
    }
    ASSERT_TRUE(listener_) << "no free UDP+TCP port pair";
  }

  // Runs the loop until pred() holds, for at most ~2s.
  bool pump(const std::function<bool()>& pred) {
    for (int i = 0; i < 400; ++i) {
      if (pred()) return true;
      loop_.run_once(Millis(5));
    }
    return pred();
  }

  Fd udp_client() {
    Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    return fd;
  }
  void send_to(int fd, const std::vector<uint8_t>& q, const char* ip = "127.0.0.1") {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    inet_pton(AF_INET, ip, &to.sin_addr);
    ASSERT_EQ(::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(q.size()));
  }
  // One datagram, with the address it came from.
  bool recv_reply(int fd, std::vector<uint8_t>* out, sockaddr_in* from = nullptr) {
    std::vector<uint8_t> buf(65536);
    sockaddr_in src{};
    socklen_t len = sizeof(src);
    bool got = pump([&] {
      ssize_t n =
          ::recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&src), &len);
      if (n < 0) return false;
      buf.resize(static_cast<size_t>(n));
      return true;
    });
    if (got) {
      *out = buf;
      if (from) *from = src;
    }
    return got;
  }

  Fd tcp_client() {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to));
    return fd;
  }
  static std::vector<uint8_t> framed(const std::vector<uint8_t>& q) {
    std::vector<uint8_t> out(2 + q.size());
    out[0] = static_cast<uint8_t>(q.size() >> 8);
    out[1] = static_cast<uint8_t>(q.size());
    std::copy(q.begin(), q.end(), out.begin() + 2);
    return out;
  }
  void write_all(int fd, const std::vector<uint8_t>& bytes) {
    size_t off = 0;
    ASSERT_TRUE(pump([&] {
      ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n > 0) off += static_cast<size_t>(n);
      return off == bytes.size();
    }));
  }
  // Reads `count` framed messages; fewer if the connection closes first.
  std::vector<std::vector<uint8_t>> read_framed(int fd, size_t count, bool* eof = nullptr) {
    std::vector<uint8_t> buf;
    std::vector<std::vector<uint8_t>> msgs;
    bool closed = false;
    pump([&] {
      uint8_t tmp[65536];
      ssize_t n = ::recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
      if (n == 0) closed = true;
      if (n > 0) buf.insert(buf.end(), tmp, tmp + n);
      while (buf.size() >= 2) {
        size_t len = static_cast<size_t>(buf[0] << 8 | buf[1]);
        if (buf.size() < 2 + len) break;
        msgs.emplace_back(buf.begin() + 2, buf.begin() + 2 + static_cast<long>(len));
        buf.erase(buf.begin(), buf.begin() + 2 + static_cast<long>(len));
      }
      return closed || msgs.size() >= count;
    });
    if (eof) *eof = closed;
    return msgs;
  }
  bool wait_closed(int fd) {
    return pump([&] {
      uint8_t tmp[4096];
      ssize_t n = ::recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
      return n == 0 || (n < 0 && errno != EAGAIN);
    });
  }

  EventLoop loop_;
  config::Listener spec_;
  std::unique_ptr<upstream::Backend> backend_;
  ZoneConfig zone_;
  DnsStats stats_;  // before the listener, which counts into it
  std::unique_ptr<DnsListener> listener_;
  uint16_t port_ = 0;
};

TEST_F(DnsListenerTest, UdpQueryIsAnsweredFromTheListenerAddress) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}, {"10.0.0.2:80"}}));
  Fd c = udp_client();
  send_to(c.get(), make_query("www.example.com", kTypeA));
  std::vector<uint8_t> reply;
  sockaddr_in from{};
  ASSERT_TRUE(recv_reply(c.get(), &reply, &from));
  Decoded d = decode(reply);
  EXPECT_EQ(d.answers.size(), 2u);
  EXPECT_EQ(ntohs(from.sin_port), port_);
  EXPECT_EQ(ntohl(from.sin_addr.s_addr), INADDR_LOOPBACK);
}

TEST_F(DnsListenerTest, WildcardBindRepliesFromTheAddressQueried) {
  // 127.0.0.2 is on lo too: a reply from 127.0.0.1 would be dropped by a real resolver.
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}}, "0.0.0.0:0"));
  Fd c = udp_client();
  send_to(c.get(), make_query("www.example.com", kTypeA), "127.0.0.2");
  std::vector<uint8_t> reply;
  sockaddr_in from{};
  ASSERT_TRUE(recv_reply(c.get(), &reply, &from));
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &from.sin_addr, text, sizeof(text));
  EXPECT_STREQ(text, "127.0.0.2");
  EXPECT_EQ(decode(reply).answers.size(), 1u);
}

TEST_F(DnsListenerTest, ManyQueriesInBatches) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}}, "127.0.0.1:0", 1));
  Fd c = udp_client();
  int rcvbuf = 1 << 20;
  setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  constexpr int kQueries = 150;  // several batches of 32
  for (int i = 0; i < kQueries; ++i) {
    testing::QueryOptions o;
    o.id = static_cast<uint16_t>(i);
    send_to(c.get(), make_query("www.example.com", kTypeA, o));
  }
  std::set<uint16_t> ids;
  std::map<std::string, int> leads;
  for (int i = 0; i < kQueries; ++i) {
    std::vector<uint8_t> reply;
    ASSERT_TRUE(recv_reply(c.get(), &reply)) << i;
    Decoded d = decode(reply);
    ids.insert(d.id);
    ASSERT_EQ(d.answers.size(), 1u);
    ++leads[d.answers[0]];
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kQueries));
  for (auto& [a, n] : leads) EXPECT_EQ(n, kQueries / 3) << a;
  EXPECT_EQ(listener_->stats().answered.get(), static_cast<uint64_t>(kQueries));
}

TEST_F(DnsListenerTest, MalformedUdpIsDroppedAndTheNextAnswered) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}}));
  Fd c = udp_client();
  send_to(c.get(), {1, 2, 3});
  auto q = make_query("www.example.com", kTypeA);
  q[5] = 3;
  send_to(c.get(), q);
  send_to(c.get(), make_query("www.example.com", kTypeA));
  std::vector<uint8_t> reply;
  ASSERT_TRUE(recv_reply(c.get(), &reply));
  EXPECT_EQ(decode(reply).answers.size(), 1u);  // the first reply is the good query's
  EXPECT_EQ(listener_->stats().malformed[static_cast<size_t>(ParseError::kShort)].get(), 1u);
  EXPECT_EQ(listener_->stats().malformed[static_cast<size_t>(ParseError::kQdcount)].get(), 1u);
}

TEST_F(DnsListenerTest, TcpPipelinedAndSplitQueries) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}, {"10.0.0.2:80"}}));
  Fd c = tcp_client();
  std::vector<uint8_t> bytes;
  for (uint16_t id = 1; id <= 3; ++id) {
    testing::QueryOptions o;
    o.id = id;
    auto f = framed(make_query("www.example.com", id == 2 ? 15 : kTypeA, o));
    bytes.insert(bytes.end(), f.begin(), f.end());
  }
  write_all(c.get(), bytes);
  auto msgs = read_framed(c.get(), 3);
  ASSERT_EQ(msgs.size(), 3u);
  for (uint16_t i = 0; i < 3; ++i) EXPECT_EQ(decode(msgs[i]).id, i + 1);
  EXPECT_EQ(decode(msgs[0]).answers.size(), 2u);
  EXPECT_TRUE(decode(msgs[1]).answers.empty());
  // One query split byte by byte across writes, on the same connection.
  auto f = framed(make_query("www.example.com", kTypeA));
  for (uint8_t b : f) {
    write_all(c.get(), {b});
    loop_.run_once(Millis(0));
  }
  msgs = read_framed(c.get(), 1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(decode(msgs[0]).answers.size(), 2u);
  EXPECT_EQ(listener_->tcp_connections(), 1u);
}

TEST_F(DnsListenerTest, TruncatedOverUdpThenAnsweredOverTcp) {
  ASSERT_NO_FATAL_FAILURE(start(testing::v4_servers(100)));
  Fd u = udp_client();
  send_to(u.get(), make_query("www.example.com", kTypeA));
  std::vector<uint8_t> reply;
  ASSERT_TRUE(recv_reply(u.get(), &reply));
  Decoded d = decode(reply);
  EXPECT_TRUE(d.tc);
  EXPECT_TRUE(d.answers.empty());
  Fd t = tcp_client();
  write_all(t.get(), framed(make_query("www.example.com", kTypeA)));
  auto msgs = read_framed(t.get(), 1);
  ASSERT_EQ(msgs.size(), 1u);
  d = decode(msgs[0]);
  EXPECT_FALSE(d.tc);
  EXPECT_EQ(d.answers.size(), 100u);
}

TEST_F(DnsListenerTest, MalformedTcpClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}}));
  Fd c = tcp_client();
  auto bad = make_query("www.example.com", kTypeA);
  bad[5] = 0;  // QDCOUNT 0
  auto bytes = framed(make_query("www.example.com", kTypeA));
  auto b = framed(bad);
  bytes.insert(bytes.end(), b.begin(), b.end());
  write_all(c.get(), bytes);
  bool eof = false;
  auto msgs = read_framed(c.get(), 2, &eof);
  EXPECT_EQ(msgs.size(), 1u);  // the good query before it is still answered
  EXPECT_TRUE(eof);
  EXPECT_EQ(listener_->stats().tcp_closed_bad.get(), 1u);
  EXPECT_TRUE(pump([&] { return listener_->tcp_connections() == 0; }));
}

TEST_F(DnsListenerTest, BadTcpLengthClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}}));
  for (uint16_t len : {0, 5, 11, 60000}) {
    Fd c = tcp_client();
    write_all(c.get(), {static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0});
    EXPECT_TRUE(wait_closed(c.get())) << len;
  }
  EXPECT_EQ(listener_->stats().tcp_closed_bad.get(), 4u);
}

TEST_F(DnsListenerTest, StopClosesEverything) {
  ASSERT_NO_FATAL_FAILURE(start({{"10.0.0.1:80"}}));
  Fd c = tcp_client();
  write_all(c.get(), framed(make_query("www.example.com", kTypeA)));
  ASSERT_EQ(read_framed(c.get(), 1).size(), 1u);
  listener_->stop_accepting();
  EXPECT_TRUE(wait_closed(c.get()));
  EXPECT_EQ(listener_->tcp_connections(), 0u);
}

}  // namespace
}  // namespace fulcrum::dns
