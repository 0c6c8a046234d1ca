// Answering a query allocates nothing in steady state (STYLE 8): a thousand queries of every kind
// (answers, rotation, NODATA, REFUSED, TC, EDNS, malformed) after the first has built the zone's
// records. Global operator new is replaced in this test binary by a counting pass-through.

#include <gtest/gtest.h>

#include "support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "dns/dns_fixture.h"


constexpr bool kCounting = fulcrum::test::kCountingAllocations;

namespace fulcrum::dns {
namespace {

using testing::make_query;
using testing::QueryOptions;

TEST(DnsNoAllocation, RespondAllocatesNothing) {
  if (!kCounting) GTEST_SKIP() << "allocations are not counted under ASan";
  auto servers = testing::v4_servers(40);
  servers.push_back({"[2001:db8::1]:80", 3, false});
  servers[1].weight = 5;  // weighted: the smooth rotation, not the counter
  upstream::Backend backend(testing::backend_spec(servers));
  std::vector<ZoneConfig> zones = {{"www.example.com", &backend, 30, 0},
                                   {"two.example.com", &backend, 30, 2}};
  DnsStats stats;
  Responder r("dns", zones, 1, stats);
  QueryOptions edns;
  edns.edns = true;
  edns.udp_size = 4096;
  std::vector<std::vector<uint8_t>> queries = {
      make_query("www.example.com", kTypeA),        // TC over UDP
      make_query("www.example.com", kTypeA, edns),  // fits with EDNS
      make_query("TWO.example.com", kTypeA),        // answers: 2
      make_query("two.example.com", kTypeAaaa),
      make_query("two.example.com", 15),        // NODATA
      make_query("elsewhere.example", kTypeA),  // REFUSED
      std::vector<uint8_t>(5, 0),               // malformed
  };
  std::vector<uint8_t> out(kMaxTcpMessage);
  for (auto& q : queries) (void)r.respond(q, Transport::kUdp, out);  // builds the records
  const long before = fulcrum::test::allocations();
  size_t bytes = 0;
  for (int i = 0; i < 1000; ++i)
    for (auto& q : queries) {
      bytes += r.respond(q, Transport::kUdp, out);
      bytes += r.respond(q, Transport::kTcp, out);
    }
  EXPECT_EQ(fulcrum::test::allocations(), before);
  EXPECT_GT(bytes, 0u);
}

}  // namespace
}  // namespace fulcrum::dns
