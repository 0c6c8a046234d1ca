// random: the power of two choices. Draw two different servers at random, in proportion to
// weight, and take the one with fewer active requests relative to its weight (the first drawn on
// a tie, so an idle backend shares exactly by weight). Built and used by one worker, with its own
// PRNG seeded from the worker seed: no shared state but the servers' relaxed active counts.
//
// Why two choices and not the least loaded of all: each worker sees counts that the others are
// moving; always taking the global minimum makes every worker rush the same server (herding).
// Two random choices keep the maximum load within O(log log n) of the mean without that.
#include <algorithm>

#include "lb/algorithms.h"

namespace fulcrum::lb {
namespace {

// xoshiro256** (Blackman and Vigna): small, fast, and good enough for choosing servers.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (uint64_t& word : s_) word = seed = mix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) by the multiply-high method: no division, and a bias of n / 2^64.
  size_t below(size_t n) { return static_cast<size_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

class Random final : public Balancer {
 public:
  Random(std::vector<Candidate> candidates, uint64_t seed)
      : candidates_(std::move(candidates)), by_weight_(smooth_sequence(candidates_)), rng_(seed) {}

  upstream::Server* pick(const PickContext& ctx) override {
    static constexpr size_t kNone = SIZE_MAX;
    size_t a = draw(ctx, kNone);
    if (a == kNone) return nullptr;
    size_t b = draw(ctx, a);
    if (b == kNone) return candidates_[a].server;
    const Candidate& ca = candidates_[a];
    const Candidate& cb = candidates_[b];
    int64_t load_a = std::max<int32_t>(ca.server->active(), 0);
    int64_t load_b = std::max<int32_t>(cb.server->active(), 0);
    // load_b/w_b < load_a/w_a, cross-multiplied in 64 bits.
    return load_b * ca.weight < load_a * cb.weight ? cb.server : ca.server;
  }

 private:
  // A candidate index, drawn in proportion to weight from the precomputed cycle (each server
  // appears `weight` times), that is neither tried nor `other`. After a few misses (most servers
  // tried, or only one left) it scans from a random start instead: the rare path of retries.
  size_t draw(const PickContext& ctx, size_t other) {
    const size_t n = candidates_.size();
    if (n == 0) return SIZE_MAX;
    for (int attempt = 0; attempt < 4; ++attempt) {
      size_t i = by_weight_[rng_.below(by_weight_.size())];
      if (i != other && !was_tried(ctx, *candidates_[i].server)) return i;
    }
    size_t i = rng_.below(n);
    for (size_t step = 0; step < n; ++step, i = (i + 1 == n) ? 0 : i + 1)
      if (i != other && !was_tried(ctx, *candidates_[i].server)) return i;
    return SIZE_MAX;
  }

  std::vector<Candidate> candidates_;
  std::vector<uint32_t> by_weight_;
  Xoshiro256 rng_;
};

}  // namespace

std::unique_ptr<Balancer> make_random(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<Random>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
