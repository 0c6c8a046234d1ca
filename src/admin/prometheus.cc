// GET /metrics (prometheus.h). Metric names follow Prometheus' conventions: base units (seconds,
// bytes), _total for counters, one family per name with HELP and TYPE before its samples.
// Control thread only.
#include "admin/prometheus.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "dns/query.h"
#include "health/check.h"
#include "metrics/access_log.h"
#include "upstream/server.h"

namespace fulcrum::admin {
namespace {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // name{k="v",...} value
  Writer& begin(std::string_view name) {
    out_.append(name);
    first_ = true;
    return *this;
  }
  Writer& label(std::string_view k, std::string_view v) {
    out_ += first_ ? '{' : ',';
    first_ = false;
    out_.append(k);
    out_ += "=\"";
    append_label_value(out_, v);
    out_ += '"';
    return *this;
  }
  void value(double v) {
    if (!first_) out_ += '}';
    char buf[40];
    // Integers print exactly; other values with enough digits to round-trip.
    if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 9e15 && v > -9e15)
      std::snprintf(buf, sizeof(buf), " %lld\n", static_cast<long long>(v));
    else
      std::snprintf(buf, sizeof(buf), " %.9g\n", v);
    out_ += buf;
  }
  void value(uint64_t v) {
    if (!first_) out_ += '}';
    char buf[32];
    std::snprintf(buf, sizeof(buf), " %llu\n", static_cast<unsigned long long>(v));
    out_ += buf;
  }

 private:
  std::string& out_;
  bool first_ = true;
};

std::string le_text(size_t bucket) {
  if (bucket >= metrics::kBucketUs.size()) return "+Inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(metrics::kBucketUs[bucket]) / 1e6);
  return buf;
}

void histogram(Writer& w, const char* base, const metrics::SlotTotals& s) {
  std::string bucket = std::string(base) + "_bucket";
  uint64_t cum = 0;
  for (size_t b = 0; b < metrics::kBuckets; ++b) {
    cum += s.buckets[b];
    w.begin(bucket)
        .label("listener", s.listener)
        .label("backend", s.backend)
        .label("server", s.server)
        .label("le", le_text(b))
        .value(cum);
  }
  w.begin(std::string(base) + "_sum")
      .label("listener", s.listener)
      .label("backend", s.backend)
      .label("server", s.server)
      .value(static_cast<double>(s.sum_us) / 1e6);
  w.begin(std::string(base) + "_count")
      .label("listener", s.listener)
      .label("backend", s.backend)
      .label("server", s.server)
      .value(cum);
}

// A family with one sample per listener of `rows` (dns or udp totals), every one written, zeros
// too: value(row.n).
template <typename Rows, typename Fn>
void per_listener(Writer& w, const char* name, const char* type, const char* help, const Rows& rows,
                  Fn value) {
  w.family(name, type, help);
  for (auto& r : rows) w.begin(name).label("listener", r.name).value(value(r.n));
}

// A counter family with one sample per listener and value of label `key`: pairs(row.n) gives the
// (label value, count) pairs, in the order they are written.
template <typename Rows, typename Fn>
void per_listener_by(Writer& w, const char* name, const char* help, const Rows& rows, const char* key,
                     Fn pairs) {
  w.family(name, "counter", help);
  for (auto& r : rows)
    for (auto& [v, n] : pairs(r.n)) w.begin(name).label("listener", r.name).label(key, v).value(n);
}

}  // namespace

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

