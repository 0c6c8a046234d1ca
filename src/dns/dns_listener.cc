// One worker's UDP (recvmmsg/sendmmsg batches) and TCP (RFC 7766 framing) sockets for a dns
// listener, feeding its Responder. That worker's thread only.
#include "dns/dns_listener.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/intrusive_list.h"
#include "core/log.h"
#include "core/socket.h"

namespace fulcrum::dns {

namespace {
constexpr int kSocketBuffer = 1 << 20;
// Reads per wake-up of the UDP socket (level-triggered): 8 batches of 32, then the loop serves
// the other descriptors and timers before coming back.
constexpr int kRoundsPerWake = 8;
// A connection's read buffer: room for one query of the largest size we accept and its
// length prefix, and then some for pipelined ones.
constexpr size_t kTcpReadBuffer = 2 * (DnsListener::kMaxQuery + 2);
// Replies are gathered here and sent together; flushed when the next one might not fit.
constexpr size_t kTcpFrame = kMaxTcpMessage + 2;
constexpr size_t kTcpOutBuffer = 2 * kTcpFrame;

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
}  // namespace

// One TCP client. Level-triggered: EPOLLIN while it may send queries, EPOLLOUT alone while a
// reply waits to be sent (we read nothing more until it has gone: back-pressure, bounded memory).
class DnsTcpConnection final : public Deferred, public IoHandler {
 public:
  DnsTcpConnection(DnsListener& listener, Fd fd)
      : listener_(listener), fd_(std::move(fd)), idle_(listener.loop_, [this] { idle(); }) {}

  bool start() {
    set_nodelay(fd_.get());
    if (!listener_.loop_.add(fd_.get(), this, EPOLLIN | EPOLLRDHUP)) return false;
    idle_.arm(DnsListener::kTcpIdleTimeout);
    return true;
  }

  void on_io(uint32_t events) override {
    if (closed_) return;
    if (!pending_.empty()) {
      if (events & (EPOLLERR | EPOLLHUP)) return close("socket error");
      if (!(events & EPOLLOUT)) return;
      if (!flush()) return;
      if (!pending_.empty()) return;
      if (!listener_.loop_.modify(fd_.get(), this, EPOLLIN | EPOLLRDHUP)) return close("epoll");
      serve();  // queries that arrived behind the blocked reply
      if (closed_ || !pending_.empty()) return;
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    ssize_t n = ::recv(fd_.get(), in_ + in_len_, sizeof(in_) - in_len_, 0);
    if (n == 0) return close("closed by client");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      return close("socket error");
    }
    in_len_ += static_cast<size_t>(n);
    idle_.arm(DnsListener::kTcpIdleTimeout);
    serve();
  }

  void close(const char* why) {
    if (closed_) return;
    closed_ = true;
    FULCRUM_LOG(kDebug, "dns listener %s: tcp connection closed: %s", listener_.spec_.name.c_str(), why);
    idle_.cancel();
    fd_.reset();  // also leaves epoll: the descriptor is not shared
    ilist::unlink(listener_.first_, this);
    listener_.tcp_count_.fetch_sub(1, std::memory_order_relaxed);
    listener_.loop_.defer_delete(this);
  }

  DnsTcpConnection* prev_ = nullptr;
  DnsTcpConnection* next_ = nullptr;

 private:
  void idle() {
    listener_.responder_.stats().tcp_idle_closed.add();
    close("idle timeout");
  }

  // Answers every complete query in the buffer, gathering the replies into one send.
  void serve() {
    uint8_t* out = listener_.tcp_out_.get();
    size_t out_len = 0;
    size_t pos = 0;
    while (in_len_ - pos >= 2) {
      size_t len = get16(in_ + pos);
      if (len < kHeaderSize || len > DnsListener::kMaxQuery) {
        listener_.responder_.stats().tcp_closed_bad.add();
        FULCRUM_LOG_LIMITED(kInfo, "dns listener %s: tcp message of %zu bytes; closing [DNSFRAME]",
                            listener_.spec_.name.c_str(), len);
        return close("bad length");
      }
      if (in_len_ - pos - 2 < len) break;
      if (out_len + kTcpFrame > kTcpOutBuffer) {
        if (!send(out, out_len)) return;
        out_len = 0;
        if (!pending_.empty()) break;
      }
      size_t n = listener_.responder_.respond({in_ + pos + 2, len}, Transport::kTcp,
                                              {out + out_len + 2, kMaxTcpMessage});
      if (n == 0) {  // malformed (counted by the responder): a stream cannot resynchronise
        listener_.responder_.stats().tcp_closed_bad.add();
        if (out_len) send(out, out_len);
        return close("malformed query");
      }
      out[out_len] = static_cast<uint8_t>(n >> 8);
      out[out_len + 1] = static_cast<uint8_t>(n);
      out_len += 2 + n;
      pos += 2 + len;
    }
    if (pos) {
      std::memmove(in_, in_ + pos, in_len_ - pos);
      in_len_ -= pos;
    }
    if (out_len && pending_.empty()) send(out, out_len);
  }

