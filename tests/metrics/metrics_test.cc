// src/metrics/metrics.cc: layouts from a config, the hot-path counters of one listener on one
// worker, and the control thread's sums across workers and across reloads.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <tuple>

namespace fulcrum::metrics {
namespace {

config::Server server(const std::string& name, int port) {
  config::Server s;
  s.name = name;
  s.address = *SocketAddress::parse("127.0.0.1:" + std::to_string(port));
  s.address_text = s.address.to_string();
  return s;
}

// Three backends; "web" (http) routes to app and api, "raw" (tcp) to db.
config::Config make_config() {
  config::Config cfg;
  for (auto [name, n] : {std::pair<std::string, int>{"app", 3}, {"api", 2}, {"db", 1}}) {
    config::Backend b;
    b.name = name;
    for (int i = 0; i < n; ++i) b.servers.push_back(server(name + std::to_string(i + 1), 9000 + i));
    cfg.backends.push_back(b);
  }
  config::Listener web;
  web.name = "web";
  web.protocol = config::Protocol::kHttp;
  config::Route r1, r2, r3;
  r1.backend = "api";
  r2.backend = "app";
  r3.backend = "api";  // a backend named twice gets one block
  web.routes = {r1, r2, r3};
  config::Listener raw;
  raw.name = "raw";
  raw.protocol = config::Protocol::kTcp;
  raw.backend = "db";
  cfg.listeners = {web, raw};
  return cfg;
}

SteadyTime at(int64_t us) { return SteadyTime(std::chrono::microseconds(us)); }

TEST(MetricsTest, BucketsAreLessOrEqualBounds) {
  EXPECT_EQ(bucket_of(0), 0u);
  EXPECT_EQ(bucket_of(500), 0u);
  EXPECT_EQ(bucket_of(501), 1u);
  EXPECT_EQ(bucket_of(10'000'000), kBucketUs.size() - 1);
  EXPECT_EQ(bucket_of(10'000'001), kBuckets - 1);  // +Inf
  for (size_t i = 1; i < kBucketUs.size(); ++i) EXPECT_LT(kBucketUs[i - 1], kBucketUs[i]);
}

TEST(MetricsTest, StatusClassesAndRefusals) {
  EXPECT_STREQ(code_class_name(code_class(200)), "2xx");
  EXPECT_STREQ(code_class_name(code_class(101)), "1xx");
  EXPECT_STREQ(code_class_name(code_class(599)), "5xx");
  EXPECT_STREQ(code_class_name(code_class(0)), "other");
  EXPECT_STREQ(code_class_name(code_class(600)), "other");
  EXPECT_STREQ(refusal_name(refusal_for_status(503)), "no_server");
  EXPECT_STREQ(refusal_name(refusal_for_status(400)), "parse_error");
  EXPECT_STREQ(refusal_name(refusal_for_status(404)), "no_route");
  EXPECT_STREQ(refusal_name(refusal_for_status(431)), "header_too_large");
  EXPECT_STREQ(refusal_name(refusal_for_status(504)), "backend_timeout");
  EXPECT_STREQ(refusal_name(refusal_for_status(418)), "other");
  for (size_t r = 0; r < kRefusals; ++r) EXPECT_STRNE(refusal_name(static_cast<Refusal>(r)), "");
}

TEST(MetricsTest, LayoutGivesEachReachableBackendABlock) {
  auto cfg = make_config();
  auto web = Layout::build(cfg, 0);
  EXPECT_EQ(web->listener, "web");
  EXPECT_FALSE(web->tcp);
  // slot 0: no backend; api block (3 slots), app block (4 slots); db unreachable.
  ASSERT_EQ(web->slots.size(), 1u + 3 + 4);
  EXPECT_EQ(web->backend_base, (std::vector<int>{4, 1, -1}));
  EXPECT_EQ(web->slots[web->slot(0, 2)].server, "app3");
  EXPECT_EQ(web->slots[web->slot(0, -1)].backend, "app");
  EXPECT_EQ(web->slots[web->slot(0, -1)].server, "");
  EXPECT_EQ(web->slot(1, 0), 2u);
  EXPECT_EQ(web->slot(-1, -1), 0u);
  EXPECT_EQ(web->slot(2, 0), 0u);  // not reachable from this listener
  EXPECT_EQ(web->slot(7, 0), 0u);  // stale index
  EXPECT_EQ(web->slot(1, 2), 0u);  // past the backend's servers: not another backend's slot
  EXPECT_EQ(web->slot(1, 9), 0u);
  auto raw = Layout::build(cfg, 1);
  EXPECT_TRUE(raw->tcp);
  EXPECT_EQ(raw->first_backend, 2);
  EXPECT_EQ(raw->slots[raw->slot(raw->first_backend, 0)].server, "db1");
}

TEST(MetricsTest, ALocalResponseCountsTheReasonItsExchangeGives) {
  auto cfg = make_config();
  Registry reg;
  ListenerMetrics* m = reg.add_worker().add_listener(Layout::build(cfg, 0), nullptr);
  SocketAddress client = *SocketAddress::parse("127.0.0.1:5555");
  Exchange x;
  m->begin(x, at(0));
  x.refusal = Refusal::kAclDenied;  // a forward proxy's acl: a 403 with its own reason
  m->local_response(x, 403, 10, client, at(10));
  m->begin(x, at(0));  // the next request starts without one
  m->local_response(x, 403, 10, client, at(10));
  Snapshot snap = reg.collect();
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kAclDenied)], 1u);
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kForbidden)], 1u);
  EXPECT_STREQ(refusal_name(Refusal::kAclDenied), "acl_denied");
  EXPECT_STREQ(refusal_name(Refusal::kPortDenied), "port_denied");
}

