// The DNS listener: one worker's sockets for one `protocol: dns` listener, UDP and TCP on the same
// address (each worker has its own pair, SO_REUSEPORT), feeding one Responder. UDP moves up to 32
// queries per system call each way (recvmmsg/sendmmsg) through buffers owned by the listener, so
// a steady stream of queries allocates nothing. TCP (RFC 7766): 2-byte length framing, several
// queries per connection, pipelined, closed when idle. Front header of the dns module. Touched
// only by its worker's thread, except tcp_connections(); its counters (DnsStats) are owned by the
// worker's metrics::WorkerMetrics, where the control thread reads them, so they outlive a reload.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "config/config.h"
#include "core/datagram.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "dns/responder.h"

namespace fulcrum::dns {

class DnsTcpConnection;

class DnsListener final : public IoHandler {
 public:
  // Takes a bound datagram socket and a listening stream socket on the same address. `stats`
  // (metrics::WorkerMetrics::add_dns_listener) must outlive the listener.
  DnsListener(EventLoop& loop, const config::Listener& spec, std::span<const ZoneConfig> zones, uint64_t seed,
              DnsStats& stats, Fd udp, Fd tcp);
  ~DnsListener();
  DnsListener(const DnsListener&) = delete;
  DnsListener& operator=(const DnsListener&) = delete;

  void on_io(uint32_t events) override;  // the UDP socket
  // Graceful stop: DNS holds nothing worth waiting for (a client retries), so both sockets and
  // every TCP connection close at once.
  void stop_accepting();

  const DnsStats& stats() const { return responder_.stats(); }
  size_t tcp_connections() const { return tcp_count_.load(std::memory_order_relaxed); }

  // Queries per recvmmsg/sendmmsg.
  static constexpr size_t kBatch = 32;
  // A query is a header, a name of at most 255 bytes and an OPT record with a few options; a
  // datagram longer than this is dropped (MSG_TRUNC) rather than read in part.
  static constexpr size_t kMaxQuery = 2048;
  // TCP connections per worker; past it a new one is closed at once (counted). A resolver keeps
  // few, each carrying many queries.
  static constexpr size_t kMaxTcpConnections = 1024;
  // RFC 7766 6.2.3: a server closes idle connections after a few seconds, a client reopens.
  static constexpr Millis kTcpIdleTimeout{10000};

 private:
  friend class DnsTcpConnection;
  struct Acceptor final : IoHandler {
    DnsListener* listener = nullptr;
    void on_io(uint32_t) override { listener->accept_tcp(); }
  };
  void accept_tcp();
  void send_replies(size_t count);

  EventLoop& loop_;
  const config::Listener& spec_;
  Responder responder_;
  Fd udp_;
  Fd tcp_;
  Acceptor acceptor_;
  bool pktinfo_ = false;        // wildcard bind: replies leave from each query's destination address
  bool dont_fragment_ = false;  // IPv4 replies carry DF; a too-large one is resent fragmentable
  // UDP batch: one slot per datagram, each with its peer, its packet info and its reply.
  std::unique_ptr<uint8_t[]> in_;   // kBatch * kMaxQuery
  std::unique_ptr<uint8_t[]> out_;  // kBatch * kMaxUdpPayload
  std::vector<mmsghdr> in_msgs_;
  std::vector<mmsghdr> out_msgs_;
  std::vector<iovec> in_iov_;
  std::vector<iovec> out_iov_;
  std::vector<sockaddr_storage> peers_;
  struct alignas(cmsghdr) Control {
    unsigned char bytes[kPktinfoControl];
  };
  std::vector<Control> control_;
  // TCP: replies are built here, several per send when queries are pipelined.
  std::unique_ptr<uint8_t[]> tcp_out_;
  DnsTcpConnection* first_ = nullptr;
  std::atomic<size_t> tcp_count_{0};
};

}  // namespace fulcrum::dns