  // False when the connection was closed.
  bool send(const uint8_t* data, size_t len) {
    ssize_t n = ::send(fd_.get(), data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        close("send failed");
        return false;
      }
      n = 0;
    }
    if (static_cast<size_t>(n) == len) return true;
    // The rare path: the client reads slower than it asks. Keep the rest and wait for EPOLLOUT.
    pending_.assign(data + n, data + len);
    pending_off_ = 0;
    if (!listener_.loop_.modify(fd_.get(), this, EPOLLOUT | EPOLLRDHUP)) {
      close("epoll");
      return false;
    }
    return true;
  }

  bool flush() {
    while (pending_off_ < pending_.size()) {
      ssize_t n =
          ::send(fd_.get(), pending_.data() + pending_off_, pending_.size() - pending_off_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) return true;
        if (errno == EINTR) continue;
        close("send failed");
        return false;
      }
      pending_off_ += static_cast<size_t>(n);
    }
    pending_.clear();
    pending_off_ = 0;
    return true;
  }

  DnsListener& listener_;
  Fd fd_;
  Timer idle_;
  std::vector<uint8_t> pending_;
  size_t pending_off_ = 0;
  size_t in_len_ = 0;
  bool closed_ = false;
  uint8_t in_[kTcpReadBuffer];
};

DnsListener::DnsListener(EventLoop& loop, const config::Listener& spec, std::span<const ZoneConfig> zones,
                         uint64_t seed, DnsStats& stats, Fd udp, Fd tcp)
    : loop_(loop),
      spec_(spec),
      responder_(spec.name, zones, seed, stats),
      udp_(std::move(udp)),
      tcp_(std::move(tcp)),
      in_(new uint8_t[kBatch * kMaxQuery]),
      out_(new uint8_t[kBatch * kMaxUdpPayload]),
      in_msgs_(kBatch),
      out_msgs_(kBatch),
      in_iov_(kBatch),
      out_iov_(kBatch),
      peers_(kBatch),
      control_(kBatch),
      tcp_out_(new uint8_t[kTcpOutBuffer]) {
  acceptor_.listener = this;
  grow_socket_buffers(udp_.get(), kSocketBuffer);
  // IPv4 answers leave with DF and no IP ID (see datagram.h); on a v6 socket the option covers
  // the IPv4 side of a dual-stack one.
  dont_fragment_ = static_cast<bool>(set_dont_fragment(udp_.get()));
  if (is_wildcard(spec_.bind)) {
    if (auto r = enable_pktinfo(udp_.get(), spec_.bind.family()); r)
      pktinfo_ = true;
    else
      FULCRUM_LOG(kWarn, "dns listener %s: %s: replies may leave from another address", spec_.name.c_str(),
                  strerror(r.error().code));
  }
  for (size_t i = 0; i < kBatch; ++i) {
    in_iov_[i] = {in_.get() + i * kMaxQuery, kMaxQuery};
    msghdr& h = in_msgs_[i].msg_hdr;
    h.msg_iov = &in_iov_[i];
    h.msg_iovlen = 1;
    h.msg_name = &peers_[i];
    h.msg_control = pktinfo_ ? control_[i].bytes : nullptr;
    out_msgs_[i].msg_hdr.msg_iov = &out_iov_[i];
    out_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  // Level-triggered: a bounded batch per wake-up keeps a flood on one socket from starving the
  // rest of the worker, with no re-arming call.
  if (auto r = loop_.add(udp_.get(), this, EPOLLIN); !r)
    FULCRUM_LOG(kError, "dns listener %s: udp: %s", spec_.name.c_str(), r.error().message.c_str());
  if (auto r = loop_.add(tcp_.get(), &acceptor_, EPOLLIN); !r)
    FULCRUM_LOG(kError, "dns listener %s: tcp: %s", spec_.name.c_str(), r.error().message.c_str());
}

DnsListener::~DnsListener() { stop_accepting(); }

void DnsListener::stop_accepting() {
  if (udp_) {
    loop_.remove(udp_.get());
    udp_.reset();
  }
  if (tcp_) {
    loop_.remove(tcp_.get());
    tcp_.reset();
  }
  while (first_) first_->close("listener closed");  // close() unlinks; the loop deletes it
}

void DnsListener::on_io(uint32_t) {
  for (int round = 0; round < kRoundsPerWake && udp_; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      msghdr& h = in_msgs_[i].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = pktinfo_ ? sizeof(Control) : 0;
      h.msg_flags = 0;
    }
    int n = ::recvmmsg(udp_.get(), in_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        FULCRUM_LOG_LIMITED(kWarn, "dns listener %s: recvmmsg: %s", spec_.name.c_str(), strerror(errno));
      return;
    }
    size_t replies = 0;
    for (int i = 0; i < n; ++i) {
      msghdr& h = in_msgs_[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        responder_.stats().udp_oversize.add();
        continue;
      }
      uint8_t* reply = out_.get() + static_cast<size_t>(i) * kMaxUdpPayload;
      size_t len = responder_.respond({in_.get() + static_cast<size_t>(i) * kMaxQuery, in_msgs_[i].msg_len},
                                      Transport::kUdp, {reply, kMaxUdpPayload});
      if (len == 0) continue;
      out_iov_[replies] = {reply, len};
      msghdr& o = out_msgs_[replies].msg_hdr;
      o.msg_name = &peers_[i];
      o.msg_namelen = h.msg_namelen;
      o.msg_control = nullptr;
      o.msg_controllen = 0;
      if (pktinfo_) {
        size_t clen = pktinfo_for_reply(control_[i].bytes, h.msg_controllen);
        if (clen) {
          o.msg_control = control_[i].bytes;
          o.msg_controllen = clen;
        }
      }
      ++replies;
    }
    send_replies(replies);
    if (static_cast<size_t>(n) < kBatch) return;  // drained
  }
}

