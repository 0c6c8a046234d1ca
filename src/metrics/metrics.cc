// Per-worker counters (metrics.h): layouts built from the config at start or reload, the hot-path
// bodies that are too long to inline, and the control thread's sum across workers.
#include "metrics/metrics.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "metrics/access_log.h"

namespace fulcrum::metrics {

size_t bucket_of(uint64_t us) {
  // 19 bounds: a linear scan over two cache lines, and most requests stop in the first few.
  size_t i = 0;
  while (i < kBucketUs.size() && us > kBucketUs[i]) ++i;
  return i;
}

const char* code_class_name(size_t c) {
  static constexpr const char* kNames[kCodeClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
  return c < kCodeClasses ? kNames[c] : "other";
}

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::kParseError:
      return "parse_error";
    case Refusal::kForbidden:
      return "forbidden";
    case Refusal::kNoRoute:
      return "no_route";
    case Refusal::kHeaderTimeout:
      return "header_timeout";
    case Refusal::kBodyTooLarge:
      return "body_too_large";
    case Refusal::kRateLimited:
      return "rate";
    case Refusal::kHeaderTooLarge:
      return "header_too_large";
    case Refusal::kNotImplemented:
      return "not_implemented";
    case Refusal::kBadGateway:
      return "bad_gateway";
    case Refusal::kNoServer:
      return "no_server";
    case Refusal::kTimeout:
      return "backend_timeout";
    case Refusal::kConnectFailed:
      return "connect_failed";
    case Refusal::kAclDenied:
      return "acl_denied";
    case Refusal::kPortDenied:
      return "port_denied";
    case Refusal::kConns:
      return "conns";
    case Refusal::kAcl:
      return "acl";
    case Refusal::kRule:
      return "rule";
    case Refusal::kOther:
    case Refusal::kCount:
      break;
  }
  return "other";
}

Refusal refusal_for_status(int status) {
  switch (status) {
    case 400:
      return Refusal::kParseError;
    case 403:
      return Refusal::kForbidden;
    case 404:
      return Refusal::kNoRoute;
    case 408:
      return Refusal::kHeaderTimeout;
    case 413:
      return Refusal::kBodyTooLarge;
    case 429:
      return Refusal::kRateLimited;
    case 431:
      return Refusal::kHeaderTooLarge;
    case 501:
    case 505:
      return Refusal::kNotImplemented;
    case 502:
      return Refusal::kBadGateway;
    case 503:
      return Refusal::kNoServer;
    case 504:
      return Refusal::kTimeout;
    default:
      return Refusal::kOther;
  }
}

// ---- layout ----------------------------------------------------------------------------------

std::shared_ptr<const Layout> Layout::build(const config::Config& cfg, size_t listener_index) {
  auto layout = std::make_shared<Layout>();
  const config::Listener& l = cfg.listeners[listener_index];
  layout->listener = l.name;
  layout->tcp = l.protocol == config::Protocol::kTcp || l.protocol == config::Protocol::kUdp;
  layout->backend_base.assign(cfg.backends.size(), -1);
  layout->backend_servers.assign(cfg.backends.size(), 0);
  layout->slots.push_back({"", ""});
  auto reach = [&](const std::string& name) {
    for (size_t b = 0; b < cfg.backends.size(); ++b) {
      if (cfg.backends[b].name != name || layout->backend_base[b] >= 0) continue;
      layout->backend_base[b] = static_cast<int>(layout->slots.size());
      layout->backend_servers[b] = static_cast<int>(cfg.backends[b].servers.size());
      layout->slots.push_back({name, ""});
      for (auto& s : cfg.backends[b].servers) layout->slots.push_back({name, s.name});
    }
  };
  if (!l.backend.empty()) reach(l.backend);
  for (size_t b = 0; b < cfg.backends.size() && layout->first_backend < 0; ++b)
    if (layout->backend_base[b] >= 0) layout->first_backend = static_cast<int>(b);
  for (auto& r : l.routes)
    if (!r.backend.empty()) reach(r.backend);
  for (auto& z : l.zones) reach(z.backend);
  return layout;
}

