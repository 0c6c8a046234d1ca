// The object store of one `cache:` block (a route's or a forward proxy listener's): entries by
// key, least recently used out first once their bytes pass `size`, and the pending-fill markers
// that collapse simultaneous misses into one upstream request. Shared by every worker thread.
//
// Why a sharded mutex, not per-worker stores or a lock-free map: a per-worker store would miss
// on each worker in turn and could not collapse misses across workers; a lock-free LRU costs
// more than it saves here. Each shard's critical section is a hash lookup, a list splice and a
// shared_ptr copy (no allocation, no I/O): a hit takes the shard lock for well under a
// microsecond, then writes the immutable entry with no lock held. Keys spread over the shards
// by hash, so workers rarely meet on one lock.
//
// LRU is per shard, each with size/shards bytes. A cache smaller than 4 MiB per shard gets fewer
// shards (down to one), so that a small cache evicts in exact LRU order. An object larger than
// 1/8 of the size (or than its shard) is not stored: it would flush most of the cache.
//
// Collapsing: a lookup that finds no usable entry marks the key pending and becomes its filler;
// later lookups of that key register a Waiter and wait. When the filler inserts or gives up, the
// store posts each waiter's wake() to the waiter's own event loop (under the shard lock, so a
// waiter that cancels, which it does before its connection and loop go, is never posted to).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/entry.h"

namespace fulcrum {
class EventLoop;
}
namespace fulcrum::config {
struct Cache;
}

namespace fulcrum::cache {

// A request waiting for another's fill. Created and cancelled on its connection's thread;
// wake() runs there too (posted).
struct Waiter {
  EventLoop* loop = nullptr;
  std::function<void()> wake;
};

struct StoreStats {
  uint64_t bytes = 0;
  uint64_t objects = 0;
  uint64_t evictions = 0;
};

class Store {
 public:
  // `size`: bytes for all entries; `default_ttl_ms`: lifetime without freshness information.
  Store(uint64_t size, int64_t default_ttl_ms);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  enum class Action : uint8_t {
    kHit,     // `entry` is fresh and matches
    kFill,    // the caller fetches (revalidating `entry` if set) and must insert() or release()
    kWait,    // another request is fetching: the waiter is woken when it is done
    kBypass,  // neither: go upstream without the cache (`entry` may be a stale match)
  };
  struct Lookup {
    Action action = Action::kBypass;
    std::shared_ptr<const Entry> entry;
  };
  // `revalidate`: a fresh entry is not good enough (the request said no-cache). `may_fill`:
  // the caller may become the filler (or wait for one). `waiter` is registered for kWait.
  Lookup lookup(std::string_view key, std::span<const http::Header> request, int64_t now_ms, bool revalidate,
                bool may_fill, bool authorization, const std::shared_ptr<Waiter>& waiter);
  // The filler's result: replaces the entry with the same Vary values, ends the pending fill.
  void insert(std::string_view key, std::shared_ptr<const Entry> entry);
  // The filler gives up (uncacheable response, error): ends the pending fill.
  void release(std::string_view key);
  // A waiter that stops waiting (timeout, closed connection).
  void cancel(std::string_view key, const Waiter* waiter);
  // RFC 9111 4.4: an unsafe request invalidates the stored responses of its URI.
  void invalidate(std::string_view key);

  uint64_t size() const { return size_; }
  uint64_t max_object() const { return max_object_; }
  int64_t default_ttl_ms() const { return default_ttl_ms_; }
  StoreStats stats() const;

 private:
  struct Object {
    std::string key;
    std::vector<std::shared_ptr<const Entry>> variants;
    size_t charge = 0;
    bool pending = false;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };
  struct Shard {
    std::mutex mu;
    std::list<Object> lru;                                                    // most recent first
    std::unordered_map<std::string_view, std::list<Object>::iterator> index;  // views of Object::key
    uint64_t bytes = 0;
    uint64_t evictions = 0;
  };
  Shard& shard_of(std::string_view key);
  void wake_all(Object& o);                              // shard lock held
  void evict(Shard& s);                                  // shard lock held
  void erase(Shard& s, std::list<Object>::iterator it);  // shard lock held

  uint64_t size_;
  uint64_t shard_budget_;
  uint64_t max_object_;
  int64_t default_ttl_ms_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

// The store of one `cache:` block: a route's, or a forward proxy listener's (config::Listener::cache).
std::shared_ptr<Store> make_store(const config::Cache& spec);

}  // namespace fulcrum::cache
