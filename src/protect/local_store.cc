// The in-process LimitStore: two fixed-size, open-addressed tables of atomics, shared by every
// worker of a listener and updated with compare-and-swap. No lock, no allocation after
// construction, one cache line touched per decision. Token buckets: bucket_table.cc.
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

#include "protect/bucket_table.h"
#include "protect/limit_store.h"

namespace fulcrum::protect {
namespace {

constexpr size_t kSlots = size_t{1} << 16;
constexpr int kConnProbes = 8;

class LocalStore final : public LimitStore {
 public:
  LocalStore() : conns_(new std::atomic<uint64_t>[kSlots]()) {}

  TakeResult take_token(const ClientKey& key, const BucketSpec& spec, TimePoint now) override {
    return buckets_.take(key, spec, now);
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
  BucketTable buckets_;
  std::unique_ptr<std::atomic<uint64_t>[]> conns_;
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
  if (len == 4)
    inet_ntop(AF_INET, bytes, buf, sizeof(buf));
  else if (len == 16)
    inet_ntop(AF_INET6, bytes, buf, sizeof(buf));
  return buf;
}

std::unique_ptr<LimitStore> make_local_store() { return std::make_unique<LocalStore>(); }

}  // namespace fulcrum::protect
