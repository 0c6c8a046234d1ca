// BucketTable (see bucket_table.h): lock-free token buckets keyed by client. Any thread.
//
// A bucket slot is two words. The state word packs what a token bucket must update together, so
// one 64-bit CAS (the widest atomic that is cheap everywhere) moves it:
//
//   63                                  32 31                               0
//   [ tokens: 16.16 fixed point           ][ last refill: ms mod 2^32         ]
//
// Tokens in 1/65536ths: a refill is computed in whole units, and time moves on only by what those
// units took (rounded up to a whole ms, never past now), so the fraction left over keeps flowing
// and slow rates stay exact (6/m gives 1 unit every 0.15 ms). A bucket holds at most 65535 tokens
// (burst is clamped to that). Time wraps every 49 days; a step "backwards" (another worker read
// the clock a moment later than ours) counts as no time passed.
//
// The owner word holds the client's 64-bit hash, written after a takeover. The two words are not
// updated together: a reader that sees a stale owner mistakes the slot for someone else's and
// takes a fresh bucket, which errs towards letting a request through, never towards refusing it.
// A slot whose owner's bucket would be full by now holds nothing worth keeping and is taken over.
// A client that finds its 4 probe slots all busy with other clients' partial buckets evicts the
// first one: with 65536 slots that needs tens of thousands of clients active at once, and
// evicting only ever gives a full bucket, never refuses an innocent.
//
#include "protect/bucket_table.h"

#include <algorithm>
#include <cmath>

namespace fulcrum::protect {
namespace {

constexpr size_t kSlots = size_t{1} << 16;
constexpr int kProbes = 4;
constexpr uint64_t kTimeMask = 0xFFFFFFFF;
constexpr uint64_t kUnit = 65536;  // one token
constexpr uint64_t kMaxBurst = 65535;

struct Bucket {
  uint64_t tokens, time;
  static Bucket of(uint64_t w) { return {w >> 32, w & kTimeMask}; }
  uint64_t word() const { return (tokens << 32) | time; }
};

// The arithmetic of one bucket at one moment.
struct Params {
  uint64_t burst;  // in units
  double per_ms;   // units per millisecond
  uint64_t now_ms;
  Params(const BucketSpec& spec, uint64_t now)
      : burst(std::min<uint64_t>(std::max<uint32_t>(spec.burst, 1), kMaxBurst) * kUnit),
        per_ms(spec.per_second * kUnit / 1000.0),
        now_ms(now) {}
  uint64_t elapsed(uint64_t t) const {
    uint64_t e = (now_ms - t) & kTimeMask;
    return e > (kTimeMask >> 1) ? 0 : e;  // "backwards": another thread read a later time
  }
  bool full_by_now(Bucket b) const {
    return b.tokens + static_cast<double>(elapsed(b.time)) * per_ms >= static_cast<double>(burst);
  }
  // Adds what flowed in since b.time; time moves on only by what the whole units took.
  void refill(Bucket* b) const {
    uint64_t e = elapsed(b->time);
    uint64_t units = static_cast<uint64_t>(static_cast<double>(e) * per_ms);
    if (b->tokens + units >= burst) {
      b->tokens = burst, b->time = now_ms;
    } else if (units > 0) {
      b->tokens += units;
      auto took = static_cast<uint64_t>(std::ceil(static_cast<double>(units) / per_ms));
      b->time = (b->time + std::min(e, took)) & kTimeMask;
    }
  }
};

}  // namespace

struct alignas(16) BucketTable::Slot {
  std::atomic<uint64_t> state{0};  // Bucket::word()
  std::atomic<uint64_t> owner{0};  // the owner's ClientKey::hash | 1; 0 = never used
};

struct BucketTable::Found {
  Slot* slot = nullptr;
  uint64_t word = 0;
  bool fresh = false;  // not the client's yet: start from a full bucket
};

BucketTable::BucketTable() : slots_(new Slot[kSlots]()), epoch_(Clock::now() - std::chrono::seconds(1)) {}
BucketTable::~BucketTable() = default;

uint64_t BucketTable::now_ms(TimePoint now) const {
  return static_cast<uint64_t>(std::chrono::duration_cast<Millis>(now - epoch_).count()) & kTimeMask;
}

BucketTable::Found BucketTable::find(const ClientKey& key, const BucketSpec& spec, uint64_t now, bool claim) {
  const uint64_t me = key.hash | 1;
  Params p(spec, now);
  Found f;
  for (int i = 0; i < kProbes; ++i) {
    Slot* s = &slots_[(key.hash + static_cast<uint64_t>(i)) & (kSlots - 1)];
    uint64_t v = s->state.load(std::memory_order_relaxed);
    uint64_t owner = s->owner.load(std::memory_order_relaxed);
    if (owner == me) return {s, v, false};
    // Another client's bucket that would be full by now holds nothing worth keeping.
    if (claim && !f.slot && (owner == 0 || p.full_by_now(Bucket::of(v)))) f = {s, v, true};
  }
  if (claim && !f.slot) {  // every probe busy with someone else: evict the home slot (see above)
    Slot* s = &slots_[key.hash & (kSlots - 1)];
    f = {s, s->state.load(std::memory_order_relaxed), true};
  }
  return f;
}

TakeResult BucketTable::take(const ClientKey& key, const BucketSpec& spec, TimePoint now) {
  if (key.len == 0 || !(spec.per_second > 0)) return {};
  Params p(spec, now_ms(now));
  for (int attempt = 0; attempt < 64; ++attempt) {
    Found f = find(key, spec, p.now_ms, true);
    Bucket b = f.fresh ? Bucket{p.burst, p.now_ms} : Bucket::of(f.word);
    if (!f.fresh) p.refill(&b);
    TakeResult r;
    if (b.tokens >= kUnit) {
      b.tokens -= kUnit;
    } else {
      r.allowed = false;
      double secs = static_cast<double>(kUnit - b.tokens) / p.per_ms / 1000.0;
      r.retry_after_s = static_cast<uint32_t>(std::max(1.0, std::min(std::ceil(secs), 86400.0)));
    }
    uint64_t nw = b.word();
    if (nw == f.word || f.slot->state.compare_exchange_weak(f.word, nw, std::memory_order_relaxed)) {
      if (f.fresh) f.slot->owner.store(key.hash | 1, std::memory_order_relaxed);
      return r;
    }
  }
  return {true, 0, true};  // contention beyond reason: let it through rather than spin
}

void BucketTable::clamp(const ClientKey& key, const BucketSpec& spec, double tokens, TimePoint now) {
  if (key.len == 0 || !(spec.per_second > 0)) return;
  Params p(spec, now_ms(now));
  uint64_t cap = static_cast<uint64_t>(std::clamp(tokens, 0.0, static_cast<double>(kMaxBurst)) * kUnit);
  for (int attempt = 0; attempt < 64; ++attempt) {
    Found f = find(key, spec, p.now_ms, false);
    if (!f.slot) return;
    Bucket b = Bucket::of(f.word);
    p.refill(&b);
    if (b.tokens <= cap) return;
    b.tokens = cap;
    if (f.slot->state.compare_exchange_weak(f.word, b.word(), std::memory_order_relaxed)) return;
  }
}

}  // namespace fulcrum::protect