TEST(MetricsTest, RequestsAreCountedBySlotCodeAndDuration) {
  auto cfg = make_config();
  Registry reg;
  ListenerMetrics* m = reg.add_worker().add_listener(Layout::build(cfg, 0), nullptr);
  SocketAddress client = *SocketAddress::parse("127.0.0.1:5555");
  Exchange x;
  for (int i = 0; i < 3; ++i) {
    m->on_accept();
    m->begin(x, at(0));
    x.backend = 0;
    x.server = 1;
    x.status = 200;
    x.bytes = 100;
    m->end_http(x, client, at(700));  // 0.7 ms: the second bucket
    m->end_http(x, client, at(900));  // ended twice: counted once
  }
  m->on_close();
  m->begin(x, at(0));
  x.backend = 0;
  m->local_response(x, 503, 50, client, at(10));  // no server: the backend's own slot
  m->local_response(x, 400, 20, client, at(10));  // before routing: slot 0
  m->begin(x, at(0));
  x.backend = 1;
  x.server = 0;
  m->end_http(x, client, at(2'000'000));  // the client left: 499, a 4xx
  m->cache_hit();

  Snapshot snap = reg.collect();
  ASSERT_EQ(snap.listeners.size(), 1u);
  EXPECT_EQ(snap.listeners[0].accepted, 3u);
  EXPECT_EQ(snap.listeners[0].active, 2u);
  EXPECT_EQ(snap.listeners[0].cache_hits, 1u);
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kNoServer)], 1u);
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kParseError)], 1u);
  auto find = [&](const std::string& b, const std::string& s) -> const SlotTotals* {
    for (auto& t : snap.slots)
      if (t.backend == b && t.server == s) return &t;
    return nullptr;
  };
  const SlotTotals* app2 = find("app", "app2");
  ASSERT_NE(app2, nullptr);
  EXPECT_EQ(app2->codes[1], 3u);
  EXPECT_EQ(app2->buckets[1], 3u);
  EXPECT_EQ(app2->sum_us, 2100u);
  EXPECT_EQ(app2->bytes, 300u);
  ASSERT_NE(find("app", ""), nullptr);
  EXPECT_EQ(find("app", "")->codes[4], 1u);
  EXPECT_EQ(find("", "")->codes[3], 1u);
  EXPECT_EQ(find("api", "api1")->codes[3], 1u);
  EXPECT_EQ(find("api", "api1")->buckets[bucket_of(2'000'000)], 1u);
  // Servers show up before their first request (so rate() has a zero to start from); an unused
  // "no server" slot does not.
  ASSERT_NE(find("app", "app1"), nullptr);
  EXPECT_EQ(find("app", "app1")->count, 0u);
  EXPECT_EQ(find("api", ""), nullptr);
}

