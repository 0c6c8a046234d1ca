// Picker: a worker's balancer for one backend, rebuilt on the rare path when the backend's
// generation moves (a server went up or down, or its weight changed). Worker thread only.
#include "lb/balancer.h"

namespace fulcrum::lb {

Picker::Picker(upstream::Backend& backend, uint64_t seed)
    : backend_(backend), algorithm_(find_algorithm(backend.spec().balance)), seed_(seed) {
  if (algorithm_ == nullptr) algorithm_ = find_algorithm("round_robin");
}

void Picker::rebuild() {
  built_generation_ = backend_.generation();
  std::vector<Candidate> candidates;
  serving_.assign(backend_.servers().size(), 0);
  for (upstream::Server* s : backend_.serving()) {
    candidates.push_back({s, s->scaled_weight()});
    serving_[s->index()] = 1;
  }
  balancer_ = algorithm_->make(std::move(candidates), seed_);
}

upstream::Server* Picker::pick(const PickContext& ctx) {
  if (!balancer_ || built_generation_ != backend_.generation()) rebuild();
  return balancer_->pick(ctx);
}

bool Picker::serving(const upstream::Server& s) {
  if (!balancer_ || built_generation_ != backend_.generation()) rebuild();
  return s.index() < serving_.size() && serving_[s.index()];
}

}  // namespace fulcrum::lb