// ---- listener --------------------------------------------------------------------------------

ListenerMetrics::ListenerMetrics(std::shared_ptr<const Layout> layout, AccessLogSink* sink)
    : layout_(std::move(layout)), sink_(sink), slots_(new Slot[layout_->slots.size()]) {}

namespace {
void append_capped(std::string& out, std::string_view s, size_t cap, uint32_t* len) {
  s = s.substr(0, cap);
  out.append(s);
  *len = static_cast<uint32_t>(s.size());
}
uint64_t micros(SteadyTime from, SteadyTime to) {
  auto d = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return d > 0 ? static_cast<uint64_t>(d) : 0;
}
}  // namespace

void ListenerMetrics::capture(Exchange& x, std::string_view method, std::string_view target, bool http10,
                              std::string_view referer, std::string_view agent) {
  // Caps keep one absurd request from making every later line of this connection huge.
  x.text.clear();
  x.http10 = http10;
  append_capped(x.text, method, 32, &x.method_len);
  append_capped(x.text, target, 4096, &x.target_len);
  append_capped(x.text, referer, 1024, &x.referer_len);
  append_capped(x.text, agent, 512, &x.agent_len);
}

void ListenerMetrics::end_http(Exchange& x, const SocketAddress& client, SteadyTime now) {
  if (!x.active) return;
  x.active = false;
  uint64_t us = micros(x.start, now);
  size_t i = layout_->slot(x.backend, x.server);
  int status = x.status ? x.status : 499;  // no response: the client went away first (nginx's 499)
  count(slots_[i], us, status, x.bytes);
  if (sink_) {
    const auto& label = layout_->slots[i];
    sink_->http(layout_->listener, client, x, status, static_cast<double>(us) / 1000.0, label.backend,
                label.server);
  }
}

void ListenerMetrics::local_response(Exchange& x, int status, uint64_t bytes, const SocketAddress& client,
                                     SteadyTime now) {
  refuse(x.refusal != Refusal::kCount ? x.refusal : refusal_for_status(status));
  x.refusal = Refusal::kCount;
  if (!x.active) {
    begin(x, now);
    x.text.clear();
  }
  x.server = -1;  // fulcrum answered, not a server
  x.status = status;
  x.bytes += bytes;
  end_http(x, client, now);
}