std::string render_prometheus(const metrics::Snapshot& snap,
                              const std::vector<std::unique_ptr<upstream::Backend>>& backends,
                              const metrics::AccessLog* access_log, double uptime_seconds) {
  std::string out;
  out.reserve(16384);
  Writer w(out);

  w.family("fulcrum_build_info", "gauge", "Version of the running fulcrum (always 1).");
  w.begin("fulcrum_build_info").label("version", FULCRUM_VERSION).value(uint64_t{1});
  w.family("fulcrum_uptime_seconds", "gauge", "Seconds since this fulcrum process started serving.");
  w.begin("fulcrum_uptime_seconds").value(uptime_seconds);

  // ---- traffic, from the workers' counters
  w.family("fulcrum_requests_total", "counter",
           "HTTP requests finished, by listener, backend, server and status class (server is empty "
           "when fulcrum answered itself).");
  for (auto& s : snap.slots) {
    if (s.tcp) continue;
    for (size_t c = 0; c < metrics::kCodeClasses; ++c) {
      if (s.codes[c] == 0 && c != 1) continue;  // 2xx always, so a fresh server has a series
      w.begin("fulcrum_requests_total")
          .label("listener", s.listener)
          .label("backend", s.backend)
          .label("server", s.server)
          .label("code", metrics::code_class_name(c))
          .value(s.codes[c]);
    }
  }
  w.family("fulcrum_request_duration_seconds", "histogram",
           "HTTP request duration, from the request head to the end of the response.");
  for (auto& s : snap.slots)
    if (!s.tcp) histogram(w, "fulcrum_request_duration_seconds", s);
  w.family("fulcrum_response_bytes_total", "counter",
           "Bytes sent to clients (http: responses; tcp: the stream).");
  for (auto& s : snap.slots)
    w.begin("fulcrum_response_bytes_total")
        .label("listener", s.listener)
        .label("backend", s.backend)
        .label("server", s.server)
        .value(s.bytes);
  w.family("fulcrum_tcp_connections_total", "counter",
           "TCP proxy sessions finished, by listener, backend and server.");
  for (auto& s : snap.slots)
    if (s.tcp)
      w.begin("fulcrum_tcp_connections_total")
          .label("listener", s.listener)
          .label("backend", s.backend)
          .label("server", s.server)
          .value(s.count);
  w.family("fulcrum_tcp_connection_duration_seconds", "histogram", "TCP proxy session lifetimes.");
  for (auto& s : snap.slots)
    if (s.tcp) histogram(w, "fulcrum_tcp_connection_duration_seconds", s);

  w.family("fulcrum_active_connections", "gauge", "Client connections open now, by listener.");
  for (auto& l : snap.listeners)
    w.begin("fulcrum_active_connections").label("listener", l.name).value(l.active);
  w.family("fulcrum_accepted_connections_total", "counter", "Client connections accepted, by listener.");
  for (auto& l : snap.listeners)
    w.begin("fulcrum_accepted_connections_total").label("listener", l.name).value(l.accepted);
  w.family("fulcrum_refused_total", "counter",
           "Requests or connections fulcrum refused or failed itself, by listener and reason "
           "(parse_error 400, forbidden 403, no_route 404, header_timeout 408, body_too_large 413, "
           "rate 429 (tcp: closed at accept), header_too_large 431, bad_gateway 502, no_server 503, "
           "backend_timeout 504, connect_failed, conns and acl (closed at accept), rule 403, acl_denied 403 "
           "and port_denied 403 on a forward proxy).");
  for (auto& l : snap.listeners)
    for (size_t r = 0; r < metrics::kRefusals; ++r)
      if (l.refusals[r])
        w.begin("fulcrum_refused_total")
            .label("listener", l.name)
            .label("reason", metrics::refusal_name(static_cast<metrics::Refusal>(r)))
            .value(l.refusals[r]);
  w.family("fulcrum_protect_store_fail_open_total", "counter",
           "Requests or connections let through unchecked because the protect store (Redis) could not decide.");
  for (auto& l : snap.listeners)
    if (l.store_fail_open)
      w.begin("fulcrum_protect_store_fail_open_total").label("listener", l.name).value(l.store_fail_open);
  w.family("fulcrum_cache_hits_total", "counter", "Responses served from the cache, by listener.");
  for (auto& l : snap.listeners)
    if (!l.tcp) w.begin("fulcrum_cache_hits_total").label("listener", l.name).value(l.cache_hits);
  w.family("fulcrum_cache_misses_total", "counter",
           "Requests on a cache route that went upstream (not stored, stale without validator, bypass).");
  for (auto& l : snap.listeners)
    if (!l.tcp) w.begin("fulcrum_cache_misses_total").label("listener", l.name).value(l.cache_misses);
  w.family("fulcrum_cache_revalidated_total", "counter", "Stale entries refreshed by a 304 from upstream.");
  for (auto& l : snap.listeners)
    if (!l.tcp) w.begin("fulcrum_cache_revalidated_total").label("listener", l.name).value(l.cache_revalidated);
  w.family("fulcrum_cache_stored_bytes_total", "counter", "Bytes of responses stored into the cache.");
  for (auto& l : snap.listeners)
    if (!l.tcp) w.begin("fulcrum_cache_stored_bytes_total").label("listener", l.name).value(l.cache_stored_bytes);

  // ---- dns listeners, from the workers' counters. Every series of a dns listener is written, zeros
  // too, so that a rate() or an alert on a reason exists before the first such packet. A query
  // ends as exactly one of: a response (by result), a truncated reply, or a malformed drop.
  using Dns = metrics::DnsCountsOf<uint64_t>;
  using Pairs = std::vector<std::pair<std::string_view, uint64_t>>;
  per_listener(
      w, "fulcrum_dns_queries_total", "counter",
      "DNS queries read and parsed (UDP datagrams, TCP messages), answered or not, by listener: each "
      "is then one response, truncated reply or malformed drop (an oversize datagram or a bad TCP "
      "length is dropped before and not counted here).",
      snap.dns, [](const Dns& n) { return n.queries; });
  per_listener_by(
      w, "fulcrum_dns_responses_total",
      "DNS replies with the whole answer, by listener and result (noerror: one record or more, "
      "nodata: NOERROR with none, refused: a name outside the zones, notimp: an opcode other than "
      "QUERY, formerr: a bad OPT record, badvers: an EDNS version other than 0).",
      snap.dns, "result", [](const Dns& n) {
        return Pairs{{"noerror", n.answered}, {"nodata", n.nodata},   {"refused", n.refused},
                     {"notimp", n.notimp},    {"formerr", n.formerr}, {"badvers", n.badvers}};
      });
  per_listener(
      w, "fulcrum_dns_truncated_total", "counter",
      "DNS replies over UDP cut to the question with TC set: the answer did not fit the client's size "
      "(it asks again over TCP).",
      snap.dns, [](const Dns& n) { return n.truncated; });
  per_listener(w, "fulcrum_dns_fail_open_total", "counter",
               "DNS answers that listed every server of the zone's backend because none was up (fail open).",
               snap.dns, [](const Dns& n) { return n.fail_open; });
  per_listener_by(
      w, "fulcrum_dns_dropped_total",
      "DNS messages dropped unanswered, by listener and reason (a malformed query: short, response, "
      "qdcount, label, pointer, name_too_long, trailing; oversize: a UDP datagram over 2048 bytes), and "
      "replies not sent (send_dropped: the UDP socket buffer was full or the send failed).",
      snap.dns, "reason", [](const Dns& n) {
        Pairs p;
        for (size_t e = 1; e < metrics::kDnsParseErrors; ++e)  // 0 is ParseError::kNone, never counted
          p.emplace_back(dns::parse_error_name(static_cast<dns::ParseError>(e)), n.malformed[e]);
        p.emplace_back("oversize", n.udp_oversize);
        p.emplace_back("send_dropped", n.udp_send_dropped);
        return p;
      });
  per_listener(w, "fulcrum_dns_udp_fragmented_total", "counter",
               "DNS replies over IPv4 larger than the interface MTU, sent again without DF (fragmented).",
               snap.dns, [](const Dns& n) { return n.udp_fragmented; });
  per_listener(w, "fulcrum_dns_tcp_connections_total", "counter",
               "DNS TCP connections accepted and served, by listener (one closed at accept counts only in "
               "fulcrum_dns_tcp_closed_total, reason refused).",
               snap.dns, [](const Dns& n) { return n.tcp_connections; });
  per_listener_by(
      w, "fulcrum_dns_tcp_closed_total",
      "DNS TCP connections fulcrum closed itself, by listener and reason (refused: at accept, over the "
      "worker's connection cap; bad: a malformed query or a bad length; idle: the idle timeout).",
      snap.dns, "reason", [](const Dns& n) {
        return Pairs{{"refused", n.tcp_refused}, {"bad", n.tcp_closed_bad}, {"idle", n.tcp_idle_closed}};
      });

  // ---- udp listeners, from the workers' counters; every series written from the start, as for
  // dns. A flow ends as exactly one reason of fulcrum_udp_flows_closed_total, so flows_total ==
  // active_flows + the closed ones. A datagram from a client is forwarded (to_server) or dropped.
  using Udp = metrics::UdpCountsOf<uint64_t>;
  per_listener(
      w, "fulcrum_udp_flows_total", "counter",
      "UDP flows opened (a datagram from a new client address and port, given a server), by listener.",
      snap.udp, [](const Udp& n) { return n.flows_created; });
  per_listener(w, "fulcrum_udp_active_flows", "gauge", "UDP flows open now, by listener.", snap.udp,
               [](const Udp& n) { return n.active_flows; });
  per_listener_by(
      w, "fulcrum_udp_flows_closed_total",
      "UDP flows ended, by listener and reason (idle: idle_timeout passed with no datagram; failed: the "
      "server refused with ICMP port unreachable, or a socket error; stopped: a reload or shutdown).",
      snap.udp, "reason", [](const Udp& n) {
        return Pairs{{"idle", n.flows_expired}, {"failed", n.flows_failed}, {"stopped", n.flows_stopped}};
      });
  per_listener_by(w, "fulcrum_udp_datagrams_total",
                  "UDP datagrams proxied, by listener and direction (to_server: from a client, forwarded; "
                  "to_client: a server's reply, relayed).",
                  snap.udp, "direction", [](const Udp& n) {
                    return Pairs{{"to_server", n.datagrams_in}, {"to_client", n.datagrams_out}};
                  });
  per_listener_by(w, "fulcrum_udp_bytes_total",
                  "UDP payload bytes proxied, by listener and direction (to_server, to_client).", snap.udp,
                  "direction", [](const Udp& n) {
                    return Pairs{{"to_server", n.bytes_in}, {"to_client", n.bytes_out}};
                  });
  per_listener_by(
      w, "fulcrum_udp_dropped_total",
      "UDP datagrams dropped, by listener and reason (no_server: every server down; table_full: the "
      "worker holds 65536 flows; socket: no socket for a new flow; send_dropped: a send either way "
      "that would block or failed; oversize: larger than a UDP datagram can be).",
      snap.udp, "reason", [](const Udp& n) {
        return Pairs{{"no_server", n.dropped_no_server},
                     {"table_full", n.dropped_table_full},
                     {"socket", n.dropped_socket},
                     {"send_dropped", n.dropped_send},
                     {"oversize", n.dropped_oversize}};
      });

  // ---- servers, from their shared atomics
  struct Row {
    const upstream::Backend* b;
    const upstream::Server* s;
  };
  std::vector<Row> rows;
  for (auto& b : backends)
    for (auto& s : b->servers()) rows.push_back({b.get(), s.get()});
  auto each = [&](const char* name, auto&& fn) {
    for (auto& r : rows) {
      w.begin(name).label("backend", r.b->name()).label("server", r.s->name());
      fn(r);
    }
  };
  w.family("fulcrum_server_up", "gauge", "1 when the server takes new traffic (state up), else 0.");
  each("fulcrum_server_up",
       [&](const Row& r) { w.value(uint64_t{r.b->state_of(*r.s) == upstream::State::kUp ? 1u : 0u}); });
  w.family("fulcrum_server_state", "gauge",
           "The server's state as the API shows it: 1 for the current one of checking, up, down, drain, "
           "disabled, standby.");
  for (auto& r : rows) {
    upstream::State now = r.b->state_of(*r.s);
    for (auto st : {upstream::State::kChecking, upstream::State::kUp, upstream::State::kDown,
                    upstream::State::kDrain, upstream::State::kDisabled, upstream::State::kStandby})
      w.begin("fulcrum_server_state")
          .label("backend", r.b->name())
          .label("server", r.s->name())
          .label("state", upstream::state_name(st))
          .value(uint64_t{st == now ? 1u : 0u});
  }
  w.family("fulcrum_server_weight", "gauge",
           "The weight balancers use now, in config units (after slow start and agent reports).");
  each("fulcrum_server_weight", [&](const Row& r) { w.value(r.s->effective_weight()); });
  w.family("fulcrum_server_configured_weight", "gauge", "The weight set in the config or by the admin API.");
  each("fulcrum_server_configured_weight", [&](const Row& r) { w.value(uint64_t{r.s->base_weight()}); });
  w.family("fulcrum_server_reported_load", "gauge",
           "CPU and memory use the server's agent reported last (0-1), by resource.");
  for (auto& r : rows) {
    upstream::ReportedLoad load = r.s->reported_load();
    if (!load.valid) continue;
    if (load.cpu_ppm)
      w.begin("fulcrum_server_reported_load")
          .label("backend", r.b->name())
          .label("server", r.s->name())
          .label("resource", "cpu")
          .value(*load.cpu_ppm / 1e6);
    if (load.mem_ppm)
      w.begin("fulcrum_server_reported_load")
          .label("backend", r.b->name())
          .label("server", r.s->name())
          .label("resource", "mem")
          .value(*load.mem_ppm / 1e6);
  }
  w.family("fulcrum_agent_checks_total", "counter",
           "Agent probes (health.agent) by result: ok, malformed, failed.");
  for (auto& r : rows) {
    if (!r.b->spec().health.agent) continue;
    for (auto res :
         {upstream::AgentResult::kOk, upstream::AgentResult::kMalformed, upstream::AgentResult::kFailed})
      w.begin("fulcrum_agent_checks_total")
          .label("backend", r.b->name())
          .label("server", r.s->name())
          .label("result", upstream::agent_result_name(res))
          .value(r.s->agent_results(res));
  }
  w.family("fulcrum_server_active_requests", "gauge",
           "Requests (http) or connections (tcp) in flight to the server.");
  each("fulcrum_server_active_requests", [&](const Row& r) { w.value(static_cast<double>(r.s->active())); });
  w.family("fulcrum_server_attempts_total", "counter",
           "Requests or connections sent to the server, retries included.");
  each("fulcrum_server_attempts_total", [&](const Row& r) { w.value(r.s->requests()); });
  w.family("fulcrum_server_failures_total", "counter",
           "Connect failures, resets and bad responses from the server.");
  each("fulcrum_server_failures_total", [&](const Row& r) { w.value(r.s->failures()); });
  w.family("fulcrum_server_response_time_seconds", "gauge",
           "Decaying average of the server's response (http) or connect (tcp) time.");
  each("fulcrum_server_response_time_seconds",
       [&](const Row& r) { w.value(static_cast<double>(r.s->ewma_us()) / 1e6); });
  w.family("fulcrum_server_ejections_total", "counter",
           "Passive ejections: errors on live traffic took the server out.");
  each("fulcrum_server_ejections_total", [&](const Row& r) { w.value(r.s->ejections()); });
  w.family("fulcrum_server_health_transitions_total", "counter",
           "Health state changes (checking, up, down).");
  each("fulcrum_server_health_transitions_total", [&](const Row& r) { w.value(r.s->transitions()); });
  w.family("fulcrum_health_checks_total", "counter",
           "Active health checks finished, by result (OK, or a failure code such as L4TOUT, L4CON, L7STS, "
           "L7BODY).");
  for (auto& r : rows) {
    if (r.b->spec().health.check == "none") continue;
    for (size_t i = 0; i < health::kReasonCount; ++i) {
      uint64_t n = r.s->checks(i);
      if (n == 0 && i != 0) continue;
      w.begin("fulcrum_health_checks_total")
          .label("backend", r.b->name())
          .label("server", r.s->name())
          .label("result", health::reason_code(static_cast<health::Reason>(i)))
          .value(n);
    }
  }

  if (access_log) {
    w.family("fulcrum_access_log_lines_total", "counter", "Access log lines handed to the writer.");
    w.begin("fulcrum_access_log_lines_total").value(access_log->lines());
    w.family("fulcrum_access_log_dropped_total", "counter",
             "Access log lines dropped because the writer fell behind.");
    w.begin("fulcrum_access_log_dropped_total").value(access_log->dropped());
  }
  return out;
}

}  // namespace fulcrum::admin
