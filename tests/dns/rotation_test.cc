// Smooth weighted rotation (src/dns/rotation.cc): exact shares over a cycle, interleaving, the
// equal-weight fast path, and the per-worker skip.
#include "dns/rotation.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fulcrum::dns {
namespace {

std::string sequence(Rotation& r, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>('a' + r.next());
  return out;
}

TEST(RotationTest, EmptyGivesZero) {
  Rotation r;
  r.reset({}, 3);
  EXPECT_EQ(r.next(), 0u);
  EXPECT_EQ(r.size(), 0u);
}

TEST(RotationTest, EqualWeightsRotatePlainly) {
  Rotation r;
  std::vector<uint32_t> w = {2, 2, 2};
  r.reset(w, 0);
  EXPECT_EQ(sequence(r, 7), "abcabca");
}

TEST(RotationTest, WeightsInterleave) {
  Rotation r;
  std::vector<uint32_t> w = {5, 1, 1};
  r.reset(w, 0);
  EXPECT_EQ(sequence(r, 7), "aabacaa");  // nginx's smooth weighted round robin
}

TEST(RotationTest, SharesAreExactPerCycle) {
  Rotation r;
  std::vector<uint32_t> w = {7, 3, 1, 256, 1};
  r.reset(w, 12345);
  std::vector<int> count(w.size());
  for (int i = 0; i < 268 * 10; ++i) ++count[r.next()];
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(count[i], static_cast<int>(w[i]) * 10) << i;
}

TEST(RotationTest, ZeroWeightCountsAsOne) {
  Rotation r;
  std::vector<uint32_t> w = {0, 1};
  r.reset(w, 0);
  EXPECT_EQ(sequence(r, 4), "abab");
}

TEST(RotationTest, SkipStaggersWorkers) {
  Rotation a, b;
  std::vector<uint32_t> w = {1, 1, 1, 1};
  a.reset(w, 0);
  b.reset(w, 6);  // 6 mod 4 = 2 turns ahead
  EXPECT_EQ(sequence(a, 4), "abcd");
  EXPECT_EQ(sequence(b, 4), "cdab");
}

}  // namespace
}  // namespace fulcrum::dns