void ListenerMetrics::end_tcp(const SocketAddress& client, SteadyTime start, SteadyTime now, int server,
                              int status, int client_fd) {
  uint64_t us = micros(start, now);
  if (status == 502)
    refuse(Refusal::kConnectFailed);
  else if (status == 503)
    refuse(Refusal::kNoServer);
  // Bytes each way from the kernel's count (Linux 4.19+: bytes_sent; older kernels give 0), one
  // getsockopt per connection instead of a counter on every splice.
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  uint64_t in = 0, out = 0;
  if (client_fd >= 0 && getsockopt(client_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
    if (len >= offsetof(tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
      in = ti.tcpi_bytes_received;
    if (len >= offsetof(tcp_info, tcpi_bytes_retrans) + sizeof(ti.tcpi_bytes_retrans))
      out = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans;
    else if (len >= offsetof(tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
      out = ti.tcpi_bytes_acked;
  }
  size_t i = layout_->slot(layout_->first_backend, server);
  count(slots_[i], us, status, out);
  if (sink_) {
    const auto& label = layout_->slots[i];
    sink_->tcp(layout_->listener, client, status, in, out, static_cast<double>(us) / 1000.0, label.backend,
               label.server);
  }
}

// ---- worker and registry ---------------------------------------------------------------------

ListenerMetrics* WorkerMetrics::add_listener(std::shared_ptr<const Layout> layout, AccessLogSink* sink) {
  auto m = std::make_unique<ListenerMetrics>(std::move(layout), sink);
  ListenerMetrics* p = m.get();
  std::lock_guard lock(mu_);
  listeners_.push_back(std::move(m));
  return p;
}

void add_to(DnsCountsOf<uint64_t>& t, const DnsCounters& c, bool) {  // no gauges
  t.queries += c.queries.get();
  t.answered += c.answered.get();
  t.nodata += c.nodata.get();
  t.refused += c.refused.get();
  t.notimp += c.notimp.get();
  t.formerr += c.formerr.get();
  t.badvers += c.badvers.get();
  t.truncated += c.truncated.get();
  t.fail_open += c.fail_open.get();
  for (size_t i = 0; i < kDnsParseErrors; ++i) t.malformed[i] += c.malformed[i].get();
  t.tcp_connections += c.tcp_connections.get();
  t.tcp_refused += c.tcp_refused.get();
  t.tcp_closed_bad += c.tcp_closed_bad.get();
  t.tcp_idle_closed += c.tcp_idle_closed.get();
  t.udp_oversize += c.udp_oversize.get();
  t.udp_fragmented += c.udp_fragmented.get();
  t.udp_send_dropped += c.udp_send_dropped.get();
}

void add_to(UdpCountsOf<uint64_t>& t, const UdpCounters& c, bool gauges) {
  t.flows_created += c.flows_created.get();
  if (gauges) t.active_flows += c.active_flows.get();
  t.flows_expired += c.flows_expired.get();
  t.flows_failed += c.flows_failed.get();
  t.flows_stopped += c.flows_stopped.get();
  t.datagrams_in += c.datagrams_in.get();
  t.datagrams_out += c.datagrams_out.get();
  t.bytes_in += c.bytes_in.get();
  t.bytes_out += c.bytes_out.get();
  t.dropped_no_server += c.dropped_no_server.get();
  t.dropped_table_full += c.dropped_table_full.get();
  t.dropped_socket += c.dropped_socket.get();
  t.dropped_send += c.dropped_send.get();
  t.dropped_oversize += c.dropped_oversize.get();
}

// Sums by label, with the index of each label's row: what collect() builds and retire() keeps.
struct Registry::Totals {
  Snapshot snap;
  std::map<std::tuple<std::string, std::string, std::string>, size_t> slot_at;
  std::map<std::string, size_t> listener_at;
  std::map<std::string, size_t> dns_at;
  std::map<std::string, size_t> udp_at;
  void add(const WorkerMetrics& w, bool gauges);
  // Adds `c` to the row of `rows` named `name` (made at the end when new; `at` indexes them).
  template <typename Row, typename C>
  static void add_by_name(std::map<std::string, size_t>& at, std::vector<Row>& rows, const std::string& name,
                          const C& c, bool gauges) {
    auto [it, fresh] = at.try_emplace(name, rows.size());
    if (fresh) rows.push_back({name, {}});
    add_to(rows[it->second].n, c, gauges);
  }
};

Registry::Registry() : retired_(std::make_unique<Totals>()) {}
Registry::~Registry() = default;

WorkerMetrics& Registry::add_worker() {
  workers_.push_back(std::make_unique<WorkerMetrics>());
  return *workers_.back();
}

void Registry::retire(const WorkerMetrics* w) {
  auto it = std::find_if(workers_.begin(), workers_.end(), [w](const auto& p) { return p.get() == w; });
  if (it == workers_.end()) return;
  retired_->add(**it, false);
  workers_.erase(it);
}

Snapshot Registry::collect() const {
  Totals t = *retired_;
  for (auto& w : workers_) t.add(*w, true);
  Snapshot snap = std::move(t.snap);
  std::sort(snap.dns.begin(), snap.dns.end(),
            [](const DnsTotals& a, const DnsTotals& b) { return a.name < b.name; });
  std::sort(snap.udp.begin(), snap.udp.end(),
            [](const UdpTotals& a, const UdpTotals& b) { return a.name < b.name; });
  std::sort(snap.slots.begin(), snap.slots.end(), [](const SlotTotals& a, const SlotTotals& b) {
    return std::tie(a.listener, a.backend, a.server) < std::tie(b.listener, b.backend, b.server);
  });
  std::sort(snap.listeners.begin(), snap.listeners.end(),
            [](const ListenerTotals& a, const ListenerTotals& b) { return a.name < b.name; });
  return snap;
}

void Registry::Totals::add(const WorkerMetrics& w, bool gauges) {
  w.for_each([&](const ListenerMetrics& m) {
    const Layout& layout = m.layout();
    auto [lit, lnew] = listener_at.try_emplace(layout.listener, snap.listeners.size());
    if (lnew) {
      snap.listeners.push_back({});
      snap.listeners.back().name = layout.listener;
      snap.listeners.back().tcp = layout.tcp;
    }
    ListenerTotals& lt = snap.listeners[lit->second];
    if (gauges) lt.active += m.active();
    lt.accepted += m.accepted();
    lt.cache_hits += m.cache_hits();
    lt.cache_misses += m.cache_misses();
    lt.cache_revalidated += m.cache_revalidated();
    lt.cache_stored_bytes += m.cache_stored_bytes();
    lt.store_fail_open += m.store_fail_opens();
    for (size_t r = 0; r < kRefusals; ++r) lt.refusals[r] += m.refusals(r);
    for (size_t i = 0; i < m.slots(); ++i) {
      const Slot& s = m.slot(i);
      uint64_t n = s.count.get();
      const auto& label = layout.slots[i];
      auto key = std::make_tuple(layout.listener, label.backend, label.server);
      auto it = slot_at.find(key);
      if (it == slot_at.end()) {
        // Slots never used are not shown (a backend's "no server" slot is empty while healthy);
        // once used they stay, so a series never disappears between scrapes.
        if (n == 0 && label.server.empty()) continue;
        it = slot_at.emplace(key, snap.slots.size()).first;
        snap.slots.push_back({});
        SlotTotals& t = snap.slots.back();
        t.listener = layout.listener;
        t.backend = label.backend;
        t.server = label.server;
        t.tcp = layout.tcp;
      }
      SlotTotals& t = snap.slots[it->second];
      t.count += n;
      for (size_t c = 0; c < kCodeClasses; ++c) t.codes[c] += s.codes[c].get();
      for (size_t b = 0; b < kBuckets; ++b) t.buckets[b] += s.buckets[b].get();
      t.sum_us += s.sum_us.get();
      t.bytes += s.bytes.get();
    }
  });
  // DNS and UDP listeners: by name, so the listeners of every worker and of every config since
  // start (a reload builds new ones) add up. A stopped udp listener closed its flows, so the
  // active_flows gauge sums the flows open now.
  w.for_each_dns(
      [&](const std::string& name, const DnsCounters& c) { add_by_name(dns_at, snap.dns, name, c, gauges); });
  w.for_each_udp(
      [&](const std::string& name, const UdpCounters& c) { add_by_name(udp_at, snap.udp, name, c, gauges); });
}

double quantile(const std::array<uint64_t, kBuckets>& buckets, double q) {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (static_cast<double>(seen + buckets[i]) >= rank) {
      double lo = i == 0 ? 0.0 : static_cast<double>(kBucketUs[i - 1]) / 1e6;
      // +Inf: like histogram_quantile, answer the highest finite bound.
      if (i == kBuckets - 1) return static_cast<double>(kBucketUs.back()) / 1e6;
      double hi = static_cast<double>(kBucketUs[i]) / 1e6;
      double within = (rank - static_cast<double>(seen)) / static_cast<double>(buckets[i]);
      return lo + (hi - lo) * std::clamp(within, 0.0, 1.0);
    }
    seen += buckets[i];
  }
  return static_cast<double>(kBucketUs.back()) / 1e6;
}

}  // namespace fulcrum::metrics
