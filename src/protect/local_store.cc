// The in-process LimitStore: two fixed-size, open-addressed tables of 64-bit atomics, shared by
// every worker of a listener and updated with compare-and-swap. No lock, no allocation after
// construction, one cache line touched per decision.
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
// Connection counts are one word a slot, [ tag: 32 hash bits ][ count:32 ], a zero count being free.
// Two first connections of one client racing on two free slots may make two entries, which only
// splits (loosens) that client's limit.
#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>

#include "protect/limit_store.h"

namespace fulcrum::protect {
namespace {

constexpr size_t kSlots = size_t{1} << 16;
constexpr int kBucketProbes = 4;
constexpr int kConnProbes = 8;
constexpr uint64_t kTimeMask = 0xFFFFFFFF;
constexpr uint64_t kUnit = 65536;  // one token
constexpr uint64_t kMaxBurst = 65535;

struct Bucket {
  uint64_t tokens, time;
  static Bucket of(uint64_t w) { return {w >> 32, w & kTimeMask}; }
  uint64_t word() const { return (tokens << 32) | time; }
};

struct alignas(16) BucketSlot {
  std::atomic<uint64_t> state{0};  // Bucket::word()
  std::atomic<uint64_t> owner{0};  // the owner's ClientKey::hash; 0 = never used
};

class LocalStore final : public LimitStore {
 public:
  LocalStore()
      : buckets_(new BucketSlot[kSlots]()), conns_(new std::atomic<uint64_t>[kSlots]()),
        epoch_(Clock::now() - std::chrono::seconds(1)) {}

  TakeResult take_token(const ClientKey& key, const BucketSpec& spec, TimePoint now) override {
    if (key.len == 0 || !(spec.per_second > 0)) return {};
    const uint64_t burst = std::min<uint64_t>(std::max<uint32_t>(spec.burst, 1), kMaxBurst) * kUnit;
    const double per_ms = spec.per_second * kUnit / 1000.0;  // units per millisecond
    const uint64_t now_ms =
        static_cast<uint64_t>(std::chrono::duration_cast<Millis>(now - epoch_).count()) & kTimeMask;
    const uint64_t me = key.hash | 1;  // never 0: an owner of 0 is an unused slot
    auto elapsed = [&](uint64_t t) -> uint64_t {
      uint64_t e = (now_ms - t) & kTimeMask;
      return e > (kTimeMask >> 1) ? 0 : e;  // "backwards": another thread read a later time
    };

    for (int attempt = 0; attempt < 64; ++attempt) {
      BucketSlot* slot = nullptr;
      uint64_t w = 0;
      bool fresh = false;
      for (int p = 0; p < kBucketProbes && !slot; ++p) {
        auto* s = &buckets_[(key.hash + static_cast<uint64_t>(p)) & (kSlots - 1)];
        uint64_t v = s->state.load(std::memory_order_relaxed);
        Bucket b = Bucket::of(v);
        uint64_t owner = s->owner.load(std::memory_order_relaxed);
        if (owner != me) {
          // Another client's bucket that would be full by now holds nothing worth keeping.
          bool idle = owner == 0 || b.tokens + static_cast<double>(elapsed(b.time)) * per_ms >= static_cast<double>(burst);
          if (!idle) continue;
          fresh = true;
        }
        slot = s, w = v;
      }
      if (!slot) {  // every probe busy with someone else: evict the home slot (see above)
        slot = &buckets_[key.hash & (kSlots - 1)];
        w = slot->state.load(std::memory_order_relaxed);
        fresh = true;
      }
      Bucket b = fresh ? Bucket{burst, now_ms} : Bucket::of(w);
      if (!fresh) {
        uint64_t e = elapsed(b.time);
        uint64_t refill = static_cast<uint64_t>(static_cast<double>(e) * per_ms);
        if (b.tokens + refill >= burst) {
          b.tokens = burst, b.time = now_ms;
        } else if (refill > 0) {
          // Time moves on only by what the whole units took (see above).
          b.tokens += refill;
          auto took = static_cast<uint64_t>(std::ceil(static_cast<double>(refill) / per_ms));
          b.time = (b.time + std::min(e, took)) & kTimeMask;
        }
      }
      TakeResult r;
      if (b.tokens >= kUnit) {
        b.tokens -= kUnit;
      } else {
        r.allowed = false;
        double secs = static_cast<double>(kUnit - b.tokens) / per_ms / 1000.0;
        r.retry_after_s = static_cast<uint32_t>(std::max(1.0, std::min(std::ceil(secs), 86400.0)));
      }
      uint64_t nw = b.word();
      if (nw == w || slot->state.compare_exchange_weak(w, nw, std::memory_order_relaxed)) {
        if (fresh) slot->owner.store(me, std::memory_order_relaxed);
        return r;
      }
    }
    return {true, 0, true};  // contention beyond reason: let it through rather than spin
  }