TEST(MetricsTest, WorkersAndReloadsAreSummedByLabel) {
  auto cfg = make_config();
  Registry reg;
  WorkerMetrics& w1 = reg.add_worker();
  WorkerMetrics& w2 = reg.add_worker();
  auto layout = Layout::build(cfg, 1);
  ListenerMetrics* a = w1.add_listener(layout, nullptr);
  ListenerMetrics* b = w2.add_listener(layout, nullptr);
  // A reload builds the listener again: counters of the old and new objects add up.
  ListenerMetrics* c = w1.add_listener(Layout::build(cfg, 1), nullptr);
  SocketAddress client = *SocketAddress::parse("127.0.0.1:5555");
  a->end_tcp(client, at(0), at(100), 0, 200, -1);
  b->end_tcp(client, at(0), at(100), 0, 200, -1);
  c->end_tcp(client, at(0), at(100), 0, 200, -1);
  c->end_tcp(client, at(0), at(100), -1, 503, -1);
  a->end_tcp(client, at(0), at(100), -1, 502, -1);
  Snapshot snap = reg.collect();
  ASSERT_EQ(snap.listeners.size(), 1u);
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kNoServer)], 1u);
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kConnectFailed)], 1u);
  uint64_t db1 = 0, none = 0;
  for (auto& t : snap.slots) {
    EXPECT_TRUE(t.tcp);
    if (t.server == "db1") db1 += t.count;
    if (t.server.empty()) none += t.count;
  }
  EXPECT_EQ(db1, 3u);
  EXPECT_EQ(none, 2u);
  // Sorted and one row per label set.
  for (size_t i = 1; i < snap.slots.size(); ++i)
    EXPECT_LT(std::tie(snap.slots[i - 1].listener, snap.slots[i - 1].backend, snap.slots[i - 1].server),
              std::tie(snap.slots[i].listener, snap.slots[i].backend, snap.slots[i].server));
}

TEST(MetricsTest, DnsCountersAreSummedAcrossWorkersAndReloads) {
  Registry reg;
  WorkerMetrics& w1 = reg.add_worker();
  WorkerMetrics& w2 = reg.add_worker();
  DnsCounters* a = w1.add_dns_listener("dns");
  DnsCounters* b = w2.add_dns_listener("dns");
  DnsCounters* other = w2.add_dns_listener("another");
  a->queries.add(3);
  a->answered.add(2);
  a->malformed[1].add();
  b->queries.add(4);
  b->refused.add(4);
  b->tcp_connections.add();
  b->tcp_closed_bad.add();
  other->udp_oversize.add(7);
  // A reload gives the new workers their own counters; the old ones stay in the registry (the
  // retired listener is gone), so the sums by name never go back.
  WorkerMetrics& w3 = reg.add_worker();
  DnsCounters* c = w3.add_dns_listener("dns");
  c->queries.add();
  c->nodata.add();
  c->malformed[1].add(2);
  c->udp_send_dropped.add(5);
  Snapshot snap = reg.collect();
  EXPECT_TRUE(snap.listeners.empty());  // dns listeners have their own totals
  ASSERT_EQ(snap.dns.size(), 2u);
  EXPECT_EQ(snap.dns[0].name, "another");
  EXPECT_EQ(snap.dns[0].n.udp_oversize, 7u);
  EXPECT_EQ(snap.dns[0].n.queries, 0u);
  const DnsCountsOf<uint64_t>& d = snap.dns[1].n;
  EXPECT_EQ(snap.dns[1].name, "dns");
  EXPECT_EQ(d.queries, 8u);
  EXPECT_EQ(d.answered, 2u);
  EXPECT_EQ(d.refused, 4u);
  EXPECT_EQ(d.nodata, 1u);
  EXPECT_EQ(d.malformed[1], 3u);
  EXPECT_EQ(d.malformed[2], 0u);
  EXPECT_EQ(d.tcp_connections, 1u);
  EXPECT_EQ(d.tcp_closed_bad, 1u);
  EXPECT_EQ(d.udp_send_dropped, 5u);
  EXPECT_EQ(d.udp_oversize, 0u);
}

