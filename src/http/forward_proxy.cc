// See forward_proxy.h. Worker thread only (the Resolver's thread only posts back to it).
#include "http/forward_proxy.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "http/upstream_pool.h"

namespace fulcrum::http {
namespace {

constexpr Millis kSweepEvery{30000};

// The backend every origin of a listener belongs to: no configured servers, no retries on
// another server (there is no other), no health checks; the default timeouts of a backend.
config::Backend origin_backend_spec(const config::Listener& spec) {
  config::Backend b;
  b.name = "forward:" + spec.name;
  b.retries = 0;
  b.health.check = "none";
  return b;
}

void copy_lower(std::string_view from, ForwardTarget* t) {
  t->host_len = std::min(from.size(), t->host_buf.size());
  for (size_t i = 0; i < t->host_len; ++i) {
    char c = from[i];
    t->host_buf[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  // A name with its final dot is the same name (and the same cache entry) without it.
  if (t->kind == Authority::Kind::kName && t->host_len > 0 && t->host_buf[t->host_len - 1] == '.')
    --t->host_len;
}

}  // namespace

ForwardProxy::ForwardProxy(EventLoop& loop, UpstreamPool& pool, const config::Listener& spec)
    : pool_(pool),
      spec_(spec),
      acl_(spec.acl ? HostAcl(*spec.acl) : HostAcl()),
      backend_(std::make_unique<upstream::Backend>(origin_backend_spec(spec))),
      resolver_(loop, [this](const std::string& host, const std::vector<SocketAddress>& addrs,
                             int error) { on_resolved(host, addrs, error); }),
      sweep_timer_(loop, [this] { sweep(); }) {
  sweep_timer_.arm(kSweepEvery);
}

ForwardProxy::~ForwardProxy() {
  // The pool outlives us and keys idle connections by Server pointer: close them first.
  for (auto& [key, o] : origins_) pool_.forget(o.server.get());
}

int ForwardProxy::admit(const RequestHead& head, std::string_view client_ip, metrics::Exchange& x,
                        ForwardTarget* t) {
  auto refuse = [&](int status, metrics::Refusal reason, const char* why) {
    x.refusal = reason;
    std::string_view shown = head.target.substr(0, 200);
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %.*s: refused %.*s %.*s: %s (%d)", spec_.name.c_str(),
                        static_cast<int>(client_ip.size()), client_ip.data(),
                        static_cast<int>(head.method_text.size()), head.method_text.data(),
                        static_cast<int>(shown.size()), shown.data(), why, status);
    return status;
  };
  using metrics::Refusal;
  t->tunnel = head.method == Method::kConnect;
  std::string_view authority = head.target;  // CONNECT: authority-form (the parser checked)
  if (!t->tunnel) {
    TargetError e = head.target_form == TargetForm::kAbsolute ? absolute_authority(head.target, &authority)
                                                              : TargetError::kNotAbsolute;
    switch (e) {
      case TargetError::kNone:
        break;
      case TargetError::kNotAbsolute:
        return refuse(400, Refusal::kParseError, "not an absolute URI");
      case TargetError::kScheme:
        return refuse(501, Refusal::kNotImplemented, "scheme other than http");
      case TargetError::kBadAuthority:
        return refuse(400, Refusal::kParseError, "no host in the URI");
    }
  }
  Authority a;
  if (!parse_authority(authority, t->tunnel ? 0 : 80, &a))
    return refuse(400, Refusal::kParseError, "bad host or port");
  if (acl_.denied(a.host)) return refuse(403, Refusal::kAclDenied, "host denied by acl");
  if (t->tunnel && !acl_.port_allowed(a.port))
    return refuse(403, Refusal::kPortDenied, "port not in allow_ports");
  t->kind = a.kind;
  t->port = a.port;
  copy_lower(a.host, t);
  return 0;
}

upstream::Server* ForwardProxy::origin(const ForwardTarget& t, OriginWaiter* w, int* status) {
  *status = 0;
  if (t.kind != Authority::Kind::kName) {
    // Literals skip the resolver.
    char buf[64];
    std::string_view h = t.host();
    h.copy(buf, std::min(h.size(), sizeof(buf) - 1));
    buf[std::min(h.size(), sizeof(buf) - 1)] = '\0';
    sockaddr_storage ss{};
    socklen_t len;
    if (t.kind == Authority::Kind::kIpv4) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1) return *status = 400, nullptr;
      len = sizeof(sockaddr_in);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1) return *status = 400, nullptr;
      len = sizeof(sockaddr_in6);
    }
    return origin_for(SocketAddress(reinterpret_cast<sockaddr*>(&ss), len), t.port, status);
  }
  auto it = dns_.find(t.host());
  if (it != dns_.end() && it->second.expires > Clock::now()) {
    if (it->second.count == 0) {
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: cannot resolve %.*s: %s (cached)", spec_.name.c_str(),
                          static_cast<int>(t.host_len), t.host_buf.data(), gai_strerror(it->second.error));
      return *status = 502, nullptr;
    }
    return origin_for(it->second.addrs[0], t.port, status);
  }
  auto [wit, fresh] = waiting_.try_emplace(std::string(t.host()));
  wit->second.push_back({w, t.port});
  if (fresh) resolver_.resolve(wit->first);
  return nullptr;
}

