// Helpers for the dns tests: queries encoded by hand (so that tests can break them on purpose),
// replies decoded by ldns (an independent decoder, so a test does not check our encoder against
// itself), and backends built from config structs. Test thread only.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "dns/responder.h"
#include "upstream/server.h"

// Last: ldns's headers (its C `bool`) break clang's reading of libstdc++'s when they come first.
#include <ldns/ldns.h>

namespace fulcrum::dns::testing {

struct QueryOptions {
  uint16_t id = 0x1234;
  uint16_t qclass = kClassIn;
  uint8_t opcode = 0;
  bool rd = true;
  bool cd = false;
  bool edns = false;
  uint16_t udp_size = 1232;
  uint8_t edns_version = 0;
  bool dnssec_ok = false;
};

inline void append16(std::vector<uint8_t>* out, uint16_t v) {
  out->push_back(static_cast<uint8_t>(v >> 8));
  out->push_back(static_cast<uint8_t>(v));
}

// "www.example.com" -> 3www7example3com0, labels taken as written (no escapes).
inline std::vector<uint8_t> wire_name(std::string_view name) {
  std::vector<uint8_t> out;
  while (!name.empty()) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    out.push_back(static_cast<uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  out.push_back(0);
  return out;
}

inline std::vector<uint8_t> opt_record(uint16_t udp_size, uint8_t version, bool dnssec_ok) {
  std::vector<uint8_t> out{0};
  append16(&out, kTypeOpt);
  append16(&out, udp_size);
  out.push_back(0);  // extended rcode
  out.push_back(version);
  out.push_back(dnssec_ok ? 0x80 : 0);
  out.push_back(0);
  append16(&out, 0);
  return out;
}

inline std::vector<uint8_t> make_query(std::string_view name, uint16_t qtype, const QueryOptions& o = {}) {
  std::vector<uint8_t> q;
  append16(&q, o.id);
  q.push_back(static_cast<uint8_t>((o.opcode << 3) | (o.rd ? 1 : 0)));
  q.push_back(o.cd ? 0x10 : 0);
  append16(&q, 1);
  append16(&q, 0);
  append16(&q, 0);
  append16(&q, o.edns ? 1 : 0);
  auto n = wire_name(name);
  q.insert(q.end(), n.begin(), n.end());
  append16(&q, qtype);
  append16(&q, o.qclass);
  if (o.edns) {
    auto opt = opt_record(o.udp_size, o.edns_version, o.dnssec_ok);
    q.insert(q.end(), opt.begin(), opt.end());
  }
  return q;
}

// A reply as ldns reads it.
struct Decoded {
  bool ok = false;  // ldns parsed it
  size_t size = 0;
  uint16_t id = 0;
  bool qr = false, aa = false, tc = false, rd = false, cd = false;
  int rcode = -1;  // header RCODE
  int opcode = -1;
  size_t qdcount = 0;
  std::string qname;  // as ldns prints it, with the trailing dot
  int qtype = -1;
  std::vector<std::string> answers;  // addresses, in order
  std::vector<std::string> owners;   // owner names of the answers
  std::vector<uint32_t> ttls;
  bool edns = false;
  uint16_t edns_udp = 0;
  bool edns_do = false;
  uint8_t edns_ext_rcode = 0;
};

inline std::string rdf_text(const ldns_rdf* rdf) {
  char* s = ldns_rdf2str(rdf);
  std::string out = s ? s : "";
  free(s);
  return out;
}

inline Decoded decode(std::span<const uint8_t> wire) {
  Decoded d;
  d.size = wire.size();
  ldns_pkt* pkt = nullptr;
  if (wire.empty() || ldns_wire2pkt(&pkt, wire.data(), wire.size()) != LDNS_STATUS_OK) return d;
  d.ok = true;
  d.id = ldns_pkt_id(pkt);
  d.qr = ldns_pkt_qr(pkt);
  d.aa = ldns_pkt_aa(pkt);
  d.tc = ldns_pkt_tc(pkt);
  d.rd = ldns_pkt_rd(pkt);
  d.cd = ldns_pkt_cd(pkt);
  d.rcode = ldns_pkt_get_rcode(pkt);
  d.opcode = ldns_pkt_get_opcode(pkt);
  d.qdcount = ldns_pkt_qdcount(pkt);
  if (d.qdcount) {
    ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
    d.qname = rdf_text(ldns_rr_owner(q));
    d.qtype = ldns_rr_get_type(q);
  }
  ldns_rr_list* an = ldns_pkt_answer(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(an); ++i) {
    ldns_rr* rr = ldns_rr_list_rr(an, i);
    d.answers.push_back(rdf_text(ldns_rr_rdf(rr, 0)));
    d.owners.push_back(rdf_text(ldns_rr_owner(rr)));
    d.ttls.push_back(ldns_rr_ttl(rr));
  }
  d.edns = ldns_pkt_edns(pkt);
  if (d.edns) {
    d.edns_udp = ldns_pkt_edns_udp_size(pkt);
    d.edns_do = ldns_pkt_edns_do(pkt);
    d.edns_ext_rcode = ldns_pkt_edns_extended_rcode(pkt);
  }
  ldns_pkt_free(pkt);
  return d;
}

struct ServerSpec {
  std::string address;  // "127.0.0.1:80", "[2001:db8::1]:80"
  uint32_t weight = 1;
  bool backup = false;
};

inline config::Backend backend_spec(const std::vector<ServerSpec>& servers) {
  config::Backend spec;
  spec.name = "app";
  spec.health.check = "none";  // servers start up
  for (size_t i = 0; i < servers.size(); ++i) {
    config::Server s;
    s.name = "s" + std::to_string(i);
    s.weight = servers[i].weight;
    s.backup = servers[i].backup;
    s.address_text = servers[i].address;
    s.address = SocketAddress::parse(s.address_text).value();
    spec.servers.push_back(std::move(s));
  }
  return spec;
}

// n IPv4 servers 10.0.0.1..n, weight 1.
inline std::vector<ServerSpec> v4_servers(size_t n) {
  std::vector<ServerSpec> out;
  for (size_t i = 1; i <= n; ++i)
    out.push_back({"10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ":80", 1, false});
  return out;
}

}  // namespace fulcrum::dns::testing
