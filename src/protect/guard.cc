// Guard (see guard.h): a listener's protect block applied at accept, at a request head and to a
// request body. Any worker thread.
#include "protect/guard.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/log.h"

namespace fulcrum::protect {

void refuse_connection(int fd) {
  linger l{1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

ConnHold& ConnHold::operator=(ConnHold&& o) noexcept {
  if (this != &o) {
    if (guard_) guard_->release(key_);
    guard_ = std::move(o.guard_);
    key_ = o.key_;
  }
  return *this;
}

ConnHold::~ConnHold() {
  if (guard_) guard_->release(key_);
}

std::shared_ptr<Guard> Guard::build(const config::Listener& l, std::optional<Rules::BuildError>* error) {
  if (!l.protect) return nullptr;
  const config::Protect& p = *l.protect;
  bool l4 = l.protocol == config::Protocol::kTcp;
  bool needed = p.rate || p.max_conns_per_client || !p.allow.empty() || !p.deny.empty() ||
                (!l4 && (!p.rules.empty() || p.max_body_bytes));
  if (!needed) return nullptr;
  std::unique_ptr<Rules> rules;
  if (!p.rules.empty()) {
    rules = Rules::build(p.rules, error);
    if (!rules) return nullptr;
  }
  std::unique_ptr<LimitStore> store;
  if (p.rate || p.max_conns_per_client)
    store = p.store_redis.empty() ? make_local_store() : make_redis_store(p.store_redis, l.name);
  return std::make_shared<Guard>(l, std::move(store), std::move(rules));
}

Guard::Guard(const config::Listener& l, std::unique_ptr<LimitStore> store, std::unique_ptr<Rules> rules)
    : name_(l.name),
      l4_(l.protocol == config::Protocol::kTcp),
      has_rate_(l.protect && l.protect->rate),
      max_conns_(l.protect ? l.protect->max_conns_per_client : 0),
      max_body_(l.protect ? l.protect->max_body_bytes : 0),
      store_(std::move(store)),
      rules_(std::move(rules)) {
  if (!l.protect) return;
  allow_ = l.protect->allow;
  deny_ = l.protect->deny;
  if (has_rate_) {
    bucket_.per_second = l.protect->rate->per_second;
    // burst 0: one second's worth of rate (and never less than one request).
    bucket_.burst = l.protect->burst
                        ? l.protect->burst
                        : static_cast<uint32_t>(std::max(1.0, std::ceil(l.protect->rate->per_second)));
  }
  if ((has_rate_ || max_conns_) && !store_) store_ = make_local_store();
}

bool Guard::admit(const SocketAddress& peer, TimePoint now, metrics::ListenerMetrics* m,
                  ConnHold* hold) const {
  // Deny first: a denied address stays out even when an allow list also covers it.
  bool denied = false;
  for (const config::Cidr& c : deny_)
    if (c.contains(peer)) {
      denied = true;
      break;
    }
  if (!denied && !allow_.empty()) {
    denied = true;
    for (const config::Cidr& c : allow_)
      if (c.contains(peer)) {
        denied = false;
        break;
      }
  }
  if (denied) {
    if (m) m->refuse(metrics::Refusal::kAcl);
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: connection refused: acl", name_.c_str(),
                        ClientKey::of(peer).text().c_str());
    return false;
  }
  if (!store_) return true;
  ClientKey key = ClientKey::of(peer);
  if (l4_ && has_rate_) {
    TakeResult r = store_->take_token(key, bucket_, now);
    if (r.failed_open && m) m->store_fail_open();
    if (!r.allowed) {
      if (m) m->refuse(metrics::Refusal::kRateLimited);
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: connection refused: rate", name_.c_str(),
                          key.text().c_str());
      return false;
    }
  }
  if (max_conns_) {
    Admit a = store_->acquire_conn(key, max_conns_);
    if (a == Admit::kRefused) {
      if (m) m->refuse(metrics::Refusal::kConns);
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: connection refused: conns (max_conns_per_client %u)",
                          name_.c_str(), key.text().c_str(), max_conns_);
      return false;
    }
    if (a == Admit::kUncounted && m) m->store_fail_open();
    if (a == Admit::kCounted) *hold = ConnHold(shared_from_this(), key);
  }
  return true;
}

bool Guard::take(const SocketAddress& peer, const char* ip, TimePoint now, metrics::ListenerMetrics* m,
                 Verdict* v) const {
  TakeResult r = store_->take_token(ClientKey::of(peer), bucket_, now);
  if (r.failed_open && m) m->store_fail_open();
  if (r.allowed) return true;
  v->status = 429;
  v->reason = metrics::Refusal::kRateLimited;
  int n = std::snprintf(v->extra_buf, sizeof(v->extra_buf), "Retry-After: %u\r\n", r.retry_after_s);
  v->extra_len = static_cast<uint8_t>(n > 0 && static_cast<size_t>(n) < sizeof(v->extra_buf) ? n : 0);
  FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: rate (429, retry after %us)", name_.c_str(),
                      ip, r.retry_after_s);
  return false;
}

void Guard::rule_verdict(int rule, const char* ip, std::string_view target, Verdict* v) const {
  if (!rules_->denies(rule)) return;
  v->status = 403;
  v->reason = metrics::Refusal::kRule;
  FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: rule %s matched %.*s", name_.c_str(), ip,
                      rules_->describe(rule).c_str(), static_cast<int>(std::min<size_t>(target.size(), 200)),
                      target.data());
}

bool Guard::body_too_large(uint64_t bytes, const char* ip) const {
  if (max_body_ == 0 || bytes <= max_body_) return false;
  FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: body_too_large (over %llu bytes)",
                      name_.c_str(), ip, static_cast<unsigned long long>(max_body_));
  return true;
}

}  // namespace fulcrum::protect