void DnsListener::send_replies(size_t count) {
  size_t off = 0;
  while (off < count) {
    int n = ::sendmmsg(udp_.get(), &out_msgs_[off], static_cast<unsigned>(count - off), MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    // Larger than the interface's MTU under DF (a big answer a client offered room for): this
    // one goes out fragmented, as it would have without DF.
    if (errno == EMSGSIZE && dont_fragment_ && send_fragmentable(udp_.get(), &out_msgs_[off].msg_hdr) >= 0) {
      responder_.stats().udp_fragmented.add();
      ++off;
      continue;
    }
    if (errno == EAGAIN || errno == ENOBUFS) {  // the socket buffer is full: UDP clients retry
      responder_.stats().udp_send_dropped.add(count - off);
      FULCRUM_LOG_LIMITED(kWarn, "dns listener %s: send buffer full; %zu replies dropped", spec_.name.c_str(),
                          count - off);
      return;
    }
    // Any other error is about the first message's peer (unreachable, not permitted): skip it.
    responder_.stats().udp_send_dropped.add();
    FULCRUM_LOG_LIMITED(kInfo, "dns listener %s: sendmmsg: %s", spec_.name.c_str(), strerror(errno));
    ++off;
  }
}

void DnsListener::accept_tcp() {
  for (int i = 0; i < 64 && tcp_; ++i) {
    int c = ::accept4(tcp_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      FULCRUM_LOG_LIMITED(kWarn, "dns listener %s: accept: %s", spec_.name.c_str(), strerror(errno));
      return;
    }
    Fd fd(c);
    if (tcp_count_.load(std::memory_order_relaxed) >= kMaxTcpConnections) {
      responder_.stats().tcp_refused.add();
      FULCRUM_LOG_LIMITED(kWarn,
                          "dns listener %s: %zu tcp connections on this worker; closing a new one [DNSCONNS]",
                          spec_.name.c_str(), kMaxTcpConnections);
      continue;
    }
    auto* conn = new DnsTcpConnection(*this, std::move(fd));
    ilist::push_front(first_, conn);
    tcp_count_.fetch_add(1, std::memory_order_relaxed);
    responder_.stats().tcp_connections.add();
    if (!conn->start()) conn->close("epoll");
  }
}

}  // namespace fulcrum::dns
