// RiseFall: the hysteresis of active checks, kept once for every kind (SPEC: Health and
// failover). A server starts `checking` and is up after its first pass; it goes down after
// `fall` failures in a row, and up again after `rise` passes in a row. Plain value; the health
// thread owns one per server.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>

#include "upstream/server.h"

namespace fulcrum::health {

class RiseFall {
 public:
  RiseFall(uint32_t rise, uint32_t fall) : rise_(std::max(rise, 1u)), fall_(std::max(fall, 1u)) {}

  // One check result for a server now in `current`: the state it moves to, if it moves.
  std::optional<upstream::Health> observe(upstream::Health current, bool passed) {
    using upstream::Health;
    if (passed) {
      failures_ = 0;
      passes_ = std::min(passes_ + 1, kCap);
      if (current == Health::kChecking || (current == Health::kDown && passes_ >= rise_)) return Health::kUp;
      return std::nullopt;
    }
    passes_ = 0;
    failures_ = std::min(failures_ + 1, kCap);
    if (current != Health::kDown && failures_ >= fall_) return Health::kDown;
    return std::nullopt;
  }

  uint32_t passes() const { return passes_; }      // in a row, now
  uint32_t failures() const { return failures_; }  // in a row, now
  uint32_t rise() const { return rise_; }
  uint32_t fall() const { return fall_; }

 private:
  static constexpr uint32_t kCap = 1u << 30;  // a server down for years must not wrap to 0
  uint32_t rise_, fall_;
  uint32_t passes_ = 0, failures_ = 0;
};

}  // namespace fulcrum::health
