// Internal to src/lb: the factory of each algorithm (one .cc each, listed by registry.cc) and the
// small pieces several of them share. Built on a worker's rare path; picks run on that worker.
// Other modules include lb/balancer.h, never this.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lb/balancer.h"

namespace fulcrum::lb {

std::unique_ptr<Balancer> make_round_robin(std::vector<Candidate> candidates, uint64_t seed);
std::unique_ptr<Balancer> make_least_conn(std::vector<Candidate> candidates, uint64_t seed);
std::unique_ptr<Balancer> make_least_time(std::vector<Candidate> candidates, uint64_t seed);
std::unique_ptr<Balancer> make_ip_hash(std::vector<Candidate> candidates, uint64_t seed);
std::unique_ptr<Balancer> make_hash(std::vector<Candidate> candidates, uint64_t seed);
std::unique_ptr<Balancer> make_random(std::vector<Candidate> candidates, uint64_t seed);

inline bool was_tried(const PickContext& ctx, const upstream::Server& s) {
  return ctx.tried != nullptr && ctx.tried->contains(s.index());
}

// The splitmix64 finalizer: a bijection on 64 bits with full avalanche. Turns a worker seed into
// a start offset, seeds PRNGs, and spreads consistent-hash draws.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The contract says weights > 0; a weight-0 server takes no new traffic, so if one slips
// through it is dropped rather than divided by.
void drop_unweighted(std::vector<Candidate>& candidates);

// The smooth weighted round robin order (nginx's SWRR) of candidate indices, one full cycle:
// weights 5 and 2 give a b a a a b a. Weights are divided by their gcd and, when they still sum
// past max_len, scaled down proportionally (each keeps at least 1), so the cycle stays short
// enough to precompute. Defined in round_robin.cc; least_conn, least_time and random use it too.
inline constexpr size_t kMaxSequence = 4096;
std::vector<uint32_t> smooth_sequence(std::span<const Candidate> candidates, size_t max_len = kMaxSequence);

}  // namespace fulcrum::lb
