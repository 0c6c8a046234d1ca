// round_robin (the default): smooth weighted round robin, as nginx's SWRR, precomputed at build
// time into one cycle of candidate indices and walked with an index, so a pick is O(1). Built and
// used by one worker (see balancer.h); each worker starts at a seed-derived offset in the cycle
// so that workers are not in lock-step on the same server.
#include <algorithm>
#include <numeric>

#include "lb/algorithms.h"

namespace fulcrum::lb {

void drop_unweighted(std::vector<Candidate>& candidates) {
  std::erase_if(candidates, [](const Candidate& c) { return c.weight == 0 || c.server == nullptr; });
}

std::vector<uint32_t> smooth_sequence(std::span<const Candidate> candidates, size_t max_len) {
  std::vector<uint64_t> w(candidates.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::max<uint32_t>(candidates[i].weight, 1);
  auto reduce = [&w] {
    uint64_t g = 0;
    for (uint64_t x : w) g = std::gcd(g, x);
    if (g > 1)
      for (uint64_t& x : w) x /= g;
    return std::accumulate(w.begin(), w.end(), uint64_t{0});
  };
  uint64_t sum = reduce();
  if (sum > max_len) {
    // Proportional scaling, rounded: a server's share is then off by at most half a slot in
    // max_len (0.012% at 4096), which no one can measure through network noise.
    for (uint64_t& x : w) x = std::max<uint64_t>(1, (x * max_len + sum / 2) / sum);
    sum = reduce();
  }

  // nginx's SWRR: every step each server gains its weight, the richest is chosen and pays the
  // total. Over one cycle of `sum` steps each server is chosen exactly `weight` times, spread
  // out. O(sum * n), on the rare path only.
  std::vector<uint32_t> out;
  out.reserve(sum);
  std::vector<int64_t> current(w.size(), 0);
  for (uint64_t step = 0; step < sum; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      current[i] += static_cast<int64_t>(w[i]);
      if (current[i] > current[best]) best = i;
    }
    current[best] -= static_cast<int64_t>(sum);
    out.push_back(static_cast<uint32_t>(best));
  }
  return out;
}

namespace {

class RoundRobin final : public Balancer {
 public:
  RoundRobin(std::vector<Candidate> candidates, uint64_t seed)
      : candidates_(std::move(candidates)), sequence_(smooth_sequence(candidates_)) {
    if (!sequence_.empty()) next_ = mix64(seed) % sequence_.size();
  }

  upstream::Server* pick(const PickContext& ctx) override {
    // A tried server is skipped by walking on in the cycle: the next entry is what plain round
    // robin would have chosen next. One full lap without a match means every server was tried.
    for (size_t step = 0; step < sequence_.size(); ++step) {
      upstream::Server* s = candidates_[sequence_[next_]].server;
      if (++next_ == sequence_.size()) next_ = 0;
      if (!was_tried(ctx, *s)) return s;
    }
    return nullptr;
  }

 private:
  std::vector<Candidate> candidates_;
  std::vector<uint32_t> sequence_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Balancer> make_round_robin(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<RoundRobin>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
