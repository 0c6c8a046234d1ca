// The `icmp` check: an ICMP (or ICMPv6) echo request; it passes on the matching echo reply and
// fails on a destination-unreachable about it or on the timeout. One raw socket per address
// family is shared by all probes of a check; replies are matched by identifier and sequence,
// since every raw ICMP socket on the host sees every reply. Where raw sockets are refused, an
// unprivileged ping socket (SOCK_DGRAM, net.ipv4.ping_group_range) is tried. Health thread only.
#include <netinet/icmp6.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "core/log.h"
#include "health/kinds.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

// ICMP_FILTER from <linux/icmp.h>, which cannot be included beside <netinet/ip_icmp.h> (both
// define struct icmphdr). Set bits block those types from reaching the socket.
constexpr int kIcmpFilter = 1;
struct IcmpFilter {
  uint32_t blocked;
};

uint16_t inet_checksum(const unsigned char* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t get16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

const char* unreachable_text(bool v6, int code) {
  if (!v6) {
    switch (code) {
      case ICMP_NET_UNREACH:
        return "network unreachable";
      case ICMP_HOST_UNREACH:
        return "host unreachable";
      case ICMP_PROT_UNREACH:
        return "protocol unreachable";
      case ICMP_PKT_FILTERED:
        return "administratively prohibited";
      default:
        return "destination unreachable";
    }
  }
  switch (code) {
    case ICMP6_DST_UNREACH_NOROUTE:
      return "no route to host";
    case ICMP6_DST_UNREACH_ADMIN:
      return "administratively prohibited";
    case ICMP6_DST_UNREACH_ADDR:
      return "address unreachable";
    default:
      return "destination unreachable";
  }
}

class IcmpProbe;

// A raw (or ping) socket for one family, shared by the probes of one check.
class IcmpSocket final : public IoHandler {
 public:
  IcmpSocket(EventLoop& loop, int family) : loop_(loop), family_(family) {
    static std::atomic<uint16_t> counter{0};
    // Distinct per socket in this process, and unlikely to match another pinger on the host.
    id_ = static_cast<uint16_t>((::getpid() * 2654435761u) >> 16) ^
          static_cast<uint16_t>(counter.fetch_add(1) * 40503u);
  }
  ~IcmpSocket() {
    if (fd_) loop_.remove(fd_.get());
  }

  // errno on failure, 0 on success.
  int open() {
    bool v6 = family_ == AF_INET6;
    int proto = v6 ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP);
    fd_ = Fd(::socket(family_, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto));
    if (!fd_) {
      int err = errno;
      if (err != EPERM && err != EACCES) return err;
      fd_ = Fd(::socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto));
      if (!fd_) return err;  // report why the raw socket failed: that is what the user can fix
      dgram_ = true;
    }
    if (!dgram_) {
      // Let only echo replies and errors through: every ICMP packet the host receives is copied
      // to each raw ICMP socket, and we want as few as possible of them.
      if (v6) {
        icmp6_filter f;
        ICMP6_FILTER_SETBLOCKALL(&f);
        ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f);
        ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &f);
        ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &f);
        setsockopt(fd_.get(), IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f));
      } else {
        IcmpFilter f{~((1u << ICMP_ECHOREPLY) | (1u << ICMP_DEST_UNREACH) | (1u << ICMP_TIME_EXCEEDED))};
        setsockopt(fd_.get(), SOL_RAW, kIcmpFilter, &f, sizeof(f));
      }
    }
    if (auto r = loop_.add(fd_.get(), this, EPOLLIN | EPOLLET); !r)
      return r.error().code ? r.error().code : EIO;
    return 0;
  }

  // Sends an echo request for `probe`; returns its sequence number, or -errno.
  int send(IcmpProbe* probe, const SocketAddress& target);
  void forget(uint16_t seq) { pending_.erase(seq); }
  void on_io(uint32_t events) override;

 private:
  void on_packet(const unsigned char* p, size_t n, const SocketAddress& from);
  void resolve(uint16_t seq, const SocketAddress* from, Outcome outcome);

  EventLoop& loop_;
  int family_;
  Fd fd_;
  bool dgram_ = false;
  uint16_t id_;
  uint16_t next_seq_ = 1;
  std::unordered_map<uint16_t, IcmpProbe*> pending_;
};

class IcmpProbe final : public Probe {
 public:
  IcmpProbe(std::shared_ptr<IcmpSocket> sock, const SocketAddress& target, Done done)
      : sock_(std::move(sock)), target_(target), done_(std::move(done)) {}
  ~IcmpProbe() override {
    if (seq_ >= 0) sock_->forget(static_cast<uint16_t>(seq_));
  }

  void start() {
    int seq = sock_->send(this, target_);
    if (seq < 0) {
      int err = -seq;
      Reason r = err == EHOSTUNREACH || err == ENETUNREACH ? Reason::kIcmpUnreachable : Reason::kLocalError;
      return finish({r, std::string("sending echo request: ") + strerror(err)});
    }
    seq_ = seq;
  }
  void expire(Millis timeout) override {
    finish({Reason::kIcmpTimeout, "no echo reply after " + format_millis(timeout)});
  }
  const SocketAddress& target() const { return target_; }

  void finish(Outcome outcome) {
    if (!done_) return;
    if (seq_ >= 0) sock_->forget(static_cast<uint16_t>(seq_));
    seq_ = -1;
    Done done = std::move(done_);
    done_ = nullptr;
    done(std::move(outcome));
  }

 private:
  std::shared_ptr<IcmpSocket> sock_;  // shared: a probe may outlive its check by a turn
  SocketAddress target_;
  Done done_;
  int seq_ = -1;
};

