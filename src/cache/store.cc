// The shared object store (store.h). Any thread; every member takes its shard's lock.
#include "cache/store.h"

#include <algorithm>

#include "config/config.h"
#include "core/event_loop.h"

namespace fulcrum::cache {
namespace {

constexpr uint64_t kMinShardBytes = 4ull << 20;
constexpr size_t kMaxShards = 16;
// Variants of one URI kept at once (Vary): beyond that the oldest goes. A client population with
// many distinct values of a varied field would otherwise grow one object without bound.
constexpr size_t kMaxVariants = 8;

bool same_variant(const Entry& a, const Entry& b) {
  if (a.vary.size() != b.vary.size()) return false;
  for (size_t i = 0; i < a.vary.size(); ++i)
    if (a.vary[i].name != b.vary[i].name || a.vary[i].value != b.vary[i].value ||
        a.vary[i].present != b.vary[i].present)
      return false;
  return true;
}

}  // namespace

Store::Store(uint64_t size, int64_t default_ttl_ms) : size_(size), default_ttl_ms_(default_ttl_ms) {
  size_t n = static_cast<size_t>(std::clamp<uint64_t>(size / kMinShardBytes, 1, kMaxShards));
  shard_budget_ = size / n;
  max_object_ = std::min(size / 8, shard_budget_);
  for (size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

Store::~Store() = default;

Store::Shard& Store::shard_of(std::string_view key) {
  // The map inside a shard hashes the same key: use other bits of it for the shard.
  size_t h = std::hash<std::string_view>{}(key);
  return *shards_[(h >> 17 ^ h >> 41) % shards_.size()];
}

Store::Lookup Store::lookup(std::string_view key, std::span<const http::Header> request, int64_t now_ms,
                            bool revalidate, bool may_fill, bool authorization,
                            const std::shared_ptr<Waiter>& waiter) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    if (!may_fill) return {Action::kBypass, nullptr};
    s.lru.push_front(Object{std::string(key), {}, 0, true, {}});
    s.index.emplace(s.lru.front().key, s.lru.begin());
    return {Action::kFill, nullptr};
  }
  Object& o = *it->second;
  std::shared_ptr<const Entry> match;
  for (auto& v : o.variants)
    if (v->matches(request)) {
      match = v;
      break;
    }
  if (match) {
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    // 3.5: a response stored without permission for it does not answer a request with
    // Authorization (it goes upstream instead).
    if (authorization && !match->auth_ok) return {Action::kBypass, nullptr};
    if (!revalidate && match->fresh(now_ms)) return {Action::kHit, std::move(match)};
  }
  if (!may_fill) return {Action::kBypass, std::move(match)};
  if (o.pending) {
    if (authorization || !waiter) return {Action::kBypass, std::move(match)};
    o.waiters.push_back(waiter);
    return {Action::kWait, nullptr};
  }
  o.pending = true;
  return {Action::kFill, std::move(match)};
}

void Store::insert(std::string_view key, std::shared_ptr<const Entry> entry) {
  if (entry->charge() > max_object_) return release(key);
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {  // invalidated or evicted while fetched: store anyway
    s.lru.push_front(Object{std::string(key), {}, 0, false, {}});
    it = s.index.emplace(s.lru.front().key, s.lru.begin()).first;
  }
  Object& o = *it->second;
  size_t add = entry->charge();
  auto same = std::find_if(o.variants.begin(), o.variants.end(),
                           [&](const std::shared_ptr<const Entry>& v) { return same_variant(*v, *entry); });
  if (same != o.variants.end()) {
    size_t old = (*same)->charge();
    o.charge -= old;
    s.bytes -= old;
    *same = std::move(entry);
  } else {
    if (o.variants.size() == kMaxVariants) {
      size_t old = o.variants.front()->charge();
      o.charge -= old;
      s.bytes -= old;
      o.variants.erase(o.variants.begin());
    }
    o.variants.push_back(std::move(entry));
  }
  o.charge += add;
  s.bytes += add;
  o.pending = false;
  wake_all(o);
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  evict(s);
}

void Store::release(std::string_view key) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  it->second->pending = false;
  wake_all(*it->second);
  if (it->second->variants.empty()) erase(s, it->second);
}

void Store::cancel(std::string_view key, const Waiter* waiter) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  auto& w = it->second->waiters;
  w.erase(
      std::remove_if(w.begin(), w.end(), [&](const std::shared_ptr<Waiter>& p) { return p.get() == waiter; }),
      w.end());
}

void Store::invalidate(std::string_view key) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  Object& o = *it->second;
  if (o.pending) {  // its filler and waiters still need the marker
    s.bytes -= o.charge;
    o.charge = 0;
    o.variants.clear();
    return;
  }
  erase(s, it->second);
}

StoreStats Store::stats() const {
  StoreStats st;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    st.bytes += s->bytes;
    st.evictions += s->evictions;
    for (auto& o : s->lru) st.objects += o.variants.size();
  }
  return st;
}

void Store::wake_all(Object& o) {
  for (auto& w : o.waiters)
    w->loop->post([w] {
      if (w->wake) w->wake();
    });
  o.waiters.clear();
}

void Store::evict(Shard& s) {
  auto it = s.lru.end();
  while (s.bytes > shard_budget_ && it != s.lru.begin()) {
    --it;
    if (it->pending) continue;  // its filler will insert into it
    auto victim = it++;
    ++s.evictions;
    erase(s, victim);
  }
}

void Store::erase(Shard& s, std::list<Object>::iterator it) {
  s.bytes -= it->charge;
  s.index.erase(std::string_view(it->key));
  s.lru.erase(it);
}

std::shared_ptr<Store> make_store(const config::Cache& spec) {
  return std::make_shared<Store>(spec.size, spec.default_ttl.count());
}

}  // namespace fulcrum::cache
