// Builds DNS replies by hand into the caller's buffer: records pre-encoded per zone on the rare
// path, copied on the hot path. ldns only turns zone names into wire form at start-up. One
// worker's thread (stats read by others).
#include "dns/responder.h"

#include <algorithm>
#include <cstring>

#include "core/log.h"

// Last: ldns's headers (its C `bool`) break clang's reading of libstdc++'s when they come first.
#include <ldns/ldns.h>

namespace fulcrum::dns {

std::string name_to_wire(std::string_view name) {
  if (name.empty() || name == ".") return {};  // the root is no zone to balance
  std::string text(name);
  if (text.back() != '.') text += '.';
  ldns_rdf* rdf = ldns_dname_new_frm_str(text.c_str());
  if (rdf == nullptr) return {};
  ldns_dname2canonical(rdf);  // lower case: the key our parser's lower-cased names are looked up by
  std::string out(reinterpret_cast<const char*>(ldns_rdf_data(rdf)), ldns_rdf_size(rdf));
  ldns_rdf_deep_free(rdf);
  return out;
}

namespace {

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

constexpr size_t kOptSize = 11;  // root owner, type, class, TTL, RDLENGTH 0
// BADVERS is RCODE 16: its upper eight bits go in the OPT record (RFC 6891 6.1.3).
constexpr uint8_t kBadVersHigh = 1;

struct Reply {
  Rcode rcode = Rcode::kNoError;
  bool aa = false;
  bool tc = false;
  bool question = true;
  bool opt = false;
  uint8_t ext_rcode = 0;
  uint16_t ancount = 0;
};

// Header, question (copied from the query) and the OPT record; the answers, if any, sit between
// the question and the OPT, written by the caller at header_and_question(...).
size_t write_header(const Query& q, std::span<const uint8_t> packet, const Reply& r, uint8_t* out) {
  put16(out, q.id);
  out[2] =
      static_cast<uint8_t>(0x80 | (q.opcode << 3) | (r.aa ? 0x04 : 0) | (r.tc ? 0x02 : 0) | (q.rd ? 1 : 0));
  out[3] = static_cast<uint8_t>((q.cd ? 0x10 : 0) | static_cast<uint8_t>(r.rcode));
  put16(out + 4, r.question ? 1 : 0);
  put16(out + 6, r.ancount);
  put16(out + 8, 0);
  put16(out + 10, r.opt ? 1 : 0);
  size_t n = kHeaderSize;
  if (r.question) {
    std::memcpy(out + n, packet.data() + kHeaderSize, q.question_end - kHeaderSize);
    n = q.question_end;
  }
  return n;
}

size_t write_opt(const Query& q, uint8_t ext_rcode, uint8_t* out) {
  out[0] = 0;
  put16(out + 1, kTypeOpt);
  put16(out + 3, kAdvertisedPayload);
  out[5] = ext_rcode;
  out[6] = 0;  // version 0
  out[7] = q.dnssec_ok ? 0x80 : 0;
  out[8] = 0;
  put16(out + 9, 0);
  return kOptSize;
}

}  // namespace

Responder::Responder(std::string listener, std::span<const ZoneConfig> zones, uint64_t seed, DnsStats& stats)
    : listener_(std::move(listener)), seed_(seed), stats_(stats) {
  zones_.reserve(zones.size());
  for (const ZoneConfig& zc : zones) {
    std::string wire = name_to_wire(zc.name);
    if (wire.empty() || zc.backend == nullptr || by_name_.count(wire)) {
      FULCRUM_LOG(kError, "dns listener %s: zone '%s' skipped (bad name, no backend or a duplicate)",
                  listener_.c_str(), zc.name.c_str());
      continue;
    }
    Zone& z = zones_.emplace_back();
    z.name = zc.name;
    z.wire = wire;
    z.backend = zc.backend;
    z.ttl = zc.ttl;
    z.answers = zc.answers;
    by_name_.emplace(std::move(wire), zones_.size() - 1);
  }
}

void Responder::encode(Family& f, const upstream::Server& s, uint32_t ttl) {
  size_t at = f.wire.size();
  f.wire.resize(at + f.rr_size);
  uint8_t* p = f.wire.data() + at;
  // Owner: a pointer to the question's name at offset 12 (RFC 1035 4.1.4), so the records carry
  // the client's spelling of it and each costs 2 bytes of name.
  p[0] = 0xC0;
  p[1] = kHeaderSize;
  put16(p + 2, f.rr_size == 16 ? kTypeA : kTypeAaaa);
  put16(p + 4, kClassIn);
  put32(p + 6, ttl);
  std::string_view ip = s.address().ip_bytes();
  put16(p + 10, static_cast<uint16_t>(ip.size()));
  std::memcpy(p + 12, ip.data(), ip.size());
}

void Responder::rebuild(Zone& z) {
  std::vector<upstream::Server*> servers = z.backend->serving();
  bool fail_open = servers.empty();
  if (fail_open) {
    // Fail open: an answer naming servers we believe down may still reach one that works (or one
    // our checks cannot see), while an empty answer reaches nothing at all.
    for (auto& s : z.backend->servers()) servers.push_back(s.get());
    FULCRUM_LOG_LIMITED(kWarn,
                        "dns listener %s zone %s: no server of backend %s is up; answering with all %zu "
                        "(fail open) [FAILOPEN]",
                        listener_.c_str(), z.name.c_str(), z.backend->name().c_str(), servers.size());
  } else if (z.fail_open) {
    FULCRUM_LOG_LIMITED(kInfo,
                        "dns listener %s zone %s: %zu server(s) of backend %s up again; fail open over",
                        listener_.c_str(), z.name.c_str(), servers.size(), z.backend->name().c_str());
  }
  z.fail_open = fail_open;
  for (Family* f : {&z.v4, &z.v6}) {
    f->wire.clear();
    f->weights.clear();
  }
  // Records in the order written in the config: a reply of k records is a run of k from the
  // leading one, so neighbours in the config travel together; the lead is what is weighted.
  for (upstream::Server* s : servers) {
    int family = s->address().family();
    Family& f = family == AF_INET6 ? z.v6 : z.v4;
    if (family != AF_INET && family != AF_INET6) continue;
    encode(f, *s, z.ttl);
    f.weights.push_back(fail_open ? std::max<uint32_t>(s->configured_weight(), 1) : s->scaled_weight());
  }
  for (Family* f : {&z.v4, &z.v6}) {
    f->count = f->weights.size();
    size_t bytes = f->wire.size();
    f->wire.resize(bytes * 2);
    // Not with 0 bytes: an empty vector's data() may be null, and memcpy(null, ...) is undefined
    // even for nothing (found by fuzz/dns_fuzz.cc: a backend without IPv6 servers).
    if (bytes) std::memcpy(f->wire.data() + bytes, f->wire.data(), bytes);
    f->rotation.reset(f->weights, seed_);
  }
}

void Responder::refresh(Zone& z) {
  // The generation moves on every state or weight change of the backend's servers; checking it
  // is one acquire load, rebuilding is the rare path.
  uint64_t g = z.backend->generation();
  if (g == z.generation) return;
  z.generation = g;
  rebuild(z);
}

size_t Responder::records(const Zone& z, const Family& f) const {
  return z.answers == 0 ? f.count : std::min<size_t>(z.answers, f.count);
}

size_t Responder::respond(std::span<const uint8_t> packet, Transport transport, std::span<uint8_t> out) {
  stats_.queries.add();
  if (out.size() < kMinUdpPayload) return 0;
  Query& q = query_;
  ParseError e = parse_query(packet, &q);
  if (e != ParseError::kNone) {
    stats_.malformed[static_cast<size_t>(e)].add();
    return 0;
  }
  uint8_t* o = out.data();
  Reply r;
  if (q.opcode != kOpcodeQuery) {  // RFC 1035 4.1.1: NOTIMP, and we read nothing past the header
    stats_.notimp.add();
    r.rcode = Rcode::kNotImp;
    r.question = false;
    return write_header(q, packet, r, o);
  }
  if (q.edns_bad) {  // RFC 6891 6.1.1 and 7: FORMERR, without an OPT record
    stats_.formerr.add();
    r.rcode = Rcode::kFormErr;
    return write_header(q, packet, r, o);
  }
  r.opt = q.edns;
  if (q.edns && q.edns_version != 0) {  // RFC 6891 6.1.3
    stats_.badvers.add();
    r.ext_rcode = kBadVersHigh;
    size_t n = write_header(q, packet, r, o);
    return n + write_opt(q, r.ext_rcode, o + n);
  }

  Zone* z = nullptr;
  if (q.qclass == kClassIn || q.qclass == kClassAny) {
    auto it = by_name_.find(std::string_view(reinterpret_cast<const char*>(q.name), q.name_len));
    if (it != by_name_.end()) z = &zones_[it->second];
  }
  if (z == nullptr) {  // not ours to answer: REFUSED, not authoritative (RFC 8906 3.1.3.3)
    stats_.refused.add();
    r.rcode = Rcode::kRefused;
    size_t n = write_header(q, packet, r, o);
    return r.opt ? n + write_opt(q, 0, o + n) : n;
  }

  refresh(*z);
  r.aa = true;
  bool want4 = q.qtype == kTypeA || q.qtype == kTypeAny;
  bool want6 = q.qtype == kTypeAaaa || q.qtype == kTypeAny;
  size_t n4 = want4 ? records(*z, z->v4) : 0;
  size_t n6 = want6 ? records(*z, z->v6) : 0;

  size_t limit = out.size();
  if (transport == Transport::kUdp)
    limit = std::min<size_t>({limit, q.edns ? q.udp_size : kMinUdpPayload, kMaxUdpPayload});
  else
    limit = std::min(limit, kMaxTcpMessage);
  size_t head = q.question_end + (r.opt ? kOptSize : 0);
  if (head + n4 * z->v4.rr_size + n6 * z->v6.rr_size > limit) {
    if (transport == Transport::kUdp) {
      // RFC 2181 9: a reply that cannot carry the whole answer says so; the client asks again
      // over TCP, where it fits.
      stats_.truncated.add();
      r.tc = true;
      size_t n = write_header(q, packet, r, o);
      return r.opt ? n + write_opt(q, 0, o + n) : n;
    }
    // Over TCP only a backend of thousands of servers would not fit 64 KiB: send what fits.
    size_t room = limit - head;
    n4 = std::min(n4, room / z->v4.rr_size);
    room -= n4 * z->v4.rr_size;
    n6 = std::min(n6, room / z->v6.rr_size);
  }
  r.ancount = static_cast<uint16_t>(n4 + n6);
  size_t n = write_header(q, packet, r, o);
  for (auto [f, k] : {std::pair{&z->v4, n4}, std::pair{&z->v6, n6}}) {
    if (k == 0) continue;
    size_t start = f->rotation.next();
    size_t bytes = k * f->rr_size;
    std::memcpy(o + n, f->wire.data() + start * f->rr_size, bytes);
    n += bytes;
  }
  if (r.opt) n += write_opt(q, 0, o + n);
  if (r.ancount == 0) {
    stats_.nodata.add();
  } else {
    stats_.answered.add();
    if (z->fail_open) stats_.fail_open.add();
  }
  return n;
}

}  // namespace fulcrum::dns
