// The L4 UDP proxy: one worker's socket for one `protocol: udp` listener, and its flow table. A
// flow is one client address and port, bound to the server the backend's balance picked for it
// and carried over a connected UDP socket to that server, until `idle_timeout` passes without a
// datagram either way. Replies go back to the client from the listener's socket, so they come
// from the address the client sent to. With SO_REUSEPORT the kernel hashes a client's datagrams
// to one worker's socket, so each flow lives on one worker: the table takes no lock. Touched only
// by its worker's thread, except flows(); its counters (UdpStats) are owned by the worker's
// metrics::WorkerMetrics, where the control thread reads them, so they outlive a reload.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "core/datagram.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "lb/balancer.h"
#include "metrics/metrics.h"

namespace fulcrum::l4 {

class UdpFlow;

// Per listener and worker; summed across workers when read (GET /metrics, fulcrum_udp_*). Every
// dropped datagram is counted, by reason. The listener counts into a struct that the worker's
// metrics::WorkerMetrics owns, so that the counters outlive a listener that a reload retires
// (metrics/metrics.h lists the fields).
using UdpStats = metrics::UdpCounters;

class UdpListener final : public IoHandler {
 public:
  // `stats` (metrics::WorkerMetrics::add_udp_listener) must outlive the listener.
  UdpListener(EventLoop& loop, const config::Listener& spec, const config::Backend& backend,
              lb::Picker& picker, UdpStats& stats, Fd fd);
  ~UdpListener();
  UdpListener(const UdpListener&) = delete;
  UdpListener& operator=(const UdpListener&) = delete;

  void on_io(uint32_t events) override;
  // Graceful stop: a UDP flow has no end to wait for, so the socket and every flow close now.
  void stop_accepting();
  size_t flows() const { return stats_.active_flows.get(); }  // any thread
  const UdpStats& stats() const { return stats_; }

  // Flows per worker. Each holds a descriptor and about 200 bytes; past this, datagrams that
  // would start a new flow are dropped (counted) until old ones expire.
  static constexpr size_t kMaxFlows = 65536;
  static constexpr size_t kBatch = 16;  // datagrams per recvmmsg
  // The largest UDP payload (65535 - 8 UDP header bytes; IPv4 loses 20 more to its header).
  static constexpr size_t kMaxDatagram = 65527;

  // A client address and port as hash-map key: family, port, address bytes (zero-padded).
  struct FlowKey {
    std::array<uint8_t, 19> bytes{};
    bool operator==(const FlowKey&) const = default;
  };
  static FlowKey key_of(const SocketAddress& client);

 private:
  friend class UdpFlow;
  struct KeyHash {
    size_t operator()(const FlowKey& k) const;
  };
  UdpFlow* open_flow(const SocketAddress& client, const FlowKey& key, const unsigned char* control,
                     size_t control_len);

  EventLoop& loop_;
  const config::Listener& spec_;
  const config::Backend& backend_;
  lb::Picker& picker_;
  Fd fd_;
  Millis idle_timeout_{30000};
  bool pktinfo_ = false;
  std::unordered_map<FlowKey, UdpFlow*, KeyHash> flows_;
  UdpStats& stats_;
  // recvmmsg slots; the pages of a slot are only touched as far as datagrams fill them.
  std::unique_ptr<uint8_t[]> in_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  std::vector<sockaddr_storage> peers_;
  struct alignas(cmsghdr) Control {
    unsigned char bytes[kPktinfoControl];
  };
  std::vector<Control> control_;
  std::unique_ptr<uint8_t[]> reply_;  // one server reply at a time, relayed at once
};

}  // namespace fulcrum::l4