upstream::Server* ForwardProxy::next_origin(const ForwardTarget& t, const upstream::Server& failed) {
  if (t.kind != Authority::Kind::kName) return nullptr;
  auto it = dns_.find(t.host());
  if (it == dns_.end()) return nullptr;
  const DnsEntry& e = it->second;
  for (size_t i = 0; i + 1 < e.count; ++i) {
    SocketAddress a = e.addrs[i];
    a.set_port(t.port);
    if (!(a == failed.address())) continue;
    int status = 0;
    return origin_for(e.addrs[i + 1], t.port, &status);
  }
  return nullptr;
}

void ForwardProxy::cancel(OriginWaiter* w) {
  for (auto& [host, list] : waiting_) std::erase_if(list, [w](const Waiting& x) { return x.waiter == w; });
}

void ForwardProxy::on_resolved(const std::string& host, const std::vector<SocketAddress>& addrs, int error) {
  if (dns_.size() >= kMaxDnsEntries) {
    TimePoint now = Clock::now();
    std::erase_if(dns_, [now](const auto& e) { return e.second.expires <= now; });
    if (dns_.size() >= kMaxDnsEntries) dns_.erase(dns_.begin());  // all fresh: any one goes
  }
  DnsEntry& e = dns_[host];
  e.count = std::min(addrs.size(), kAddressesPerName);
  std::copy_n(addrs.begin(), e.count, e.addrs.begin());
  e.error = error;
  e.expires = Clock::now() + (addrs.empty() ? kDnsNegativeTtl : kDnsTtl);
  if (addrs.empty())
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: cannot resolve %s: %s", spec_.name.c_str(), host.c_str(),
                        gai_strerror(error));
  auto it = waiting_.find(host);
  if (it == waiting_.end()) return;
  // Taken out first: a waiter told now may at once ask for another origin (its next request).
  std::vector<Waiting> list = std::move(it->second);
  waiting_.erase(it);
  SocketAddress addr = e.count ? e.addrs[0] : SocketAddress();  // `e` may go as the table changes
  for (const Waiting& w : list) {
    int status = 502;
    upstream::Server* s = addr.empty() ? nullptr : origin_for(addr, w.port, &status);
    w.waiter->on_origin(s, status);
  }
}

upstream::Server* ForwardProxy::origin_for(SocketAddress addr, uint16_t port, int* status) {
  addr.set_port(port);
  key_.assign(addr.ip_bytes());
  key_.push_back(static_cast<char>(port >> 8));
  key_.push_back(static_cast<char>(port & 0xff));
  TimePoint now = Clock::now();
  auto it = origins_.find(key_);
  if (it != origins_.end()) {
    it->second.last_used = now;
    return it->second.server.get();
  }
  if (origins_.size() >= kMaxOrigins) {
    // Full: the least recently used origin that no connection uses makes room.
    auto victim = origins_.end();
    for (auto o = origins_.begin(); o != origins_.end(); ++o)
      if (o->second.server->active() == 0 &&
          (victim == origins_.end() || o->second.last_used < victim->second.last_used))
        victim = o;
    if (victim == origins_.end()) {
      FULCRUM_LOG_LIMITED(kWarn, "listener %s: %zu origins in use: refusing a new one", spec_.name.c_str(),
                          origins_.size());
      *status = 503;
      return nullptr;
    }
    drop(victim);
  }
  config::Server spec;
  spec.name = addr.to_string();
  spec.address = addr;
  spec.address_text = spec.name;
  Origin& o = origins_[key_];
  o.server = std::make_unique<upstream::Server>(spec, 0, backend_.get());
  o.last_used = now;
  return o.server.get();
}

void ForwardProxy::drop(std::unordered_map<std::string, Origin>::iterator it) {
  pool_.forget(it->second.server.get());
  origins_.erase(it);
}

void ForwardProxy::sweep() {
  TimePoint now = Clock::now();
  for (auto it = origins_.begin(); it != origins_.end();) {
    auto next = std::next(it);
    if (it->second.server->active() == 0 && now - it->second.last_used > kOriginIdle) drop(it);
    it = next;
  }
  std::erase_if(dns_, [now](const auto& e) { return e.second.expires <= now; });
  sweep_timer_.arm(kSweepEvery);
}

}  // namespace fulcrum::http