  Admit acquire_conn(const ClientKey& key, uint32_t max) override {
    if (key.len == 0 || max == 0) return Admit::kUncounted;
    const uint64_t tag = (key.hash >> 32) | 1;
    for (int attempt = 0; attempt < 64; ++attempt) {
      std::atomic<uint64_t>* free_slot = nullptr;
      uint64_t free_word = 0;
      bool retry = false;
      for (int p = 0; p < kConnProbes; ++p) {
        auto& s = conns_[(key.hash + static_cast<uint64_t>(p)) & (kSlots - 1)];
        uint64_t v = s.load(std::memory_order_relaxed);
        uint64_t count = v & 0xFFFFFFFF;
        if (count == 0) {
          if (!free_slot) free_slot = &s, free_word = v;
          continue;
        }
        if ((v >> 32) != tag) continue;
        if (count >= max) return Admit::kRefused;
        if (s.compare_exchange_weak(v, v + 1, std::memory_order_relaxed)) return Admit::kCounted;
        retry = true;
        break;
      }
      if (retry) continue;
      if (!free_slot) break;
      if (free_slot->compare_exchange_weak(free_word, (tag << 32) | 1, std::memory_order_relaxed))
        return Admit::kCounted;
    }
    return Admit::kUncounted;  // no room for this client in its probe window
  }

  void release_conn(const ClientKey& key) override {
    if (key.len == 0) return;
    const uint64_t tag = (key.hash >> 32) | 1;
    for (int attempt = 0; attempt < 64; ++attempt) {
      for (int p = 0; p < kConnProbes; ++p) {
        auto& s = conns_[(key.hash + static_cast<uint64_t>(p)) & (kSlots - 1)];
        uint64_t v = s.load(std::memory_order_relaxed);
        if ((v & 0xFFFFFFFF) == 0 || (v >> 32) != tag) continue;
        if (s.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) return;
        goto again;
      }
      return;  // not found: nothing to give back
    again:;
    }
  }

 private:
  std::unique_ptr<BucketSlot[]> buckets_;
  std::unique_ptr<std::atomic<uint64_t>[]> conns_;
  TimePoint epoch_;
};

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

ClientKey ClientKey::of(const SocketAddress& addr) {
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  ClientKey k;
  std::string_view ip = addr.ip_bytes();
  if (ip.size() == 16 && std::memcmp(ip.data(), kMapped, 12) == 0) ip.remove_prefix(12);
  if (ip.size() != 4 && ip.size() != 16) return k;
  std::memcpy(k.bytes, ip.data(), ip.size());
  k.len = static_cast<uint8_t>(ip.size());
  uint64_t a = 0, b = 0;
  std::memcpy(&a, k.bytes, 8);
  std::memcpy(&b, k.bytes + 8, 8);
  k.hash = mix(a ^ mix(b + k.len));
  return k;
}

std::string ClientKey::text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (len == 4) inet_ntop(AF_INET, bytes, buf, sizeof(buf));
  else if (len == 16) inet_ntop(AF_INET6, bytes, buf, sizeof(buf));
  return buf;
}

std::unique_ptr<LimitStore> make_local_store() { return std::make_unique<LocalStore>(); }

}  // namespace fulcrum::protect
