// The balancing interface. A Balancer is built by one worker from the backend's serving set (the
// rare path: whenever the backend's generation moves) and then picks on that worker alone, so a
// pick takes no lock. Counts that must be seen by every worker (active requests, response-time
// averages) live in upstream::Server as relaxed atomics. Front header of the lb module.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "upstream/server.h"

namespace fulcrum::lb {

// Servers a request has already tried (retries skip them). Indexed by Server::index(); no
// allocation for backends of up to 256 servers.
class TriedSet {
 public:
  void add(size_t index) {
    if (index < kInline) inline_[index / 64] |= 1ull << (index % 64);
    else overflow_.push_back(index);
  }
  bool contains(size_t index) const {
    if (index < kInline) return inline_[index / 64] & (1ull << (index % 64));
    for (size_t i : overflow_)
      if (i == index) return true;
    return false;
  }
  void clear() {
    for (auto& w : inline_) w = 0;
    overflow_.clear();
  }

 private:
  static constexpr size_t kInline = 256;
  uint64_t inline_[kInline / 64] = {};
  std::vector<size_t> overflow_;
};

struct PickContext {
  const SocketAddress* client = nullptr;  // ip_hash and hash_key: ip
  std::string_view key;                   // hash: the value hash_key names; empty -> client ip
  const TriedSet* tried = nullptr;        // skip these
};

// A server with the weight it had when the balancer was built: Server::scaled_weight(), in units
// of 1/upstream::kWeightScale of a configured weight (so 1000 per unit of `weight`). Algorithms
// only compare weights or divide them by their gcd, so any scale works; tests may pass 5 and 2.
struct Candidate {
  upstream::Server* server;
  uint32_t weight;
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // The chosen server, never one in ctx.tried; nullptr when every candidate was tried (or there
  // are none).
  virtual upstream::Server* pick(const PickContext& ctx) = 0;
};

// What an algorithm needs from a request, so `check` can refuse impossible pairings.
enum Needs : unsigned {
  kNeedsNothing = 0,
  kNeedsClientAddress = 1u << 0,
  kNeedsL7 = 1u << 1,  // a header, cookie, query or path: http listeners only
};

// candidates: non-empty or empty (then pick returns nullptr), weights > 0. seed: per worker, so
// workers do not start in lock-step.
using Factory = std::unique_ptr<Balancer> (*)(std::vector<Candidate> candidates, uint64_t seed);

struct Algorithm {
  std::string_view word;  // the `balance:` value
  Factory make;
  unsigned needs;
  std::string_view about;
};

// The registry (registry.cc): one row per algorithm.
std::span<const Algorithm> algorithms();
const Algorithm* find_algorithm(std::string_view word);

// The key for hashing: 64-bit xxHash of the bytes.
uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0);

// Per worker and backend: the balancer, rebuilt when the backend's generation moves. Not shared.
class Picker {
 public:
  Picker(upstream::Backend& backend, uint64_t seed);
  upstream::Backend& backend() const { return backend_; }
  // nullptr when no server can take the request (all down, or all tried).
  upstream::Server* pick(const PickContext& ctx);
  // Whether `s` takes new traffic now (is in the serving set): sticky sessions follow a server
  // only while it does.
  bool serving(const upstream::Server& s);

 private:
  void rebuild();
  std::vector<uint8_t> serving_;  // by Server::index()
  upstream::Backend& backend_;
  const Algorithm* algorithm_;
  uint64_t seed_;
  uint64_t built_generation_ = 0;
  std::unique_ptr<Balancer> balancer_;
};

}  // namespace fulcrum::lb
