// Guard: a listener's `protect:` block at run time, and the front header of the protect module.
// The proxies call it at three points, each one line: at accept (admit: allow/deny CIDRs, then
// for tcp the rate, then max_conns_per_client), at a request head (check_request: the rate, then
// the rules) and while a request body arrives (body_too_large). The Guard decides, counts the
// refusal by reason in the listener's metrics where no response carries it, and writes the
// rate-limited log line; the proxy only answers or closes.
//
// Built once per listener and config generation, shared (shared_ptr) by that listener on every
// worker; all methods are const or lock-free and may be called from any worker at once.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "core/address.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "metrics/metrics.h"
#include "protect/limit_store.h"
#include "protect/rules.h"

namespace fulcrum::protect {

class Guard;

// One accepted connection's place in its client's connection count; gives it back when
// destroyed. Empty when nothing was counted. Move-only; holds the Guard alive.
class ConnHold {
 public:
  ConnHold() = default;
  ConnHold(std::shared_ptr<const Guard> guard, const ClientKey& key) : guard_(std::move(guard)), key_(key) {}
  ConnHold(ConnHold&& o) noexcept = default;
  ConnHold& operator=(ConnHold&& o) noexcept;
  ~ConnHold();

 private:
  std::shared_ptr<const Guard> guard_;
  ClientKey key_;
};

// A connection a listener accepted and admitted: what its worker, or the worker it is handed to
// (core/conn_spread.h), makes a session of.
struct Accepted {
  Fd fd;
  SocketAddress peer;
  ConnHold hold;
};

// What to do with a request: go on (status 0), or answer `status` and count `reason`.
struct Verdict {
  int status = 0;
  metrics::Refusal reason = metrics::Refusal::kOther;
  char extra_buf[48] = {};  // header lines for the answer ("Retry-After: 3\r\n")
  uint8_t extra_len = 0;
  std::string_view extra() const { return {extra_buf, extra_len}; }
};

// Closes a connection admit() refused with a reset (SO_LINGER 0): the client sees it refused at
// once, and no TIME_WAIT is left on our side however many a flood brings.
void refuse_connection(int fd);

class Guard : public std::enable_shared_from_this<Guard> {
 public:
  // Null when the listener has nothing for a Guard to enforce (no protect block, or only the
  // timeouts and max_header_bytes the proxy applies itself). A regex that does not compile is
  // reported in *error with its mark (config is validated first, so this is not expected).
  static std::shared_ptr<Guard> build(const config::Listener& l, std::optional<Rules::BuildError>* error);
  // For tests: a Guard on a given store.
  Guard(const config::Listener& l, std::unique_ptr<LimitStore> store, std::unique_ptr<Rules> rules);

  // At accept. False: close the connection at once (refusal counted and logged here). `hold`
  // gets the connection's place in its client's count.
  bool admit(const SocketAddress& peer, TimePoint now, metrics::ListenerMetrics* m, ConnHold* hold) const;

  // At a request head (http). `target` exactly as received; `headers` a range of {name, value}.
  // The Verdict's reason is for the caller's counters (the response is counted there).
  // `content_length`: the declared body size (0 for none or chunked; body_too_large() covers
  // chunked bodies as they arrive). Order: rate (every request costs a token), rules, body size.
  template <typename Headers>
  Verdict check_request(const SocketAddress& peer, const char* ip, std::string_view target,
                        const Headers& headers, uint64_t content_length, TimePoint now,
                        metrics::ListenerMetrics* m) const {
    Verdict v;
    if (has_rate_ && !take(peer, ip, now, m, &v)) return v;
    if (rules_ && !rules_->empty()) rule_verdict(rules_->match(target, headers), ip, target, &v);
    if (v.status == 0 && body_too_large(content_length, ip))
      v.status = 413, v.reason = metrics::Refusal::kBodyTooLarge;
    return v;
  }

  // A request body of `bytes` (declared by Content-Length, or chunk data so far) is over
  // max_body_bytes: answer 413 (logged here).
  bool body_too_large(uint64_t bytes, const char* ip) const;

  void release(const ClientKey& key) const { store_->release_conn(key); }
  const LimitStore& store() const { return *store_; }

 private:
  bool take(const SocketAddress& peer, const char* ip, TimePoint now, metrics::ListenerMetrics* m,
            Verdict* v) const;
  void rule_verdict(int rule, const char* ip, std::string_view target, Verdict* v) const;

  std::string name_;
  bool l4_;  // tcp: the rate applies to connections
  bool has_rate_;
  BucketSpec bucket_;
  uint32_t max_conns_;
  uint64_t max_body_;
  std::vector<config::Cidr> allow_;
  std::vector<config::Cidr> deny_;
  std::unique_ptr<LimitStore> store_;  // null without rate or max_conns_per_client
  std::unique_ptr<Rules> rules_;
};

}  // namespace fulcrum::protect
