// Smooth weighted rotation of the leading record (see rotation.h). Owned by one worker's
// Responder; not shared.
#include "dns/rotation.h"

#include <numeric>

namespace fulcrum::dns {

void Rotation::reset(std::span<const uint32_t> weights, uint64_t skip) {
  entries_.clear();
  total_ = 0;
  equal_ = true;
  counter_ = 0;
  // Effective weights come in units of 1/1000 of a configured weight (upstream/weight.h): divided
  // by their gcd, weights 5000 and 2000 rotate as 5 and 2, in cycles of 7 turns rather than 7000.
  uint64_t g = 0;
  for (uint32_t w : weights) g = std::gcd(g, uint64_t{w == 0 ? 1 : w});
  for (uint32_t w : weights) {
    int64_t v = static_cast<int64_t>((w == 0 ? 1 : w) / g);
    if (!entries_.empty() && entries_.front().weight != v) equal_ = false;
    entries_.push_back({v, 0});
    total_ += v;
  }
  if (entries_.empty()) return;
  // A few turns are enough to put workers out of step; a whole cycle may be long.
  skip %= entries_.size();
  for (uint64_t i = 0; i < skip; ++i) next();
}

size_t Rotation::next() {
  if (entries_.empty()) return 0;
  if (equal_) {
    size_t i = counter_;
    counter_ = counter_ + 1 == entries_.size() ? 0 : counter_ + 1;
    return i;
  }
  size_t best = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    entries_[i].current += entries_[i].weight;
    if (entries_[i].current > entries_[best].current) best = i;
  }
  entries_[best].current -= total_;
  return best;
}

}  // namespace fulcrum::dns
