// One worker's UDP listener and its flow table: a connected socket per client address and port,
// kept until idle. That worker's thread only.
#include "l4/udp_proxy.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace fulcrum::l4 {

namespace {
constexpr int kSocketBuffer = 1 << 20;  // the listener's, shared by every flow's replies
constexpr int kRoundsPerWake = 8;       // recvmmsg batches per wake-up of the listener (level-triggered)
constexpr int kRepliesPerWake = 64;     // server datagrams relayed per wake-up of one flow
}  // namespace

// One client address and port and its connected socket to the chosen server.
class UdpFlow final : public Deferred, public IoHandler {
 public:
  UdpFlow(UdpListener& listener, const SocketAddress& client, const UdpListener::FlowKey& key,
          upstream::Server* server, Fd fd, const unsigned char* control, size_t control_len)
      : listener_(listener),
        client_(client),
        key_(key),
        server_(server),
        fd_(std::move(fd)),
        idle_(listener.loop_, [this] { expire(); }),
        control_len_(control_len) {
    if (control_len_ > sizeof(control_.bytes)) control_len_ = 0;
    if (control_len_) std::memcpy(control_.bytes, control, control_len_);
    server_->begin();  // least_conn counts a flow as a connection
    touch();
  }

  // Client -> server. False when the flow is gone (closed on a refusal).
  bool forward(const uint8_t* data, size_t len) {
    touch();
    ssize_t n = ::send(fd_.get(), data, len, MSG_DONTWAIT);
    if (n >= 0) {
      listener_.stats_.datagrams_in.add();
      listener_.stats_.bytes_in.add(len);
      return true;
    }
    if (errno == ECONNREFUSED) {  // an earlier datagram met ICMP port unreachable
      refused();
      return false;
    }
    listener_.stats_.dropped_send.add();
    if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
      FULCRUM_LOG_LIMITED(kWarn, "udp listener %s: send to %s: %s", listener_.spec_.name.c_str(),
                          server_->address_text().c_str(), strerror(errno));
    return true;
  }

  // Server -> client, relayed from the listener's socket.
  void on_io(uint32_t) override {
    if (closed_) return;
    uint8_t* buf = listener_.reply_.get();
    for (int i = 0; i < kRepliesPerWake; ++i) {
      ssize_t n = ::recv(fd_.get(), buf, UdpListener::kMaxDatagram, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        if (errno == ECONNREFUSED) return refused();
        listener_.stats_.flows_failed.add();
        FULCRUM_LOG_LIMITED(kWarn, "udp listener %s: recv from %s: %s", listener_.spec_.name.c_str(),
                            server_->address_text().c_str(), strerror(errno));
        return close();
      }
      server_->report_outcome(true);
      touch();
      relay(buf, static_cast<size_t>(n));
    }
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    idle_.cancel();
    fd_.reset();  // leaves epoll too: the descriptor is not shared
    server_->end();
    listener_.flows_.erase(key_);
    listener_.stats_.active_flows.sub();
    listener_.loop_.defer_delete(this);
  }

 private:
  void touch() { idle_.arm(listener_.idle_timeout_); }  // moving a deadline later is O(1)

  void expire() {
    listener_.stats_.flows_expired.add();
    FULCRUM_LOG(kDebug, "udp listener %s: flow %s -> %s idle; closed", listener_.spec_.name.c_str(),
                client_.to_string().c_str(), server_->name().c_str());
    close();
  }

  void refused() {
    // The server is not listening: tell passive checks, and let the client's next datagram pick
    // again (a new flow) rather than keep sending into a closed port.
    listener_.stats_.flows_failed.add();
    server_->record_failure();
    server_->report_outcome(false);
    FULCRUM_LOG_LIMITED(kWarn, "udp listener %s: backend %s server %s (%s) refused datagrams from %s",
                        listener_.spec_.name.c_str(), listener_.backend_.name.c_str(),
                        server_->name().c_str(), server_->address_text().c_str(),
                        client_.to_string().c_str());
    close();
  }

  void relay(const uint8_t* data, size_t len) {
    iovec iov{const_cast<uint8_t*>(data), len};
    msghdr m{};
    m.msg_name = const_cast<sockaddr*>(client_.sa());
    m.msg_namelen = client_.len();
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (control_len_) {
      m.msg_control = control_.bytes;
      m.msg_controllen = control_len_;
    }
    if (::sendmsg(listener_.fd_.get(), &m, MSG_DONTWAIT) < 0) {
      listener_.stats_.dropped_send.add();
      return;
    }
    listener_.stats_.datagrams_out.add();
    listener_.stats_.bytes_out.add(len);
  }

  UdpListener& listener_;
  SocketAddress client_;
  UdpListener::FlowKey key_;
  upstream::Server* server_;
  Fd fd_;
  Timer idle_;
  struct alignas(cmsghdr) Control {
    unsigned char bytes[kPktinfoControl];
  } control_;
  size_t control_len_;
  bool closed_ = false;
};

UdpListener::FlowKey UdpListener::key_of(const SocketAddress& client) {
  FlowKey k;
  k.bytes[0] = static_cast<uint8_t>(client.family());
  uint16_t port = client.port();
  k.bytes[1] = static_cast<uint8_t>(port >> 8);
  k.bytes[2] = static_cast<uint8_t>(port);
  std::string_view ip = client.ip_bytes();
  std::memcpy(k.bytes.data() + 3, ip.data(), std::min<size_t>(ip.size(), 16));
  return k;
}

size_t UdpListener::KeyHash::operator()(const FlowKey& k) const {
  return static_cast<size_t>(
      lb::hash_bytes(std::string_view(reinterpret_cast<const char*>(k.bytes.data()), k.bytes.size())));
}

