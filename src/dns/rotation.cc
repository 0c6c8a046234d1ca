#include "dns/rotation.h"

namespace fulcrum::dns {

void Rotation::reset(std::span<const uint32_t> weights, uint64_t skip) {
  entries_.clear();
  total_ = 0;
  equal_ = true;
  counter_ = 0;
  for (uint32_t w : weights) {
    int64_t v = w == 0 ? 1 : w;
    if (!entries_.empty() && entries_.front().weight != v) equal_ = false;
    entries_.push_back({v, 0});
    total_ += v;
  }
  if (entries_.empty()) return;
  // One full cycle is `total_` turns (at most 256 per entry); skipping within it is enough.
  skip %= static_cast<uint64_t>(equal_ ? static_cast<int64_t>(entries_.size()) : total_);
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
