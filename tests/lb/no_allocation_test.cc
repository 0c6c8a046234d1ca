// Every algorithm's pick allocates nothing (STYLE 8), retries included: global operator new is
// replaced in this test binary by a counting pass-through to malloc.
// GCC sees operator delete's free() inlined against a `new` expression and warns; here new is
// malloc underneath, so the pair does match.

#include <gtest/gtest.h>

#include "support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "lb/lb_fixture.h"


constexpr bool kCounting = fulcrum::test::kCountingAllocations;

namespace fulcrum::lb {
namespace {

using testing::all_of;
using testing::backend_spec;
using testing::weighted;

TEST(NoAllocation, TheCounterCounts) {
  if (!kCounting) GTEST_SKIP() << "allocations are not counted under ASan";
  static std::vector<std::string> sink;
  const long before = fulcrum::test::allocations();
  sink.emplace_back(200, 'x');
  EXPECT_GT(fulcrum::test::allocations(), before);
}

class NoAllocation : public ::testing::TestWithParam<const Algorithm*> {};

TEST_P(NoAllocation, PickAllocatesNothing) {
  if (!kCounting) GTEST_SKIP() << "allocations are not counted under ASan";
  upstream::Backend backend(backend_spec(weighted({3, 1, 2, 1, 5, 1, 1, 2})));
  auto b = GetParam()->make(all_of(backend), 9);
  // Keys, addresses and tried sets are made before counting; the request owns them.
  std::vector<std::string> keys;
  std::vector<SocketAddress> clients;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back("user-" + std::to_string(i));
    clients.push_back(i % 2 ? testing::ipv4(0x0a000000u + i) : testing::ipv6(i));
  }
  TriedSet tried;
  tried.add(4);
  tried.add(0);
  PickContext bare;
  (void)b->pick(bare);

  const long before = fulcrum::test::allocations();
  for (int i = 0; i < 1000; ++i) {
    PickContext ctx;
    ctx.key = (i % 3 == 0) ? std::string_view() : std::string_view(keys[i]);
    ctx.client = (i % 5 == 0) ? nullptr : &clients[i];
    ctx.tried = (i % 2 == 0) ? &tried : nullptr;
    upstream::Server* s = b->pick(ctx);
    ASSERT_NE(s, nullptr);
    if (i % 4 == 0) s->begin();
    if (i % 7 == 0) s->record_time_us(100 + i);
  }
  EXPECT_EQ(fulcrum::test::allocations() - before, 0) << GetParam()->word;
  testing::end_all(backend);
}

std::vector<const Algorithm*> rows() {
  std::vector<const Algorithm*> out;
  for (const Algorithm& a : algorithms()) out.push_back(&a);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Registry, NoAllocation, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<const Algorithm*>& info) {
                           return std::string(info.param->word);
                         });

}  // namespace
}  // namespace fulcrum::lb