UdpListener::UdpListener(EventLoop& loop, const config::Listener& spec, const config::Backend& backend,
                         lb::Picker& picker, UdpStats& stats, Fd fd)
    : loop_(loop),
      spec_(spec),
      backend_(backend),
      picker_(picker),
      fd_(std::move(fd)),
      stats_(stats),
      in_(new uint8_t[kBatch * kMaxDatagram]),
      msgs_(kBatch),
      iov_(kBatch),
      peers_(kBatch),
      control_(kBatch),
      reply_(new uint8_t[kMaxDatagram]) {
  grow_socket_buffers(fd_.get(), kSocketBuffer);
  if (spec_.idle_timeout) idle_timeout_ = *spec_.idle_timeout;
  if (idle_timeout_.count() <= 0) idle_timeout_ = Millis(30000);
  if (is_wildcard(spec_.bind)) {
    if (auto r = enable_pktinfo(fd_.get(), spec_.bind.family()); r)
      pktinfo_ = true;
    else
      FULCRUM_LOG(kWarn, "udp listener %s: %s: replies may leave from another address", spec_.name.c_str(),
                  strerror(r.error().code));
  }
  for (size_t i = 0; i < kBatch; ++i) {
    iov_[i] = {in_.get() + i * kMaxDatagram, kMaxDatagram};
    msghdr& h = msgs_[i].msg_hdr;
    h.msg_iov = &iov_[i];
    h.msg_iovlen = 1;
    h.msg_name = &peers_[i];
    h.msg_control = pktinfo_ ? control_[i].bytes : nullptr;
  }
  if (auto r = loop_.add(fd_.get(), this, EPOLLIN); !r)
    FULCRUM_LOG(kError, "udp listener %s: %s", spec_.name.c_str(), r.error().message.c_str());
}

UdpListener::~UdpListener() { stop_accepting(); }

void UdpListener::stop_accepting() {
  if (fd_) {
    loop_.remove(fd_.get());
    fd_.reset();
  }
  stats_.flows_stopped.add(flows_.size());
  while (!flows_.empty()) flows_.begin()->second->close();  // close() erases it
}

UdpFlow* UdpListener::open_flow(const SocketAddress& client, const FlowKey& key, const unsigned char* control,
                                size_t control_len) {
  if (flows_.size() >= kMaxFlows) {
    stats_.dropped_table_full.add();
    FULCRUM_LOG_LIMITED(kWarn,
                        "udp listener %s: %zu flows on this worker; dropping a datagram from %s [UDPFULL]",
                        spec_.name.c_str(), kMaxFlows, client.to_string().c_str());
    return nullptr;
  }
  lb::PickContext ctx;
  ctx.client = &client;
  upstream::Server* server = picker_.pick(ctx);
  if (server == nullptr) {
    stats_.dropped_no_server.add();
    FULCRUM_LOG_LIMITED(kWarn, "udp listener %s: no server available in backend %s for %s [NOSRV]",
                        spec_.name.c_str(), backend_.name.c_str(), client.to_string().c_str());
    return nullptr;
  }
  const SocketAddress& to = server->address();
  Fd fd(::socket(to.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  // A connected socket: the kernel filters replies to those from the server, and reports its
  // ICMP port unreachable as ECONNREFUSED.
  if (!fd || ::connect(fd.get(), to.sa(), to.len()) != 0) {
    stats_.dropped_socket.add();
    FULCRUM_LOG_LIMITED(kError, "udp listener %s: socket to %s: %s", spec_.name.c_str(),
                        server->address_text().c_str(), strerror(errno));
    return nullptr;
  }
  int raw = fd.get();
  auto* flow = new UdpFlow(*this, client, key, server, std::move(fd), control, control_len);
  if (auto r = loop_.add(raw, flow, EPOLLIN); !r) {
    stats_.dropped_socket.add();
    flows_.emplace(key, flow);  // so that close() finds and erases it
    stats_.active_flows.add();
    flow->close();
    return nullptr;
  }
  flows_.emplace(key, flow);
  stats_.active_flows.add();
  stats_.flows_created.add();
  FULCRUM_LOG(kDebug, "udp listener %s: flow %s -> %s", spec_.name.c_str(), client.to_string().c_str(),
              server->name().c_str());
  return flow;
}

void UdpListener::on_io(uint32_t) {
  for (int round = 0; round < kRoundsPerWake && fd_; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      msghdr& h = msgs_[i].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = pktinfo_ ? sizeof(Control) : 0;
      h.msg_flags = 0;
    }
    int n = ::recvmmsg(fd_.get(), msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        FULCRUM_LOG_LIMITED(kWarn, "udp listener %s: recvmmsg: %s", spec_.name.c_str(), strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      msghdr& h = msgs_[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        stats_.dropped_oversize.add();
        continue;
      }
      SocketAddress client(reinterpret_cast<const sockaddr*>(&peers_[i]), h.msg_namelen);
      FlowKey key = key_of(client);
      const uint8_t* data = in_.get() + static_cast<size_t>(i) * kMaxDatagram;
      size_t clen = pktinfo_ ? pktinfo_for_reply(control_[i].bytes, h.msg_controllen) : 0;
      auto it = flows_.find(key);
      UdpFlow* flow = it != flows_.end() ? it->second : open_flow(client, key, control_[i].bytes, clen);
      // A flow whose server turned out closed (ICMP port unreachable) is dropped by forward();
      // the datagram then starts a new flow, on a server the balancer picks again, once.
      if (flow && !flow->forward(data, msgs_[i].msg_len) &&
          (flow = open_flow(client, key, control_[i].bytes, clen)))
        flow->forward(data, msgs_[i].msg_len);
    }
    if (static_cast<size_t>(n) < kBatch) return;  // drained
  }
}

}  // namespace fulcrum::l4
