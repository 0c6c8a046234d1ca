// The `tcp_half_open` check: a SYN crafted on a raw socket; a SYN-ACK passes, an RST fails
// (refused). No connection is ever completed, so the server's application never sees an
// accept. The source port is reserved by binding (not listening) an ordinary TCP socket, so the
// kernel never hands it to another connection, and when the SYN-ACK reaches it no socket owns
// the flow and the kernel answers with an RST itself; we send one too, in case a local firewall
// drops the kernel's. Without CAP_NET_RAW the check says so once and becomes `tcp`.
// Health thread only.
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <unordered_map>

#include "core/log.h"
#include "health/kinds.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr size_t kSynLen =
    24;  // 20-byte header + MSS option: a SYN without one looks odd to some middleboxes

uint16_t get16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
void put16(unsigned char* p, uint16_t v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}
void put32(unsigned char* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

// RFC 9293 section 3.1: the checksum covers a pseudo-header of the IPv4 addresses, the protocol
// and the TCP length, then the segment.
uint16_t tcp4_checksum(const unsigned char* src, const unsigned char* dst, const unsigned char* seg,
                       size_t n) {
  uint32_t sum = 0;
  for (int i = 0; i < 4; i += 2) sum += get16(src + i) + get16(dst + i);
  sum += IPPROTO_TCP + static_cast<uint32_t>(n);
  for (size_t i = 0; i + 1 < n; i += 2) sum += get16(seg + i);
  if (n & 1) sum += static_cast<uint32_t>(seg[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

class HalfOpenProbe;

// One raw TCP socket and one reserved source port per family, shared by a check's probes.
class RawTcp final : public IoHandler {
 public:
  RawTcp(EventLoop& loop, int family) : loop_(loop), family_(family), rng_(std::random_device{}()) {}
  ~RawTcp() {
    if (raw_) loop_.remove(raw_.get());
  }

  // errno on failure.
  int open() {
    bool v6 = family_ == AF_INET6;
    raw_ = Fd(::socket(family_, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!raw_) return errno;
    reserve_ = Fd(::socket(family_, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!reserve_) return errno;
    SocketAddress any = *SocketAddress::parse(v6 ? "[::]:0" : "0.0.0.0:0");
    if (v6) {
      int one = 1;
      setsockopt(reserve_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (::bind(reserve_.get(), any.sa(), any.len()) != 0) return errno;
    SocketAddress bound;
    *bound.len_ptr() = sizeof(sockaddr_storage);
    if (getsockname(reserve_.get(), bound.sa(), bound.len_ptr()) != 0) return errno;
    port_ = bound.port();
    if (v6) {
      // IPv6 raw sockets can have the kernel fill the checksum (at byte 16 of the TCP header),
      // pseudo-header and all.
      int offset = 16;
      if (setsockopt(raw_.get(), IPPROTO_IPV6, IPV6_CHECKSUM, &offset, sizeof(offset)) != 0) return errno;
    }
    // A raw TCP socket is handed a copy of every TCP segment the host receives. Filter in the
    // kernel to those for our port, so a busy proxy does not copy its traffic to us.
    // IPv4 raw sockets see the IP header (X = its length); IPv6 ones start at the TCP header.
    sock_filter v4[] = {
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port_, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    sock_filter v6f[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 2),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port_, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    sock_fprog prog{};
    prog.len = static_cast<unsigned short>(v6 ? std::size(v6f) : std::size(v4));
    prog.filter = v6 ? v6f : v4;
    if (setsockopt(raw_.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return errno;
    if (auto r = loop_.add(raw_.get(), this, EPOLLIN | EPOLLET); !r)
      return r.error().code ? r.error().code : EIO;
    drain();  // segments queued before the filter was attached
    return 0;
  }

  // Sends a SYN for `probe`; 0 or errno.
  int send_syn(HalfOpenProbe* probe, const SocketAddress& target, uint32_t* isn_out);
  void send_rst(const SocketAddress& target, uint32_t seq, const SocketAddress& source);
  void forget(uint32_t key) { pending_.erase(key); }
  void on_io(uint32_t) override { drain(); }

 private:
  int send_segment(const SocketAddress& target, const SocketAddress& source, uint32_t seq, uint8_t flags);
  void drain();
  void on_segment(const unsigned char* tcp, size_t n, const SocketAddress& from);

  EventLoop& loop_;
  int family_;
  Fd raw_;
  Fd reserve_;  // holds port_ so no connection of ours uses it
  uint16_t port_ = 0;
  std::mt19937 rng_;
  // Keyed by the acknowledgement a reply to the SYN carries: our initial sequence number + 1.
  std::unordered_map<uint32_t, HalfOpenProbe*> pending_;
};

class HalfOpenProbe final : public Probe {
 public:
  HalfOpenProbe(std::shared_ptr<RawTcp> raw, const SocketAddress& target, Done done)
      : raw_(std::move(raw)), target_(target), done_(std::move(done)) {}
  ~HalfOpenProbe() override {
    if (registered_) raw_->forget(isn_ + 1);
  }

  void start() {
    int err = raw_->send_syn(this, target_, &isn_);
    if (err != 0) {
      Reason r = err == EHOSTUNREACH || err == ENETUNREACH ? Reason::kL4Error : Reason::kLocalError;
      return finish({r, std::string("sending SYN: ") + strerror(err)});
    }
    registered_ = true;
  }
  void expire(Millis timeout) override {
    finish({Reason::kL4Timeout, "timeout after " + format_millis(timeout) + " waiting for SYN-ACK"});
  }
  const SocketAddress& target() const { return target_; }
  uint32_t isn() const { return isn_; }
  void finish(Outcome outcome) {
    if (!done_) return;
    if (registered_) raw_->forget(isn_ + 1);
    registered_ = false;
    Done done = std::move(done_);
    done_ = nullptr;
    done(std::move(outcome));
  }

 private:
  std::shared_ptr<RawTcp> raw_;
  SocketAddress target_;
  Done done_;
  uint32_t isn_ = 0;
  bool registered_ = false;
};

// The local address the kernel would use toward `target`: a connected UDP socket sends nothing
// but does the route lookup. Needed for the IPv4 pseudo-header checksum.
int source_for(const SocketAddress& target, SocketAddress* out) {
  Fd udp(::socket(target.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!udp) return errno;
  SocketAddress to = target;
  if (to.port() == 0) to.set_port(9);
  if (::connect(udp.get(), to.sa(), to.len()) != 0) return errno;
  *out->len_ptr() = sizeof(sockaddr_storage);
  if (getsockname(udp.get(), out->sa(), out->len_ptr()) != 0) return errno;
  return 0;
}

int RawTcp::send_syn(HalfOpenProbe* probe, const SocketAddress& target, uint32_t* isn_out) {
  SocketAddress source;
  if (int err = source_for(target, &source)) return err;
  uint32_t isn = static_cast<uint32_t>(rng_());
  while (pending_.count(isn + 1)) isn = static_cast<uint32_t>(rng_());
  if (int err = send_segment(target, source, isn, kSyn)) return err;
  pending_[isn + 1] = probe;
  *isn_out = isn;
  return 0;
}

int RawTcp::send_segment(const SocketAddress& target, const SocketAddress& source, uint32_t seq,
                         uint8_t flags) {
  unsigned char seg[kSynLen] = {};
  size_t len = flags & kSyn ? kSynLen : 20;
  put16(seg, port_);
  put16(seg + 2, target.port());
  put32(seg + 4, seq);
  seg[12] = static_cast<unsigned char>((len / 4) << 4);
  seg[13] = flags;
  put16(seg + 14, flags & kSyn ? 64240 : 0);
  if (flags & kSyn) {
    seg[20] = 2;  // MSS option, RFC 9293 section 3.7.1
    seg[21] = 4;
    put16(seg + 22, 1460);
  }
  if (family_ == AF_INET) {
    const auto* s = reinterpret_cast<const unsigned char*>(source.ip_bytes().data());
    const auto* d = reinterpret_cast<const unsigned char*>(target.ip_bytes().data());
    put16(seg + 16, tcp4_checksum(s, d, seg, len));
  }
  // The port of the destination sockaddr must be 0 for raw IPv6 sockets (else it names a protocol).
  SocketAddress to = target;
  to.set_port(0);
  for (;;) {
    if (::sendto(raw_.get(), seg, len, 0, to.sa(), to.len()) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

void RawTcp::send_rst(const SocketAddress& target, uint32_t seq, const SocketAddress& source) {
  send_segment(target, source, seq, kRst);
}

void RawTcp::drain() {
  unsigned char buf[1024];  // headers are all we read; the rest of a segment is cut off
  for (;;) {
    SocketAddress from;
    *from.len_ptr() = sizeof(sockaddr_storage);
    ssize_t n = ::recvfrom(raw_.get(), buf, sizeof(buf), MSG_TRUNC, from.sa(), from.len_ptr());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    size_t got = std::min(static_cast<size_t>(n), sizeof(buf));
    const unsigned char* p = buf;
    if (family_ == AF_INET) {
      if (got < 20) continue;
      size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
      if (ihl < 20 || got < ihl + 20) continue;
      p += ihl;
      got -= ihl;
    }
    if (got >= 20) on_segment(p, got, from);
  }
}

void RawTcp::on_segment(const unsigned char* tcp, size_t, const SocketAddress& from) {
  if (get16(tcp + 2) != port_) return;
  uint8_t flags = tcp[13];
  if (!(flags & kAck)) return;  // both a SYN-ACK and an RST answering a SYN acknowledge it
  auto it = pending_.find(get32(tcp + 8));
  if (it == pending_.end()) return;
  HalfOpenProbe* probe = it->second;
  if (from.ip_bytes() != probe->target().ip_bytes() || get16(tcp) != probe->target().port()) return;
  if (flags & kRst) return probe->finish({Reason::kL4Refused, "connection refused (RST)"});
  if ((flags & (kSyn | kFin)) != kSyn) return;
  // RFC 9293 section 3.10.7.3: an RST whose sequence number is the SYN-ACK's acknowledgement
  // is in the window and ends the embryonic connection at the server.
  SocketAddress source;
  if (source_for(probe->target(), &source) == 0) send_rst(probe->target(), probe->isn() + 1, source);
  probe->finish({Reason::kPass, "SYN-ACK"});
}

class HalfOpenCheck final : public Check {
 public:
  HalfOpenCheck(EventLoop& loop, std::shared_ptr<RawTcp> v4) : loop_(loop), v4_(std::move(v4)) {}

  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    bool v6 = server.address().family() == AF_INET6;
    if (v6 && !v6_ && v6_err_ == 0) {
      auto raw = std::make_shared<RawTcp>(loop_, AF_INET6);
      v6_err_ = raw->open();
      if (v6_err_ == 0)
        v6_ = std::move(raw);
      else
        FULCRUM_LOG(kError, "tcp_half_open health checks: IPv6 raw socket: %s", strerror(v6_err_));
    }
    auto& raw = v6 ? v6_ : v4_;
    auto p = std::make_unique<HalfOpenProbe>(raw, server.address(), std::move(done));
    if (!raw)
      p->finish({Reason::kLocalError, std::string("no raw socket: ") + strerror(v6_err_)});
    else
      p->start();
    return p;
  }
  std::string_view kind() const override { return "tcp_half_open"; }

 private:
  EventLoop& loop_;
  std::shared_ptr<RawTcp> v4_, v6_;
  int v6_err_ = 0;
};

}  // namespace

std::unique_ptr<Check> make_tcp_half_open_check(const upstream::Backend& backend, EventLoop& loop) {
  auto v4 = std::make_shared<RawTcp>(loop, AF_INET);
  int err = v4->open();
  if (err == 0) return std::make_unique<HalfOpenCheck>(loop, std::move(v4));
  // SPEC: without CAP_NET_RAW, say so at start and check with a full connect instead.
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    FULCRUM_LOG(kWarn,
                "health check tcp_half_open needs raw sockets (CAP_NET_RAW): %s; backend %s (and any other "
                "backend using tcp_half_open) is checked with tcp, a full connect, instead",
                strerror(err), backend.name().c_str());
  else
    FULCRUM_LOG(kDebug, "backend %s: tcp_half_open falls back to tcp", backend.name().c_str());
  return make_tcp_check(backend, loop);
}

}  // namespace fulcrum::health
