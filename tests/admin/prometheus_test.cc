// src/admin/prometheus.cc: the text exposition format 0.0.4 as Prometheus parses it.
#include "admin/prometheus.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "dns/query.h"
#include "upstream/server.h"

namespace fulcrum::admin {
namespace {

config::Backend backend(const std::string& check) {
  config::Backend b;
  b.name = "app";
  b.health.check = check;
  for (int i = 0; i < 2; ++i) {
    config::Server s;
    s.name = "s" + std::to_string(i + 1);
    s.address = *SocketAddress::parse("127.0.0.1:" + std::to_string(9000 + i));
    s.address_text = s.address.to_string();
    s.weight = 3;
    b.servers.push_back(s);
  }
  return b;
}

metrics::Snapshot snapshot() {
  metrics::Snapshot snap;
  metrics::SlotTotals s;
  s.listener = "we\"b";
  s.backend = "app";
  s.server = "s1";
  s.codes[1] = 7;
  s.codes[4] = 2;
  s.count = 9;
  s.buckets[0] = 4;
  s.buckets[3] = 3;
  s.buckets[metrics::kBuckets - 1] = 2;
  s.sum_us = 1'500'000;
  snap.slots.push_back(s);
  metrics::ListenerTotals l;
  l.name = "we\"b";
  l.active = 3;
  l.refusals[static_cast<size_t>(metrics::Refusal::kNoServer)] = 5;
  snap.listeners.push_back(l);
  metrics::DnsTotals d;
  d.name = "dns";
  d.n.queries = 20;
  d.n.answered = 9;
  d.n.nodata = 2;
  d.n.refused = 1;
  d.n.badvers = 1;
  d.n.truncated = 3;
  d.n.fail_open = 4;
  d.n.malformed[static_cast<size_t>(dns::ParseError::kShort)] = 3;
  d.n.malformed[static_cast<size_t>(dns::ParseError::kQdcount)] = 1;
  d.n.udp_oversize = 6;
  d.n.udp_send_dropped = 2;
  d.n.udp_fragmented = 1;
  d.n.tcp_connections = 5;
  d.n.tcp_closed_bad = 2;
  d.n.tcp_idle_closed = 1;
  snap.dns.push_back(d);
  metrics::UdpTotals u;
  u.name = "game";
  u.n.flows_created = 9;
  u.n.active_flows = 4;
  u.n.flows_expired = 3;
  u.n.flows_failed = 1;
  u.n.flows_stopped = 1;
  u.n.datagrams_in = 30;
  u.n.datagrams_out = 28;
  u.n.bytes_in = 3000;
  u.n.bytes_out = 2800;
  u.n.dropped_no_server = 2;
  u.n.dropped_send = 5;
  snap.udp.push_back(u);
  return snap;
}

TEST(PrometheusTest, EveryFamilyHasHelpAndTypeAndEverySampleParses) {
  std::vector<std::unique_ptr<upstream::Backend>> backends;
  backends.push_back(std::make_unique<upstream::Backend>(backend("http")));
  backends[0]->servers()[0]->set_health(upstream::Health::kUp);
  backends[0]->servers()[1]->set_admin(upstream::Admin::kDrain);
  upstream::CheckReport rep;
  rep.valid = true;
  rep.result = 5;  // L7STS
  backends[0]->servers()[1]->record_check(rep);
  std::string text = render_prometheus(snapshot(), backends, nullptr, 12.5);

  std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)$)re");
  std::set<std::string> helped, typed;
  std::string family;  // the last TYPE: a family's samples follow it, not another family's
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "HELP twice for " << name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.count(name)) << name;
      EXPECT_TRUE(typed.insert(name).second) << name;
      family = name;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << line;
    std::string name = m[1];
    std::string base = std::regex_replace(name, std::regex("_(bucket|sum|count)$"), "");
    EXPECT_TRUE(typed.count(name) || typed.count(base)) << "no TYPE before " << line;
    EXPECT_TRUE(name == family || base == family) << line << " under # TYPE " << family;
    values[name + m[2].str()] = m[5];
  }
  EXPECT_EQ(values["fulcrum_requests_total{listener=\"we\\\"b\",backend=\"app\",server=\"s1\",code=\"2xx\"}"],
            "7");
  EXPECT_EQ(values["fulcrum_requests_total{listener=\"we\\\"b\",backend=\"app\",server=\"s1\",code=\"5xx\"}"],
            "2");
  // Cumulative buckets; +Inf equals _count.
  EXPECT_EQ(values["fulcrum_request_duration_seconds_bucket{listener=\"we\\\"b\",backend=\"app\",server="
                   "\"s1\",le=\"0.0005\"}"],
            "4");
  EXPECT_EQ(values["fulcrum_request_duration_seconds_bucket{listener=\"we\\\"b\",backend=\"app\",server="
                   "\"s1\",le=\"0.0075\"}"],
            "7");
  EXPECT_EQ(values["fulcrum_request_duration_seconds_bucket{listener=\"we\\\"b\",backend=\"app\",server="
                   "\"s1\",le=\"+Inf\"}"],
            "9");
  EXPECT_EQ(
      values["fulcrum_request_duration_seconds_count{listener=\"we\\\"b\",backend=\"app\",server=\"s1\"}"],
      "9");
  EXPECT_EQ(
      values["fulcrum_request_duration_seconds_sum{listener=\"we\\\"b\",backend=\"app\",server=\"s1\"}"],
      "1.5");
  EXPECT_EQ(values["fulcrum_refused_total{listener=\"we\\\"b\",reason=\"no_server\"}"], "5");
  EXPECT_EQ(values["fulcrum_active_connections{listener=\"we\\\"b\"}"], "3");
  EXPECT_EQ(values["fulcrum_server_up{backend=\"app\",server=\"s1\"}"], "1");
  EXPECT_EQ(values["fulcrum_server_up{backend=\"app\",server=\"s2\"}"], "0");
  EXPECT_EQ(values["fulcrum_server_state{backend=\"app\",server=\"s2\",state=\"drain\"}"], "1");
  EXPECT_EQ(values["fulcrum_server_weight{backend=\"app\",server=\"s1\"}"], "3");
  EXPECT_EQ(values["fulcrum_health_checks_total{backend=\"app\",server=\"s2\",result=\"L7STS\"}"], "1");
  EXPECT_EQ(values["fulcrum_uptime_seconds"], "12.5");
  EXPECT_EQ(values["fulcrum_dns_queries_total{listener=\"dns\"}"], "20");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"noerror\"}"], "9");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"nodata\"}"], "2");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"refused\"}"], "1");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"badvers\"}"], "1");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"notimp\"}"], "0");
  EXPECT_EQ(values["fulcrum_dns_responses_total{listener=\"dns\",result=\"formerr\"}"], "0");
  EXPECT_EQ(values["fulcrum_dns_truncated_total{listener=\"dns\"}"], "3");
  EXPECT_EQ(values["fulcrum_dns_fail_open_total{listener=\"dns\"}"], "4");
  EXPECT_EQ(values["fulcrum_dns_dropped_total{listener=\"dns\",reason=\"short\"}"], "3");
  EXPECT_EQ(values["fulcrum_dns_dropped_total{listener=\"dns\",reason=\"qdcount\"}"], "1");
  EXPECT_EQ(values["fulcrum_dns_dropped_total{listener=\"dns\",reason=\"oversize\"}"], "6");
  EXPECT_EQ(values["fulcrum_dns_dropped_total{listener=\"dns\",reason=\"send_dropped\"}"], "2");
  EXPECT_EQ(values["fulcrum_dns_udp_fragmented_total{listener=\"dns\"}"], "1");
  EXPECT_EQ(values["fulcrum_dns_tcp_connections_total{listener=\"dns\"}"], "5");
  EXPECT_EQ(values["fulcrum_dns_tcp_closed_total{listener=\"dns\",reason=\"bad\"}"], "2");
  EXPECT_EQ(values["fulcrum_dns_tcp_closed_total{listener=\"dns\",reason=\"idle\"}"], "1");
  EXPECT_EQ(values["fulcrum_dns_tcp_closed_total{listener=\"dns\",reason=\"refused\"}"], "0");
  // Every reason is written, zeros too, under a stable lower_snake name; never "ok" (ParseError::kNone).
  std::set<std::string> reasons;
  for (auto& [key, v] : values)
    if (key.rfind("fulcrum_dns_dropped_total{", 0) == 0) reasons.insert(key);
  EXPECT_EQ(reasons.size(), metrics::kDnsParseErrors - 1 + 2);
  for (const char* r : {"short", "response", "qdcount", "label", "pointer", "name_too_long", "trailing"})
    EXPECT_TRUE(values.count(std::string("fulcrum_dns_dropped_total{listener=\"dns\",reason=\"") + r + "\"}"))
        << r;
  EXPECT_EQ(values["fulcrum_udp_flows_total{listener=\"game\"}"], "9");
  EXPECT_EQ(values["fulcrum_udp_active_flows{listener=\"game\"}"], "4");
  EXPECT_EQ(values["fulcrum_udp_flows_closed_total{listener=\"game\",reason=\"idle\"}"], "3");
  EXPECT_EQ(values["fulcrum_udp_flows_closed_total{listener=\"game\",reason=\"failed\"}"], "1");
  EXPECT_EQ(values["fulcrum_udp_flows_closed_total{listener=\"game\",reason=\"stopped\"}"], "1");
  EXPECT_EQ(values["fulcrum_udp_datagrams_total{listener=\"game\",direction=\"to_server\"}"], "30");
  EXPECT_EQ(values["fulcrum_udp_datagrams_total{listener=\"game\",direction=\"to_client\"}"], "28");
  EXPECT_EQ(values["fulcrum_udp_bytes_total{listener=\"game\",direction=\"to_server\"}"], "3000");
  EXPECT_EQ(values["fulcrum_udp_bytes_total{listener=\"game\",direction=\"to_client\"}"], "2800");
  EXPECT_EQ(values["fulcrum_udp_dropped_total{listener=\"game\",reason=\"no_server\"}"], "2");
  EXPECT_EQ(values["fulcrum_udp_dropped_total{listener=\"game\",reason=\"send_dropped\"}"], "5");
  // Zeros are written too: every reason exists before its first drop.
  for (const char* r : {"table_full", "socket", "oversize"})
    EXPECT_EQ(values[std::string("fulcrum_udp_dropped_total{listener=\"game\",reason=\"") + r + "\"}"], "0")
        << r;
  size_t udp_series = 0;
  for (auto& [key, v] : values)
    if (key.rfind("fulcrum_udp_", 0) == 0) ++udp_series;
  EXPECT_EQ(udp_series, 1u + 1 + 3 + 2 + 2 + 5);
  for (const char* fam :
       {"fulcrum_requests_total", "fulcrum_request_duration_seconds", "fulcrum_server_up",
        "fulcrum_active_connections", "fulcrum_cache_hits_total", "fulcrum_health_checks_total",
        "fulcrum_server_active_requests", "fulcrum_server_weight", "fulcrum_refused_total",
        "fulcrum_dns_queries_total", "fulcrum_dns_responses_total", "fulcrum_dns_truncated_total",
        "fulcrum_dns_fail_open_total", "fulcrum_dns_dropped_total", "fulcrum_dns_udp_fragmented_total",
        "fulcrum_dns_tcp_connections_total", "fulcrum_dns_tcp_closed_total", "fulcrum_udp_flows_total",
        "fulcrum_udp_active_flows", "fulcrum_udp_flows_closed_total", "fulcrum_udp_datagrams_total",
        "fulcrum_udp_bytes_total", "fulcrum_udp_dropped_total"})
    EXPECT_TRUE(typed.count(fam)) << fam;
}

TEST(PrometheusTest, LabelValuesAreEscaped) {
  std::string out;
  append_label_value(out, "a\\b\"c\nd");
  EXPECT_EQ(out, "a\\\\b\\\"c\\nd");
}

TEST(PrometheusTest, NoHealthCheckSeriesWithoutChecks) {
  std::vector<std::unique_ptr<upstream::Backend>> backends;
  backends.push_back(std::make_unique<upstream::Backend>(backend("none")));
  std::string text = render_prometheus({}, backends, nullptr, 1);
  EXPECT_EQ(text.find("fulcrum_health_checks_total{"), std::string::npos);
  EXPECT_NE(text.find("# TYPE fulcrum_health_checks_total counter"), std::string::npos);
}

}  // namespace
}  // namespace fulcrum::admin