TEST(MetricsTest, UdpCountersAreSummedAcrossWorkersAndReloads) {
  Registry reg;
  WorkerMetrics& w1 = reg.add_worker();
  WorkerMetrics& w2 = reg.add_worker();
  UdpCounters* a = w1.add_udp_listener("game");
  UdpCounters* b = w2.add_udp_listener("game");
  UdpCounters* other = w2.add_udp_listener("voice");
  DnsCounters* dns = w2.add_dns_listener("game-dns");
  a->flows_created.add(3);
  a->active_flows.add(3);
  a->datagrams_in.add(10);
  a->bytes_in.add(100);
  b->flows_created.add(2);
  b->active_flows.add(2);
  b->active_flows.sub();
  b->flows_expired.add();
  b->datagrams_out.add(7);
  b->bytes_out.add(70);
  b->dropped_no_server.add(4);
  other->dropped_oversize.add();
  dns->queries.add();
  // A reload: the old listeners stop (their flows close, the gauge goes to 0) and new workers
  // count from zero; the sums by name never go back.
  a->flows_stopped.add(3);
  a->active_flows.sub(3);
  b->flows_stopped.add();
  b->active_flows.sub();
  WorkerMetrics& w3 = reg.add_worker();
  UdpCounters* c = w3.add_udp_listener("game");
  c->flows_created.add();
  c->active_flows.add();
  c->datagrams_in.add(2);
  c->dropped_send.add(6);
  c->dropped_table_full.add();
  c->dropped_socket.add();
  Snapshot snap = reg.collect();
  EXPECT_TRUE(snap.listeners.empty());  // udp listeners have their own totals
  ASSERT_EQ(snap.dns.size(), 1u);
  ASSERT_EQ(snap.udp.size(), 2u);
  EXPECT_EQ(snap.udp[0].name, "game");
  EXPECT_EQ(snap.udp[1].name, "voice");
  EXPECT_EQ(snap.udp[1].n.dropped_oversize, 1u);
  EXPECT_EQ(snap.udp[1].n.flows_created, 0u);
  const UdpCountsOf<uint64_t>& u = snap.udp[0].n;
  EXPECT_EQ(u.flows_created, 6u);
  EXPECT_EQ(u.active_flows, 1u);  // only the new worker's flow is open
  EXPECT_EQ(u.flows_expired, 1u);
  EXPECT_EQ(u.flows_failed, 0u);
  EXPECT_EQ(u.flows_stopped, 4u);
  EXPECT_EQ(u.flows_created, u.active_flows + u.flows_expired + u.flows_failed + u.flows_stopped);
  EXPECT_EQ(u.datagrams_in, 12u);
  EXPECT_EQ(u.datagrams_out, 7u);
  EXPECT_EQ(u.bytes_in, 100u);
  EXPECT_EQ(u.bytes_out, 70u);
  EXPECT_EQ(u.dropped_no_server, 4u);
  EXPECT_EQ(u.dropped_table_full, 1u);
  EXPECT_EQ(u.dropped_socket, 1u);
  EXPECT_EQ(u.dropped_send, 6u);
  EXPECT_EQ(u.dropped_oversize, 0u);
}

