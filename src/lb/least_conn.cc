// least_conn: the server with the fewest active requests (connections, for tcp) relative to its
// weight. Built and used by one worker; the active counts are the shared relaxed atomics of
// upstream::Server, so every worker sees every other worker's load.
//
// A pick scans the candidates, O(n) relaxed loads, each on its own cache line. A sorted tree as
// HAProxy's fwlc keeps would need every worker's begin/end to update every worker's tree; the
// counts change on other threads, so a per-worker tree would be stale and a shared one needs a
// lock. Backends are tens of servers, and a scan of them costs less than one syscall.
//
// Ties (common when requests are short and the counts sit at 0) are broken in turn, starting the
// scan at the next entry of the smooth weighted cycle, so that an idle backend still shares in
// proportion to weight instead of sending everything to the first server.
#include <algorithm>

#include "lb/algorithms.h"

namespace fulcrum::lb {
namespace {

class LeastConn final : public Balancer {
 public:
  LeastConn(std::vector<Candidate> candidates, uint64_t seed)
      : candidates_(std::move(candidates)), turns_(smooth_sequence(candidates_)) {
    if (!turns_.empty()) next_turn_ = mix64(seed) % turns_.size();
  }

  upstream::Server* pick(const PickContext& ctx) override {
    const size_t n = candidates_.size();
    if (n == 0) return nullptr;
    size_t i = turns_[next_turn_];
    if (++next_turn_ == turns_.size()) next_turn_ = 0;

    const Candidate* best = nullptr;
    int64_t best_active = 0;
    for (size_t step = 0; step < n; ++step, i = (i + 1 == n) ? 0 : i + 1) {
      const Candidate& c = candidates_[i];
      if (was_tried(ctx, *c.server)) continue;
      // A racing end() may briefly show -1; a negative count is no reason to prefer a server.
      int64_t active = std::max<int32_t>(c.server->active(), 0);
      // active/weight < best_active/best_weight, in integers: 31-bit counts times 32-bit weights
      // fit in 64 bits. Strictly less, so the first of equals from the turn's start wins.
      if (best == nullptr || active * best->weight < best_active * c.weight) {
        best = &c;
        best_active = active;
      }
    }
    return best ? best->server : nullptr;
  }

 private:
  std::vector<Candidate> candidates_;
  std::vector<uint32_t> turns_;
  size_t next_turn_ = 0;
};

}  // namespace

std::unique_ptr<Balancer> make_least_conn(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<LeastConn>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