int IcmpSocket::send(IcmpProbe* probe, const SocketAddress& target) {
  uint16_t seq = next_seq_++;
  for (int i = 0; pending_.count(seq) && i < 65536; ++i) seq = next_seq_++;
  if (pending_.count(seq)) return -EAGAIN;  // 65,536 probes in flight on one socket: not plausible
  unsigned char pkt[8 + 16] = {};
  bool v6 = family_ == AF_INET6;
  pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
  pkt[4] = static_cast<unsigned char>(id_ >> 8);
  pkt[5] = static_cast<unsigned char>(id_);
  pkt[6] = static_cast<unsigned char>(seq >> 8);
  pkt[7] = static_cast<unsigned char>(seq);
  memcpy(pkt + 8, "fulcrum-health..", 16);
  // ICMPv6 checksums cover a pseudo-header only the kernel knows; it fills them for raw and ping
  // sockets alike. ICMPv4 leaves it to us.
  if (!v6) {
    uint16_t sum = inet_checksum(pkt, sizeof(pkt));
    pkt[2] = static_cast<unsigned char>(sum >> 8);
    pkt[3] = static_cast<unsigned char>(sum);
  }
  SocketAddress to = target;
  to.set_port(0);
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), pkt, sizeof(pkt), 0, to.sa(), to.len());
    if (n >= 0) break;
    if (errno == EINTR) continue;
    return -errno;
  }
  pending_[seq] = probe;
  return seq;
}

void IcmpSocket::on_io(uint32_t) {
  unsigned char buf[2048];
  for (;;) {
    SocketAddress from;
    *from.len_ptr() = sizeof(sockaddr_storage);
    ssize_t n = ::recvfrom(fd_.get(), buf, sizeof(buf), 0, from.sa(), from.len_ptr());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: drained
    }
    on_packet(buf, static_cast<size_t>(n), from);
  }
}

void IcmpSocket::on_packet(const unsigned char* p, size_t n, const SocketAddress& from) {
  bool v6 = family_ == AF_INET6;
  if (!v6 && !dgram_) {  // raw IPv4 sockets get the IP header too
    if (n < 20) return;
    size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
    if (ihl < 20 || n < ihl + 8) return;
    p += ihl;
    n -= ihl;
  }
  if (n < 8) return;
  int type = p[0], code = p[1];
  if (type == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY)) {
    // A ping socket's identifier is chosen by the kernel, which hands it only its own replies.
    if (!dgram_ && get16(p + 4) != id_) return;
    return resolve(get16(p + 6), &from, {Reason::kPass, "echo reply"});
  }
  bool error = v6 ? type == ICMP6_DST_UNREACH || type == ICMP6_TIME_EXCEEDED
                  : type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
  if (!error || dgram_) return;
  // The error quotes the packet it is about: the IP header, then our echo request's first 8 bytes.
  const unsigned char* q = p + 8;
  size_t m = n - 8, inner;
  if (v6) {
    if (m < 40 || q[6] != IPPROTO_ICMPV6) return;
    inner = 40;
  } else {
    if (m < 20 || q[9] != IPPROTO_ICMP) return;
    inner = static_cast<size_t>(q[0] & 0x0f) * 4;
  }
  if (m < inner + 8) return;
  const unsigned char* echo = q + inner;
  if (echo[0] != (v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO) || get16(echo + 4) != id_) return;
  bool exceeded = v6 ? type == ICMP6_TIME_EXCEEDED : type == ICMP_TIME_EXCEEDED;
  std::string detail = exceeded ? "time exceeded in transit" : unreachable_text(v6, code);
  resolve(get16(echo + 6), nullptr, {Reason::kIcmpUnreachable, detail + " (from " + from.ip_string() + ")"});
}

void IcmpSocket::resolve(uint16_t seq, const SocketAddress* from, Outcome outcome) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) return;
  IcmpProbe* probe = it->second;
  // A reply must come from the address we pinged (another host answering is not our server).
  if (from && from->ip_bytes() != probe->target().ip_bytes()) return;
  probe->finish(std::move(outcome));
}

class IcmpCheck final : public Check {
 public:
  explicit IcmpCheck(EventLoop& loop) : loop_(loop) {}

  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    auto& slot = server.address().family() == AF_INET6 ? v6_ : v4_;
    auto& err = server.address().family() == AF_INET6 ? v6_err_ : v4_err_;
    if (!slot && err == 0) {
      auto s = std::make_shared<IcmpSocket>(loop_, server.address().family());
      err = s->open();
      if (err == 0)
        slot = std::move(s);
      else
        FULCRUM_LOG(kError, "icmp health checks: cannot open an ICMP socket: %s%s", strerror(err),
                    err == EPERM || err == EACCES ? " (raw sockets need CAP_NET_RAW; ping sockets need "
                                                    "net.ipv4.ping_group_range)"
                                                  : "");
    }
    auto p = std::make_unique<IcmpProbe>(slot, server.address(), std::move(done));
    if (!slot) {
      p->finish({Reason::kLocalError, std::string("no ICMP socket: ") + strerror(err)});
      return p;
    }
    p->start();
    return p;
  }
  std::string_view kind() const override { return "icmp"; }

 private:
  EventLoop& loop_;
  std::shared_ptr<IcmpSocket> v4_, v6_;
  int v4_err_ = 0, v6_err_ = 0;  // why a socket could not be opened (then every probe fails)
};

}  // namespace

std::unique_ptr<Check> make_icmp_check(const upstream::Backend&, EventLoop& loop) {
  return std::make_unique<IcmpCheck>(loop);
}

}  // namespace fulcrum::health
