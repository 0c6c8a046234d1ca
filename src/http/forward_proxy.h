// The forward proxy (SPEC: Forward proxy): what a `protocol: forward_proxy` listener adds to the
// HTTP listener of proxy.h. Requests still take ClientConn's one exchange path (so whatever hooks
// into it, such as a cache, serves both proxies); this class only answers the questions that
// path asks a router and a balancer on a reverse proxy:
//  - admit(): may this request go on, and to which host and port? (400 origin-form, 403 acl,
//    501 non-http scheme), counted and logged by reason;
//  - origin(): the upstream::Server for that host and port, now or later, once a name is looked
//    up on the Resolver thread (502 when it cannot be); next_origin(): the next address of the
//    name when a connect to one is refused (up to kAddressesPerName, IPv4 first).
// Dynamic origins: each resolved address gets an upstream::Server of its own, in a bounded
// table per listener and worker, under one synthetic upstream::Backend (no servers of its own;
// its spec gives the timeouts and retries: none, as a forward proxy cannot pick another origin).
// So UpstreamPool pools keep-alive connections per origin address, and the exchange code works
// unchanged. An origin no connection uses is dropped (with its pooled connections) after
// kOriginIdle, or earlier when the table is full. Answers are cached per listener and worker for
// kDnsTtl (failures for kDnsNegativeTtl), at most kMaxDnsEntries names.
// Worker thread only: one ForwardProxy per forward_proxy listener per worker.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "core/address.h"
#include "core/event_loop.h"
#include "http/forward_target.h"
#include "http/h1_parser.h"
#include "http/resolver.h"
#include "metrics/metrics.h"
#include "upstream/server.h"

namespace fulcrum::http {

class UpstreamPool;

// Told when the origin a ClientConn waits for is known (or is not: `origin` null, answer
// `status`). Called from the loop, never from inside origin(), and never after cancel().
class OriginWaiter {
 public:
  virtual void on_origin(upstream::Server* origin, int status) = 0;

 protected:
  ~OriginWaiter() = default;
};

// Where an admitted request goes. The host is copied (lower case): the request's bytes may be
// gone by the time it is looked up.
struct ForwardTarget {
  std::array<char, kMaxHostLength + 1> host_buf;  // not zeroed: built on every request's path
  size_t host_len = 0;
  uint16_t port = 0;
  Authority::Kind kind = Authority::Kind::kName;
  bool tunnel = false;  // CONNECT
  std::string_view host() const { return {host_buf.data(), host_len}; }
};

class ForwardProxy {
 public:
  static constexpr size_t kMaxOrigins = 1024;
  static constexpr size_t kMaxDnsEntries = 1024;
  static constexpr Millis kDnsTtl{30000};
  static constexpr Millis kDnsNegativeTtl{5000};
  static constexpr Millis kOriginIdle{60000};  // > the pool's idle timeout (30 s)

  ForwardProxy(EventLoop& loop, UpstreamPool& pool, const config::Listener& spec);
  ~ForwardProxy();

  // 0 if the request may go on (*t filled); otherwise the status to answer, with x.refusal set
  // to the reason and a rate-limited log line written.
  int admit(const RequestHead& head, std::string_view client_ip, metrics::Exchange& x, ForwardTarget* t);
  // The origin for `t` now; or nullptr with *status 0: `w` will be told (unless cancel(w)); or
  // nullptr with *status set (502: the name does not resolve; 503: the origin table is full).
  upstream::Server* origin(const ForwardTarget& t, OriginWaiter* w, int* status);
  void cancel(OriginWaiter* w);
  // After a connect to `failed` (an origin of `t`) was refused or unreachable: the origin of the
  // next address `t`'s name resolved to (localhost: 127.0.0.1, then ::1), or nullptr.
  upstream::Server* next_origin(const ForwardTarget& t, const upstream::Server& failed);
  // The synthetic backend every origin belongs to (timeouts, log name).
  upstream::Backend& backend() { return *backend_; }
  size_t origins() const { return origins_.size(); }
  // The Resolver's answer for `host` (tests call it to teach names): cached, and the waiters told.
  void on_resolved(const std::string& host, const std::vector<SocketAddress>& addrs, int error);

 private:
  struct Origin {
    std::unique_ptr<upstream::Server> server;
    TimePoint last_used{};
  };
  static constexpr size_t kAddressesPerName = 4;
  struct DnsEntry {
    std::array<SocketAddress, kAddressesPerName> addrs;  // IPv4 first, port 0
    size_t count = 0;                                    // 0: the lookup failed
    int error = 0;
    TimePoint expires{};
  };
  struct Waiting {
    OriginWaiter* waiter;
    uint16_t port;
  };
  // Transparent hashing: lookups by string_view, without building a string per request.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  upstream::Server* origin_for(SocketAddress addr, uint16_t port, int* status);
  void sweep();
  void drop(std::unordered_map<std::string, Origin>::iterator it);

  UpstreamPool& pool_;
  const config::Listener& spec_;
  HostAcl acl_;
  std::unique_ptr<upstream::Backend> backend_;
  // Keyed by the address's bytes and port (SocketAddress::ip_bytes + 2 bytes of port).
  std::unordered_map<std::string, Origin> origins_;
  std::unordered_map<std::string, DnsEntry, Hash, std::equal_to<>> dns_;
  std::unordered_map<std::string, std::vector<Waiting>, Hash, std::equal_to<>> waiting_;
  std::string key_;  // scratch for origin keys
  Resolver resolver_;
  Timer sweep_timer_;
};

}  // namespace fulcrum::http
