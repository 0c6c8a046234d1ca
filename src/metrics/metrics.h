// Metrics: per-worker counters, summed when read (STYLE 7). Each worker owns one WorkerMetrics and,
// in it, one ListenerMetrics per listener (DnsCounters for a dns listener, UdpCounters for a udp
// one): plain arrays of counters indexed by numbers worked out when the listener was built, so
// counting a request is an array increment (no lock, no map, no allocation, no cache line shared
// with another worker). Counters are atomics written by their worker alone (a relaxed load and
// store, not a locked add) and read by the control thread, which sums them across workers when
// /metrics is scraped. Front header of the metrics module.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/address.h"

namespace fulcrum::metrics {

using SteadyTime = std::chrono::steady_clock::time_point;

// Request-duration histogram bounds, Prometheus style (le="..."), in microseconds so the hot path
// compares integers. Sub-millisecond buckets because a proxy on a LAN answers in hundreds of µs;
// denser from 5 to 150 ms, where web backends answer, so that the dashboard's p50/p99 (interpolated
// inside a bucket) stay within a few ms; the top one (10s) sits below the default
// response_timeout of 30s, which lands in +Inf.
inline constexpr std::array<uint64_t, 19> kBucketUs = {
    500,   1000,   2500,   5000,   7500,   10000,   15000,   25000,   40000,   50000,
    75000, 100000, 150000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
inline constexpr size_t kBuckets = kBucketUs.size() + 1;  // the last one is +Inf
size_t bucket_of(uint64_t us);

// Status classes for fulcrum_requests_total{code}: "1xx".."5xx", and "other" for anything else.
inline constexpr size_t kCodeClasses = 6;
const char* code_class_name(size_t c);
inline size_t code_class(int status) {
  return status >= 100 && status < 600 ? static_cast<size_t>(status / 100 - 1) : 5;
}

// Why fulcrum refused or failed a request or connection itself (STYLE 11: every refusal is
// counted). fulcrum_refused_total{listener,reason}.
enum class Refusal : uint8_t {
  kParseError,      // 400
  kForbidden,       // 403
  kNoRoute,         // 404
  kHeaderTimeout,   // 408
  kBodyTooLarge,    // 413
  kRateLimited,     // 429
  kHeaderTooLarge,  // 431
  kNotImplemented,  // 501, 505
  kBadGateway,      // 502 (http: connect failed, reset or a bad response after the retries)
  kNoServer,        // 503 (every server down, drained or disabled)
  kTimeout,         // 504
  kConnectFailed,   // tcp: every connect attempt failed
  kAclDenied,       // 403: forward proxy, the host is in acl.deny
  kPortDenied,      // 403: forward proxy, a CONNECT port not in acl.allow_ports
  kConns,           // protect.max_conns_per_client: closed at accept
  kAcl,             // protect.allow / deny: closed at accept
  kRule,            // protect.rules: 403
  kOther,           // another status fulcrum made itself
  kCount
};
inline constexpr size_t kRefusals = static_cast<size_t>(Refusal::kCount);
const char* refusal_name(Refusal r);
Refusal refusal_for_status(int status);

// A counter or gauge with one writer thread. The writer does a relaxed load and store (a plain
// add, no lock prefix); readers on other threads see some recent value, never a torn one.
class Counter {
 public:
  void add(uint64_t d = 1) { v_.store(v_.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
  void sub(uint64_t d = 1) { v_.store(v_.load(std::memory_order_relaxed) - d, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// The counters of one (listener, backend, server) on one worker. For http listeners `codes` and
// the histogram count requests; for tcp listeners `count` and the histogram count connections.
struct Slot {
  Counter count;
  std::array<Counter, kCodeClasses> codes;
  std::array<Counter, kBuckets> buckets;  // not cumulative; the reader makes them so
  Counter sum_us;
  Counter bytes;  // to the client
};

// What a ListenerMetrics needs to know about its listener, worked out once from the config and
// shared (read-only) by every worker's copy. Slot 0 is "no backend" (404, 400 before routing).
// A backend the listener can reach gets a block: its first slot for responses fulcrum made with
// no server (503, 502 after retries), then one slot per server in config order.
struct Layout {
  std::string listener;
  bool tcp = false;
  std::vector<int> backend_base;     // config backend index -> first slot, or -1 (not reachable)
  std::vector<int> backend_servers;  // config backend index -> its number of servers
  int first_backend = -1;            // a tcp listener's one backend
  struct Label {
    std::string backend;
    std::string server;
  };
  std::vector<Label> slots;
  static std::shared_ptr<const Layout> build(const config::Config& cfg, size_t listener_index);
  // The slot of a request routed to backend `b` (config index, -1 for none) and server `s` (its
  // index in the backend, -1 for none). Out of range (a stale index) falls back to slot 0.
  size_t slot(int b, int s) const {
    if (b < 0 || static_cast<size_t>(b) >= backend_base.size() || backend_base[b] < 0) return 0;
    if (s >= backend_servers[b]) return 0;
    return static_cast<size_t>(backend_base[b]) + (s < 0 ? 0 : static_cast<size_t>(s) + 1);
  }
};

class AccessLogSink;

// One request in flight on an http connection: what the access log and the counters need at its
// end. Lives in the connection and is reused, so it costs no allocation once its string has grown
// (and the string is only filled when an access log is on).
struct Exchange {
  bool active = false;
  bool http10 = false;
  bool http2 = false;  // came as an HTTP/2 stream (set by the proxy after observe_request)
  int backend = -1;  // config index of the backend it was routed to
  int server = -1;   // index of the server it went to (the last one tried)
  int status = 0;    // the response status once known
  // Set to count a response fulcrum makes under this reason rather than its status's
  // (refusal_for_status: a 403 from a protect rule or a forward proxy's acl); kCount for none.
  // local_response() uses and clears it.
  Refusal refusal = Refusal::kCount;
  uint64_t bytes = 0;
  SteadyTime start{};
  // Captured for the access log: method, target, referer and user agent, back to back.
  std::string text;
  uint32_t method_len = 0, target_len = 0, referer_len = 0, agent_len = 0;
  std::string_view method() const { return std::string_view(text).substr(0, method_len); }
  std::string_view target() const { return std::string_view(text).substr(method_len, target_len); }
  std::string_view referer() const {
    return std::string_view(text).substr(method_len + target_len, referer_len);
  }
  std::string_view agent() const {
    return std::string_view(text).substr(method_len + target_len + referer_len, agent_len);
  }
};

// One listener's counters on one worker. Hot-path calls come from that worker only; the control
// thread reads. Allocated on its own (alignas) so no line is shared with another worker.
class alignas(64) ListenerMetrics {
 public:
  ListenerMetrics(std::shared_ptr<const Layout> layout, AccessLogSink* sink);
  const Layout& layout() const { return *layout_; }

  // Connections (both kinds).
  void on_accept() {
    accepted_.add();
    active_.add();
  }
  void on_close() { active_.sub(); }

  // HTTP. begin() at a request head; end_http() once its response is complete, refused, or the
  // connection went away (status 0 then; logged as 499 like nginx).
  bool logging() const { return sink_ != nullptr; }
  void begin(Exchange& x, SteadyTime now) {
    x.active = true;
    x.backend = x.server = -1;
    x.status = 0;
    x.refusal = Refusal::kCount;
    x.bytes = 0;
    x.start = now;
    x.method_len = x.target_len = x.referer_len = x.agent_len = 0;
  }
  // Only with logging(): keeps the request's words for the log line.
  void capture(Exchange& x, std::string_view method, std::string_view target, bool http10,
               std::string_view referer, std::string_view agent);
  void end_http(Exchange& x, const SocketAddress& client, SteadyTime now);
  // A response fulcrum made itself: counts the refusal, then ends the exchange (begins one first
  // when the request never got that far, e.g. a head that did not parse).
  void local_response(Exchange& x, int status, uint64_t bytes, const SocketAddress& client, SteadyTime now);

  // TCP: a session ended. `server` is the index of the server it was connected to, or -1 if it
  // never connected; status 200 (served), 502 (connect failed), 503 (no server), 499 (the client
  // left first), as nginx's stream module logs them. Bytes come from TCP_INFO of the client socket.
  void end_tcp(const SocketAddress& client, SteadyTime start, SteadyTime now, int server, int status,
               int client_fd);

  void cache_hit() { cache_hits_.add(); }
  void cache_miss() { cache_misses_.add(); }
  void cache_revalidated() { cache_revalidated_.add(); }
  void cache_stored(uint64_t bytes) { cache_stored_bytes_.add(bytes); }
  void refuse(Refusal r) { refusals_[static_cast<size_t>(r)].add(); }
  // The protect store could not decide (Redis down) and a limit was not applied.
  void store_fail_open() { store_fail_open_.add(); }

  // Readers (control thread).
  const Slot& slot(size_t i) const { return slots_[i]; }
  size_t slots() const { return layout_->slots.size(); }
  uint64_t active() const { return active_.get(); }
  uint64_t accepted() const { return accepted_.get(); }
  uint64_t cache_hits() const { return cache_hits_.get(); }
  uint64_t cache_misses() const { return cache_misses_.get(); }
  uint64_t cache_revalidated() const { return cache_revalidated_.get(); }
  uint64_t cache_stored_bytes() const { return cache_stored_bytes_.get(); }
  uint64_t refusals(size_t r) const { return refusals_[r].get(); }
  uint64_t store_fail_opens() const { return store_fail_open_.get(); }

 private:
  void count(Slot& s, uint64_t us, int status, uint64_t bytes) {
    s.count.add();
    s.codes[code_class(status)].add();
    s.buckets[bucket_of(us)].add();
    s.sum_us.add(us);
    s.bytes.add(bytes);
  }

  std::shared_ptr<const Layout> layout_;
  AccessLogSink* sink_;
  std::unique_ptr<Slot[]> slots_;
  Counter active_;
  Counter accepted_;
  Counter cache_hits_;
  Counter cache_misses_;
  Counter cache_revalidated_;
  Counter cache_stored_bytes_;
  Counter store_fail_open_;
  std::array<Counter, kRefusals> refusals_;
};

// The counters of one `protocol: dns` listener on one worker (src/dns/ writes them as DnsStats),
// templated so that the per-worker counters and their sums across workers list the fields once.
// STYLE 11: every reply refused and every packet dropped is counted, by reason. They live here,
// owned by the worker's WorkerMetrics, and not in the dns listener, which a reload destroys once
// its old worker stops: the control thread may read them at any time, and the sums stay monotonic.
inline constexpr size_t kDnsParseErrors = 8;  // dns::ParseError::kCount (static_assert in dns/responder.h)
template <typename T>
struct DnsCountsOf {
  T queries{};    // messages handed to the responder (UDP datagrams, TCP messages)
  T answered{};   // NOERROR with at least one record
  T nodata{};     // NOERROR, empty answer (other types, or no server of the family)
  T refused{};    // names outside the zones, classes other than IN
  T notimp{};     // opcodes other than QUERY
  T formerr{};    // a bad OPT record
  T badvers{};    // EDNS version other than 0
  T truncated{};  // TC: the answer did not fit the client's UDP size
  T fail_open{};  // answered with every server because none was up
  std::array<T, kDnsParseErrors> malformed{};  // dropped unanswered, by dns::ParseError
  T tcp_connections{};                         // accepted
  T tcp_refused{};                             // closed at accept: the worker's connection cap was reached
  T tcp_closed_bad{};                          // closed for a malformed or oversized message
  T tcp_idle_closed{};                         // closed by the idle timeout
  T udp_oversize{};                            // a datagram larger than our receive slot (dropped)
  T udp_fragmented{};                          // replies above the interface MTU, sent without DF
  T udp_send_dropped{};                        // replies dropped because the socket would block or failed
};
using DnsCounters = DnsCountsOf<Counter>;
// Adds what `c` holds now to `t` (control thread); gauges only with `gauges` (a worker that ended
// has none open, and its sums are kept without them: Registry::retire).
void add_to(DnsCountsOf<uint64_t>& t, const DnsCounters& c, bool gauges);

// The counters of one `protocol: udp` listener on one worker (src/l4/ writes them as UdpStats),
// kept like DnsCounters: owned by the worker's WorkerMetrics, so they outlive a UdpListener that a
// reload retires. Every dropped datagram is counted, by reason, and every flow that ends, by why:
// flows_created == active_flows + flows_expired + flows_failed + flows_stopped.
template <typename T>
struct UdpCountsOf {
  T flows_created{};       // a datagram from a new client address and port, given a server
  T active_flows{};        // a gauge: flows open now (one writer: added and taken by the worker)
  T flows_expired{};       // closed by idle_timeout
  T flows_failed{};        // closed: the server refused (ICMP port unreachable) or a socket error
  T flows_stopped{};       // closed by a stop: a reload retiring the listener, or a shutdown
  T datagrams_in{};        // client -> server, forwarded
  T datagrams_out{};       // server -> client, relayed
  T bytes_in{};            // payload bytes of datagrams_in
  T bytes_out{};           // payload bytes of datagrams_out
  T dropped_no_server{};   // every server down: no flow opened
  T dropped_table_full{};  // kMaxFlows reached on this worker: no flow opened
  T dropped_socket{};      // no socket (or no epoll slot) for a new flow
  T dropped_send{};        // a send either way that would block or failed (buffer full, ENOBUFS)
  T dropped_oversize{};    // larger than the receive slot (cannot happen over IPv4/IPv6 UDP)
};
using UdpCounters = UdpCountsOf<Counter>;
void add_to(UdpCountsOf<uint64_t>& t, const UdpCounters& c, bool gauges);

// A worker's metrics: the ListenerMetrics of every listener it has had. They are not freed
// before the worker has ended, so a connection of a listener removed by a reload can still count;
// then Registry::retire folds them into the registry's totals, so counters stay monotonic across
// reloads (the reader sums them by label).
class WorkerMetrics {
 public:
  // Any thread (start-up and reload); `sink` may be null (no access log).
  ListenerMetrics* add_listener(std::shared_ptr<const Layout> layout, AccessLogSink* sink);
  template <typename Fn>
  void for_each(Fn&& fn) const {
    std::lock_guard lock(mu_);
    for (auto& l : listeners_) fn(*l);
  }
  // A dns listener's counters, kept like the ListenerMetrics above (any thread; start-up and reload).
  DnsCounters* add_dns_listener(std::string name) { return add_named(dns_, std::move(name)); }
  template <typename Fn>
  void for_each_dns(Fn&& fn) const {  // fn(name, counters)
    std::lock_guard lock(mu_);
    for (auto& d : dns_) fn(std::as_const(d->name), std::as_const(d->counters));
  }
  // A udp listener's counters, the same way.
  UdpCounters* add_udp_listener(std::string name) { return add_named(udp_, std::move(name)); }
  template <typename Fn>
  void for_each_udp(Fn&& fn) const {  // fn(name, counters)
    std::lock_guard lock(mu_);
    for (auto& u : udp_) fn(std::as_const(u->name), std::as_const(u->counters));
  }

 private:
  // Allocated on its own lines, like ListenerMetrics: no line shared with another worker.
  template <typename C>
  struct alignas(64) Named {
    std::string name;
    C counters;
  };
  template <typename C>
  C* add_named(std::vector<std::unique_ptr<Named<C>>>& list, std::string name) {
    auto n = std::make_unique<Named<C>>();
    n->name = std::move(name);
    C* p = &n->counters;
    std::lock_guard lock(mu_);
    list.push_back(std::move(n));
    return p;
  }
  mutable std::mutex mu_;  // taken when a listener is added and when the control thread reads
  std::vector<std::unique_ptr<ListenerMetrics>> listeners_;
  std::vector<std::unique_ptr<Named<DnsCounters>>> dns_;
  std::vector<std::unique_ptr<Named<UdpCounters>>> udp_;
};

// Sums across workers, by label.
struct SlotTotals {
  std::string listener, backend, server;
  bool tcp = false;
  uint64_t count = 0;
  std::array<uint64_t, kCodeClasses> codes{};
  std::array<uint64_t, kBuckets> buckets{};  // not cumulative
  uint64_t sum_us = 0;
  uint64_t bytes = 0;
};
struct ListenerTotals {
  std::string name;
  bool tcp = false;
  uint64_t active = 0, accepted = 0, cache_hits = 0, cache_misses = 0, cache_revalidated = 0,
           cache_stored_bytes = 0, store_fail_open = 0;
  std::array<uint64_t, kRefusals> refusals{};
};
struct DnsTotals {
  std::string name;
  DnsCountsOf<uint64_t> n;
};
struct UdpTotals {
  std::string name;
  UdpCountsOf<uint64_t> n;
};
struct Snapshot {
  std::vector<SlotTotals> slots;          // sorted by (listener, backend, server)
  std::vector<ListenerTotals> listeners;  // sorted by name; dns and udp listeners are not here
  std::vector<DnsTotals> dns;             // sorted by name
  std::vector<UdpTotals> udp;             // sorted by name
};

// Every worker's metrics. Owned by the runtime; workers are added at start and by each reload.
class Registry {
 public:
  Registry();
  ~Registry();
  WorkerMetrics& add_worker();
  size_t workers() const { return workers_.size(); }
  // Control thread. Allocates freely (cold path).
  Snapshot collect() const;
  // Control thread: folds the counters of a worker whose thread has ended (a reload's old
  // generation, once its last connection closed) into the registry's own totals and frees them,
  // so the sums stay monotonic while reloads grow neither the memory nor the work of a scrape.
  // Gauges (active connections and flows) are not carried: they were 0 when the worker ended.
  void retire(const WorkerMetrics* w);

 private:
  struct Totals;
  std::vector<std::unique_ptr<WorkerMetrics>> workers_;
  std::unique_ptr<Totals> retired_;
};

// Quantile (0..1) from non-cumulative bucket counts, interpolated inside the bucket as
// Prometheus' histogram_quantile() does; in seconds, 0 when there is no sample.
double quantile(const std::array<uint64_t, kBuckets>& buckets, double q);

}  // namespace fulcrum::metrics
