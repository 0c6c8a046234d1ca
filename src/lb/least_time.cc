// least_time: the lowest expected response time, ewma × (active + 1) / weight: the server's
// decaying average of response (or, for tcp, connect) times, scaled by the queue it already
// has. Built and used by one worker; the averages and active counts are shared relaxed atomics
// in upstream::Server, written by every worker.
//
// A server with no sample yet (new, recovered, or reset) has ewma 0. Scoring it 0 would flood it
// until its first response lands; leaving it out would starve it forever. It is scored as if it
// were as fast as the fastest known candidate (1 µs if none is known), so it is tried at once and
// then held back by its own active count like everyone else, until real samples arrive.
//
// Ties are broken in turn along the smooth weighted cycle, as in least_conn.
#include <algorithm>

#include "lb/algorithms.h"

namespace fulcrum::lb {
namespace {

class LeastTime final : public Balancer {
 public:
  LeastTime(std::vector<Candidate> candidates, uint64_t seed)
      : candidates_(std::move(candidates)), turns_(smooth_sequence(candidates_)), ewma_(candidates_.size()) {
    if (!turns_.empty()) next_turn_ = mix64(seed) % turns_.size();
  }

  upstream::Server* pick(const PickContext& ctx) override {
    const size_t n = candidates_.size();
    if (n == 0) return nullptr;

    // Pass 1: read each average once (into storage sized at build, so no allocation), and find
    // the fastest known one to stand in for servers without a sample.
    uint64_t fastest = 0;
    for (size_t i = 0; i < n; ++i) {
      ewma_[i] = candidates_[i].server->ewma_us();
      if (ewma_[i] != 0 && (fastest == 0 || ewma_[i] < fastest)) fastest = ewma_[i];
    }
    if (fastest == 0) fastest = 1;

    // Pass 2: compare ewma_a (act_a+1) / w_a < ewma_b (act_b+1) / w_b cross-multiplied. 32-bit
    // ewma × 31-bit count × 32-bit weight needs 95 bits, hence 128-bit integers: exact, so that
    // equal scores really are ties and rotate.
    size_t i = turns_[next_turn_];
    if (++next_turn_ == turns_.size()) next_turn_ = 0;
    const Candidate* best = nullptr;
    unsigned __int128 best_cost = 0;  // ewma × (active+1), without the weight
    for (size_t step = 0; step < n; ++step, i = (i + 1 == n) ? 0 : i + 1) {
      const Candidate& c = candidates_[i];
      if (was_tried(ctx, *c.server)) continue;
      uint64_t ewma = ewma_[i] != 0 ? ewma_[i] : fastest;
      uint64_t queue = static_cast<uint64_t>(std::max<int32_t>(c.server->active(), 0)) + 1;
      unsigned __int128 cost = static_cast<unsigned __int128>(ewma) * queue;
      if (best == nullptr || cost * best->weight < best_cost * c.weight) {
        best = &c;
        best_cost = cost;
      }
    }
    return best ? best->server : nullptr;
  }

 private:
  std::vector<Candidate> candidates_;
  std::vector<uint32_t> turns_;
  std::vector<uint64_t> ewma_;  // scratch for one pick
  size_t next_turn_ = 0;
};

}  // namespace

std::unique_ptr<Balancer> make_least_time(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<LeastTime>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
