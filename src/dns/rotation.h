// Rotation: which record leads the next DNS reply. Smooth weighted round robin (nginx's): every
// turn each entry gains its weight, the largest leads and loses the total, so weights 5, 1, 1
// lead 5:1:1 interleaved (a a b a c a a), not in bursts. Equal weights take a plain counter, the
// common case in O(1). Owned by one worker's Responder; not shared.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fulcrum::dns {

class Rotation {
 public:
  // Weights of 0 are taken as 1: a record is only here because its server is to be answered.
  // `skip` (modulo the number of entries) turns are taken first, so workers do not start in
  // lock-step.
  void reset(std::span<const uint32_t> weights, uint64_t skip);
  // The index of the next leading entry; 0 when there are none.
  size_t next();
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int64_t weight;
    int64_t current;
  };
  std::vector<Entry> entries_;
  int64_t total_ = 0;
  bool equal_ = true;
  size_t counter_ = 0;
};

}  // namespace fulcrum::dns
