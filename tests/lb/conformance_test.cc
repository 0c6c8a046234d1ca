// What every registered algorithm promises (balancer.h): nothing from an empty set, never a
// tried server, nothing when all were tried, shares by weight, and only its own candidates.
// A new row in src/lb/registry.cc is enrolled here without touching this file.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::ipv4;
using testing::some_of;
using testing::weighted;

// A request with a distinct key and client address, so the hashing algorithms spread too.
struct Request {
  explicit Request(int i, const TriedSet* tried = nullptr)
      : key("key-" + std::to_string(i)), client(ipv4(0x0a000000u + static_cast<uint32_t>(i))) {
    ctx.key = key;
    ctx.client = &client;
    ctx.tried = tried;
  }
  std::string key;
  SocketAddress client;
  PickContext ctx;
};

class Conformance : public ::testing::TestWithParam<const Algorithm*> {
 protected:
  std::unique_ptr<Balancer> make(std::vector<Candidate> candidates, uint64_t seed = 7) {
    return GetParam()->make(std::move(candidates), seed);
  }
};

TEST_P(Conformance, EmptySetPicksNothing) {
  auto b = make({});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b->pick(Request(i).ctx), nullptr);
  PickContext bare;
  EXPECT_EQ(b->pick(bare), nullptr);
}

TEST_P(Conformance, NeverPicksATriedServer) {
  upstream::Backend backend(backend_spec(weighted({1, 5, 5, 1})));
  // The heavy ones are tried: every algorithm's first choice is often one of them.
  TriedSet tried;
  tried.add(1);
  tried.add(2);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    auto b = make(all_of(backend), seed);
    for (int i = 0; i < 2000; ++i) {
      upstream::Server* s = b->pick(Request(i, &tried).ctx);
      ASSERT_NE(s, nullptr);
      EXPECT_FALSE(tried.contains(s->index())) << s->name();
      if (i % 3 == 0) s->begin();  // some load, for the load-aware ones
    }
    testing::end_all(backend);
  }
}

TEST_P(Conformance, AllTriedPicksNothing) {
  upstream::Backend backend(backend_spec(weighted({3, 1, 2})));
  auto b = make(all_of(backend));
  TriedSet tried;
  for (size_t i = 0; i < 3; ++i) tried.add(i);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(b->pick(Request(i, &tried).ctx), nullptr);
  PickContext bare;
  bare.tried = &tried;
  EXPECT_EQ(b->pick(bare), nullptr);
}

TEST_P(Conformance, RetriesWalkThroughEveryServer) {
  // A request retried until nothing is left sees each server exactly once.
  upstream::Backend backend(backend_spec(weighted({4, 1, 2, 1, 3})));
  auto b = make(all_of(backend));
  for (int i = 0; i < 200; ++i) {
    TriedSet tried;
    Request r(i, &tried);
    std::set<size_t> seen;
    while (upstream::Server* s = b->pick(r.ctx)) {
      EXPECT_TRUE(seen.insert(s->index()).second) << s->name() << " twice";
      tried.add(s->index());
      ASSERT_LE(seen.size(), 5u);
    }
    EXPECT_EQ(seen.size(), 5u);
  }
}

TEST_P(Conformance, SharesFollowWeights) {
  // Weights 3:1, 10,000 requests with distinct keys and addresses, each held open (as a
  // streaming service would): the load-aware algorithms then balance on counts, the others in
  // turn or by hash; either way the heavy server takes about three quarters.
  upstream::Backend backend(backend_spec(weighted({3, 1})));
  auto b = make(all_of(backend));
  int heavy = 0;
  for (int i = 0; i < 10000; ++i) {
    upstream::Server* s = b->pick(Request(i).ctx);
    ASSERT_NE(s, nullptr);
    s->begin();
    if (s->index() == 0) ++heavy;
  }
  EXPECT_NEAR(heavy / 10000.0, 0.75, 0.03) << GetParam()->word;
  testing::end_all(backend);
}

TEST_P(Conformance, PicksOnlyCandidates) {
  upstream::Backend backend(backend_spec(weighted({1, 2, 3, 4, 5, 6})));
  auto b = make(some_of(backend, {1, 3, 4}));
  std::set<size_t> seen;
  for (int i = 0; i < 3000; ++i) {
    upstream::Server* s = b->pick(Request(i).ctx);
    ASSERT_NE(s, nullptr);
    seen.insert(s->index());
    s->begin();  // held, so least_time spreads too (idle, it rightly prefers the heaviest)
  }
  EXPECT_EQ(seen, (std::set<size_t>{1, 3, 4}));
  testing::end_all(backend);
}

TEST_P(Conformance, OneServerIsAlwaysPicked) {
  upstream::Backend backend(backend_spec(weighted({7})));
  auto b = make(all_of(backend));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b->pick(Request(i).ctx), backend.servers()[0].get());
  PickContext bare;  // no key, no address: the hashing ones fall back
  EXPECT_EQ(b->pick(bare), backend.servers()[0].get());
}

TEST_P(Conformance, WorksWithoutKeyOrAddress) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1})));
  auto b = make(all_of(backend));
  std::set<size_t> seen;
  PickContext bare;
  for (int i = 0; i < 300; ++i) {
    upstream::Server* s = b->pick(bare);
    ASSERT_NE(s, nullptr);
    seen.insert(s->index());
    s->begin();
  }
  EXPECT_EQ(seen.size(), 3u) << "one server took every keyless request";
  testing::end_all(backend);
}

std::vector<const Algorithm*> rows() {
  std::vector<const Algorithm*> out;
  for (const Algorithm& a : algorithms()) out.push_back(&a);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Registry, Conformance, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<const Algorithm*>& info) {
                           return std::string(info.param->word);
                         });

TEST(Registry, FindsEveryWordAndRefusesOthers) {
  for (const Algorithm& a : algorithms()) {
    EXPECT_EQ(find_algorithm(a.word), &a);
    EXPECT_NE(a.make, nullptr);
    EXPECT_FALSE(a.about.empty());
  }
  EXPECT_EQ(find_algorithm("round_robin")->needs, kNeedsNothing);
  EXPECT_EQ(find_algorithm("ip_hash")->needs, kNeedsClientAddress);
  EXPECT_EQ(find_algorithm("hash")->needs, kNeedsL7 | kNeedsClientAddress);
  for (const char* word : {"least_conn", "least_time", "random"}) EXPECT_NE(find_algorithm(word), nullptr);
  EXPECT_EQ(find_algorithm(""), nullptr);
  EXPECT_EQ(find_algorithm("roundrobin"), nullptr);
  EXPECT_EQ(find_algorithm("Round_Robin"), nullptr);
  EXPECT_EQ(algorithms().size(), 6u);
}

TEST(HashBytes, IsXxh3AndSeeded) {
  EXPECT_EQ(hash_bytes(""), 0x2D06800538D394C2ull);  // XXH3_64bits of nothing, seed 0
  EXPECT_EQ(hash_bytes("abc"), hash_bytes("abc", 0));
  EXPECT_NE(hash_bytes("abc"), hash_bytes("abc", 1));
  EXPECT_NE(hash_bytes("abc"), hash_bytes("abd"));
}

}  // namespace
}  // namespace fulcrum::lb