TEST(MetricsTest, RetiredWorkersAreFoldedIntoTheTotalsAndFreed) {
  auto cfg = make_config();
  Registry reg;
  SocketAddress client = *SocketAddress::parse("127.0.0.1:5555");
  // One generation per round, as reloads make them: the old one's counters are folded in and
  // its WorkerMetrics freed, so the registry holds only the live workers, and the sums go on.
  WorkerMetrics* old = nullptr;
  for (int gen = 0; gen < 50; ++gen) {
    WorkerMetrics& w = reg.add_worker();
    ListenerMetrics* m = w.add_listener(Layout::build(cfg, 1), nullptr);
    m->on_accept();
    m->end_tcp(client, at(0), at(100), 0, 200, -1);
    m->end_tcp(client, at(0), at(100), -1, 503, -1);
    w.add_dns_listener("dns")->queries.add(2);
    UdpCounters* u = w.add_udp_listener("game");
    u->flows_created.add();
    u->active_flows.add();
    if (old) reg.retire(old);
    EXPECT_EQ(reg.workers(), 1u);
    old = &w;
  }
  reg.retire(nullptr);  // not a worker of the registry: nothing happens
  Snapshot snap = reg.collect();
  ASSERT_EQ(snap.listeners.size(), 1u);
  EXPECT_EQ(snap.listeners[0].accepted, 50u);
  EXPECT_EQ(snap.listeners[0].active, 1u);  // the live worker's; the retired ones' are not kept
  EXPECT_EQ(snap.listeners[0].refusals[static_cast<size_t>(Refusal::kNoServer)], 50u);
  uint64_t db1 = 0;
  for (auto& t : snap.slots)
    if (t.server == "db1") db1 += t.count;
  EXPECT_EQ(db1, 50u);
  ASSERT_EQ(snap.dns.size(), 1u);
  EXPECT_EQ(snap.dns[0].n.queries, 100u);
  ASSERT_EQ(snap.udp.size(), 1u);
  EXPECT_EQ(snap.udp[0].n.flows_created, 50u);
  EXPECT_EQ(snap.udp[0].n.active_flows, 1u);
  // The last one goes too: the totals stay, the gauges drop to 0.
  reg.retire(old);
  EXPECT_EQ(reg.workers(), 0u);
  snap = reg.collect();
  EXPECT_EQ(snap.listeners[0].accepted, 50u);
  EXPECT_EQ(snap.listeners[0].active, 0u);
  EXPECT_EQ(snap.udp[0].n.active_flows, 0u);
  EXPECT_EQ(snap.dns[0].n.queries, 100u);
}

TEST(MetricsTest, ReaderSeesMonotonicCountsWhileAWorkerWrites) {
  auto cfg = make_config();
  Registry reg;
  ListenerMetrics* m = reg.add_worker().add_listener(Layout::build(cfg, 0), nullptr);
  constexpr int kRequests = 200000;
  std::atomic<bool> done{false};
  std::thread worker([&] {
    SocketAddress client;
    Exchange x;
    for (int i = 0; i < kRequests; ++i) {
      m->begin(x, at(0));
      x.backend = 0;
      x.server = i % 3;
      x.status = 200;
      m->end_http(x, client, at(i % 5000));
    }
    done = true;
  });
  uint64_t last = 0;
  auto total = [&] {
    uint64_t n = 0;
    for (auto& t : reg.collect().slots) n += t.codes[1];
    return n;
  };
  while (!done) {
    uint64_t now = total();
    EXPECT_GE(now, last);
    last = now;
  }
  worker.join();
  EXPECT_EQ(total(), static_cast<uint64_t>(kRequests));
}

TEST(MetricsTest, QuantilesInterpolateInsideTheBucket) {
  std::array<uint64_t, kBuckets> b{};
  EXPECT_EQ(quantile(b, 0.5), 0.0);
  b[1] = 100;  // all between 0.5 and 1 ms
  EXPECT_NEAR(quantile(b, 0.5), 0.00075, 1e-9);
  EXPECT_NEAR(quantile(b, 1.0), 0.001, 1e-9);
  b[0] = 100;  // half below 0.5 ms
  EXPECT_NEAR(quantile(b, 0.5), 0.0005, 1e-9);
  EXPECT_NEAR(quantile(b, 0.99), 0.0005 + 0.0005 * 0.98, 1e-9);
  std::array<uint64_t, kBuckets> inf{};
  inf[kBuckets - 1] = 5;  // +Inf answers the highest finite bound, as histogram_quantile does
  EXPECT_NEAR(quantile(inf, 0.5), 10.0, 1e-9);
}

}  // namespace
}  // namespace fulcrum::metrics
