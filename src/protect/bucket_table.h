// BucketTable: token buckets per client in one fixed-size, open-addressed table of atomics, shared
// by every worker of a listener (the in-process store) or mirroring a shared Redis bucket (the
// Redis store). Any thread; no lock, no allocation after construction.
#pragma once
#include <atomic>
#include <memory>

#include "protect/limit_store.h"

namespace fulcrum::protect {

class BucketTable {
 public:
  BucketTable();
  ~BucketTable();
  TakeResult take(const ClientKey& key, const BucketSpec& spec, TimePoint now);
  // Lowers the client's bucket to at most `tokens` (never raises it): what another holder of
  // the same limit (Redis) says is left. No-op for a client without a bucket here.
  void clamp(const ClientKey& key, const BucketSpec& spec, double tokens, TimePoint now);

 private:
  struct Slot;
  struct Found;
  Found find(const ClientKey& key, const BucketSpec& spec, uint64_t now_ms, bool claim);
  uint64_t now_ms(TimePoint now) const;
  std::unique_ptr<Slot[]> slots_;
  TimePoint epoch_;
};

}  // namespace fulcrum::protect
