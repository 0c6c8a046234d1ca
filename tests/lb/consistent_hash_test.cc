// Consistent hashing (`hash` and `ip_hash`), as seeded property tests over 100,000 keys: removing
// a server moves only its keys, adding one moves about 1/(N+1) and only onto it, load is even
// within 10%, weights give shares, a retry goes where a removal would, and every worker agrees.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "lb/lb_fixture.h"

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::some_of;
using testing::weighted;

constexpr int kKeys = 100000;

// splitmix64, to spread test keys reproducibly.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// One way of presenting key i to a balancer: a hash_key value, or a client address.
struct KeyKind {
  const char* name;
  const char* algorithm;
  std::function<void(int, std::string&, SocketAddress&, PickContext&)> fill;
};

const KeyKind kKinds[] = {
    {"hash_key", "hash",
     [](int i, std::string& key, SocketAddress&, PickContext& ctx) {
       key = "session-" + std::to_string(i * 7919 + 13);
       ctx.key = key;
     }},
    {"ipv4", "ip_hash",
     [](int i, std::string&, SocketAddress& client, PickContext& ctx) {
       // Spread over 10/8 as real clients would be, seeded and reproducible.
       client = testing::ipv4(0x0a000000u | (static_cast<uint32_t>(mix(i)) & 0x00ffffffu));
       ctx.client = &client;
     }},
    {"ipv6", "ip_hash",
     [](int i, std::string&, SocketAddress& client, PickContext& ctx) {
       client = testing::ipv6(mix(i + 1000003));
       ctx.client = &client;
     }},
};

class ConsistentHash : public ::testing::TestWithParam<int> {
 protected:
  const KeyKind& kind() const { return kKinds[GetParam()]; }

  std::unique_ptr<Balancer> make(std::vector<Candidate> c, uint64_t seed = 1) const {
    return find_algorithm(kind().algorithm)->make(std::move(c), seed);
  }

  // Where each of the keys goes; tried optional.
  std::vector<upstream::Server*> map(Balancer& b, const TriedSet* tried = nullptr) const {
    std::vector<upstream::Server*> out(kKeys);
    for (int i = 0; i < kKeys; ++i) out[i] = pick(b, i, tried);
    return out;
  }

  upstream::Server* pick(Balancer& b, int i, const TriedSet* tried = nullptr) const {
    std::string key;
    SocketAddress client;
    PickContext ctx;
    ctx.tried = tried;
    kind().fill(i, key, client, ctx);
    return b.pick(ctx);
  }
};

TEST_P(ConsistentHash, RemovingOneMovesOnlyItsKeys) {
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(10, 1))));
  auto before = map(*make(all_of(backend)));
  upstream::Server* gone = backend.servers()[3].get();
  auto after = map(*make(some_of(backend, {0, 1, 2, 4, 5, 6, 7, 8, 9})));
  int moved = 0, owned = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (before[i] == gone) {
      ++owned;
      EXPECT_NE(after[i], gone);
    } else {
      ASSERT_EQ(after[i], before[i]) << "key " << i << " moved though its server stayed";
    }
    moved += after[i] != before[i];
  }
  EXPECT_EQ(moved, owned);
  EXPECT_NEAR(owned, kKeys / 10, kKeys / 100);
}

TEST_P(ConsistentHash, AddingOneMovesAboutOneInElevenOntoIt) {
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(11, 1))));
  auto before = map(*make(some_of(backend, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})));
  upstream::Server* added = backend.servers()[10].get();
  auto after = map(*make(all_of(backend)));
  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (after[i] == before[i]) continue;
    ++moved;
    ASSERT_EQ(after[i], added) << "key " << i << " moved between servers that stayed";
  }
  EXPECT_LE(moved, kKeys * (1.0 / 11 + 0.02));
  EXPECT_GE(moved, kKeys * (1.0 / 11 - 0.02));
}

TEST_P(ConsistentHash, LoadIsEvenWithinTenPercent) {
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(10, 1))));
  std::vector<int> count(10, 0);
  for (upstream::Server* s : map(*make(all_of(backend)))) ++count[s->index()];
  for (int c : count) {
    EXPECT_GE(c, kKeys / 10 * 0.9);
    EXPECT_LE(c, kKeys / 10 * 1.1);
  }
}

TEST_P(ConsistentHash, WeightsTwoToOneGiveTwoToOne) {
  upstream::Backend backend(backend_spec(weighted({2, 1, 2, 1})));
  std::vector<int> count(4, 0);
  for (upstream::Server* s : map(*make(all_of(backend)))) ++count[s->index()];
  EXPECT_NEAR(count[0] / static_cast<double>(kKeys), 1.0 / 3, 0.02);
  EXPECT_NEAR(count[2] / static_cast<double>(kKeys), 1.0 / 3, 0.02);
  EXPECT_NEAR(count[1] / static_cast<double>(kKeys), 1.0 / 6, 0.02);
  EXPECT_NEAR(count[3] / static_cast<double>(kKeys), 1.0 / 6, 0.02);
  EXPECT_NEAR(static_cast<double>(count[0] + count[2]) / (count[1] + count[3]), 2.0, 0.1);
}

