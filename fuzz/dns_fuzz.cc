// libFuzzer target for the DNS input path: the query parser (src/dns/query.cc) and the
// responder that answers from it (src/dns/responder.cc), as a UDP or TCP query. Byte 0 picks the
// transport (bit 0) and which of three servers are down (bits 1-3, so the records are rebuilt and
// fail open is reached); the rest is the packet. Besides ASan/UBSan findings it traps when a reply
// is not a DNS message ldns can read, does not echo the query's id and question, or is larger than
// the transport allows. Single-threaded.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "dns/query.h"
#include "dns/responder.h"
#include "fuzz_check.h"

// Last: ldns's headers (its C `bool`) break clang's reading of libstdc++'s when they come first.
#include <ldns/ldns.h>

using namespace fulcrum;
using namespace fulcrum::dns;

namespace {

struct World {
  World() {
    config::Backend spec;
    spec.name = "app";
    spec.health.check = "none";
    const char* addrs[] = {"10.0.0.1:80", "[2001:db8::1]:80", "10.0.0.2:80", "10.0.0.3:80"};
    uint32_t weights[] = {3, 1, 1, 2};
    for (size_t i = 0; i < 4; ++i) {
      config::Server s;
      s.name = "s" + std::to_string(i);
      s.address_text = addrs[i];
      s.address = SocketAddress::parse(addrs[i]).value();
      s.weight = weights[i];
      s.backup = i == 3;
      spec.servers.push_back(s);
    }
    // Enough servers that a reply overflows 512 bytes and is truncated.
    config::Backend many = spec;
    many.name = "many";
    many.servers.clear();
    for (int i = 0; i < 60; ++i) {
      config::Server s;
      s.name = "m" + std::to_string(i);
      s.address_text = "10.1.0." + std::to_string(i + 1) + ":80";
      s.address = SocketAddress::parse(s.address_text).value();
      many.servers.push_back(s);
    }
    backend = std::make_unique<upstream::Backend>(spec);
    big = std::make_unique<upstream::Backend>(many);
    std::vector<ZoneConfig> zones = {{"www.example.com", backend.get(), 30, 0},
                                     {"a.b", backend.get(), 5, 2},
                                     {"many.example", big.get(), 60, 0}};
    responder = std::make_unique<Responder>("fuzz", zones, 3, stats);
    out.resize(kMaxTcpMessage);
  }
  std::unique_ptr<upstream::Backend> backend;
  std::unique_ptr<upstream::Backend> big;
  DnsStats stats;
  std::unique_ptr<Responder> responder;
  std::vector<uint8_t> out;
};

void check_reply(std::span<const uint8_t> query, std::span<const uint8_t> reply, Transport t) {
  Query q;
  CHECK(parse_query(query, &q) == ParseError::kNone);  // respond() answered it, so it parsed
  CHECK(reply.size() >= kHeaderSize);
  CHECK(reply.size() <= (t == Transport::kTcp ? kMaxTcpMessage : kMaxUdpPayload));
  if (t == Transport::kUdp) CHECK(reply.size() <= (q.edns ? q.udp_size : kMinUdpPayload));
  CHECK(reply[0] == query[0] && reply[1] == query[1]);  // id
  CHECK(reply[2] & 0x80);                               // QR
  if (q.opcode == kOpcodeQuery) {
    CHECK(reply.size() >= q.question_end);
    CHECK(std::memcmp(reply.data() + kHeaderSize, query.data() + kHeaderSize, q.question_end - kHeaderSize) ==
          0);
  }
  ldns_pkt* pkt = nullptr;
  CHECK(ldns_wire2pkt(&pkt, reply.data(), reply.size()) == LDNS_STATUS_OK);
  CHECK(ldns_pkt_qr(pkt));
  ldns_rr_list* an = ldns_pkt_answer(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(an); ++i) {
    ldns_rr_type type = ldns_rr_get_type(ldns_rr_list_rr(an, i));
    CHECK(type == LDNS_RR_TYPE_A || type == LDNS_RR_TYPE_AAAA);
  }
  ldns_pkt_free(pkt);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  if (size < 1) return 0;
  uint8_t mode = data[0];
  Transport t = (mode & 1) ? Transport::kTcp : Transport::kUdp;
  for (size_t i = 0; i < 3; ++i)
    world->backend->servers()[i]->set_health((mode >> (i + 1)) & 1 ? upstream::Health::kDown
                                                                   : upstream::Health::kUp);
  // A copy of exactly `size - 1` bytes, so ASan sees any read past the packet's end.
  std::unique_ptr<uint8_t[]> packet(new uint8_t[size - 1]);
  if (size > 1) std::memcpy(packet.get(), data + 1, size - 1);
  std::span<const uint8_t> query(packet.get(), size - 1);
  size_t n = world->responder->respond(query, t, world->out);
  if (n > 0) check_reply(query, {world->out.data(), n}, t);
  return 0;
}