TEST_P(ConsistentHash, WeightChangeMovesOnlyTowardTheChangedServer) {
  // s0 goes from weight 1 to 2 (say slow start ends): keys move onto s0 only, about enough to
  // double its share (1/10 -> 2/11).
  upstream::Backend backend(backend_spec(weighted(std::vector<uint32_t>(10, 1))));
  auto before = map(*make(all_of(backend)));
  auto heavier = all_of(backend);
  heavier[0].weight = 2 * upstream::kWeightScale;  // candidates carry scaled weights
  auto after = map(*make(heavier));
  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (after[i] == before[i]) continue;
    ++moved;
    ASSERT_EQ(after[i], backend.servers()[0].get());
  }
  EXPECT_NEAR(moved, kKeys * (2.0 / 11 - 1.0 / 10), kKeys * 0.02);
}

TEST_P(ConsistentHash, RetryGoesWhereRemovalWould) {
  upstream::Backend backend(backend_spec(weighted({1, 2, 1, 3, 1})));
  auto full = make(all_of(backend));
  auto without_owner = std::vector<std::unique_ptr<Balancer>>();
  for (size_t gone = 0; gone < 5; ++gone) {
    std::vector<size_t> rest;
    for (size_t i = 0; i < 5; ++i)
      if (i != gone) rest.push_back(i);
    without_owner.push_back(make(some_of(backend, rest)));
  }
  for (int i = 0; i < 5000; ++i) {
    upstream::Server* owner = pick(*full, i);
    TriedSet tried;
    tried.add(owner->index());
    upstream::Server* retry = pick(*full, i, &tried);
    ASSERT_NE(retry, owner);
    EXPECT_EQ(retry, pick(*without_owner[owner->index()], i)) << "key " << i;
  }
}

TEST_P(ConsistentHash, EveryWorkerAgrees) {
  // Seeds differ per worker; the mapping must not.
  upstream::Backend backend(backend_spec(weighted({1, 1, 2, 1, 1})));
  auto a = make(all_of(backend), 1);
  auto b = make(all_of(backend), 0xdeadbeef);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(pick(*a, i), pick(*b, i));
}

TEST_P(ConsistentHash, ListOrderDoesNotMatter) {
  // Keyed on names, not positions: the same servers listed differently map keys alike.
  upstream::Backend backend(backend_spec(weighted({1, 3, 1, 2})));
  auto a = make(some_of(backend, {0, 1, 2, 3}));
  auto b = make(some_of(backend, {3, 1, 0, 2}));
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(pick(*a, i), pick(*b, i));
}

INSTANTIATE_TEST_SUITE_P(Keys, ConsistentHash, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(kKinds[info.param].name);
                         });

TEST(HashAlgorithm, EmptyKeyFallsBackToTheClientAsIpHashDoes) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1, 1})));
  auto hash = find_algorithm("hash")->make(all_of(backend), 1);
  auto ip_hash = find_algorithm("ip_hash")->make(all_of(backend), 2);
  for (uint32_t i = 0; i < 5000; ++i) {
    SocketAddress client = testing::ipv4(0xc0a80000u + i);
    PickContext ctx;
    ctx.client = &client;
    ASSERT_EQ(hash->pick(ctx), ip_hash->pick(ctx));
  }
}

TEST(HashAlgorithm, NeitherKeyNorClientGoesRoundRobin) {
  upstream::Backend backend(backend_spec(weighted({3, 1})));
  auto hash = find_algorithm("hash")->make(all_of(backend), 1);
  PickContext bare;
  int heavy = 0;
  for (int i = 0; i < 4000; ++i) heavy += hash->pick(bare)->index() == 0;
  EXPECT_EQ(heavy, 3000);
}

TEST(HashAlgorithm, SameKeySameServer) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1})));
  auto hash = find_algorithm("hash")->make(all_of(backend), 1);
  PickContext ctx;
  ctx.key = "user-42";
  upstream::Server* first = hash->pick(ctx);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(hash->pick(ctx), first);
}

TEST(IpHash, MappedIpv4HashesLikeIpv4) {
  // A dual-stack listener reports ::ffff:a.b.c.d; the client must keep its server.
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1, 1, 1})));
  auto b = find_algorithm("ip_hash")->make(all_of(backend), 1);
  for (uint32_t i = 0; i < 5000; ++i) {
    SocketAddress v4 = testing::ipv4(0xac100000u + i * 17);
    SocketAddress mapped = testing::ipv4_mapped(0xac100000u + i * 17);
    PickContext a, m;
    a.client = &v4;
    m.client = &mapped;
    ASSERT_EQ(b->pick(a), b->pick(m));
  }
}

TEST(IpHash, PortDoesNotMatter) {
  upstream::Backend backend(backend_spec(weighted({1, 1, 1, 1, 1, 1})));
  auto b = find_algorithm("ip_hash")->make(all_of(backend), 1);
  for (uint32_t i = 0; i < 1000; ++i) {
    SocketAddress p1 = testing::ipv4(0x0b000000u + i, 1111);
    SocketAddress p2 = testing::ipv4(0x0b000000u + i, 2222);
    PickContext a, c;
    a.client = &p1;
    c.client = &p2;
    ASSERT_EQ(b->pick(a), b->pick(c));
  }
}

}  // namespace
}  // namespace fulcrum::lb
