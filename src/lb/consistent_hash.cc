// Consistent hashing: the HRW table shared by `hash` and `ip_hash`, and the `hash` algorithm
// (consistent hash of the request's hash_key). Tables are built on a worker's rare path; the
// slot arrays are cached process-wide (under a mutex, build time only) and read without locks.
//
// Why weighted rendezvous (HRW) hashing in a 2^16-slot table, rather than a ring with bounded
// load or Maglev:
// - Exact minimal disruption. A slot belongs to the server with the highest score for it, and a
//   server's score for a slot depends only on the slot and the server's own name and weight.
//   Removing a server moves exactly the slots it owned; adding one moves exactly the slots it
//   now wins (about 1/(N+1) of them). Maglev's table also shuffles a few slots between servers
//   that stayed; a ring with bounded load moves keys whenever loads shift.
// - Spread. Each slot is an independent weighted draw, so a server's share is binomial over
//   65536 slots: a standard deviation of 1.2% at 10 servers (the worst of ten about 3% off
//   even), 2.7% at 50 (worst about 8%). A ring needs thousands of vnodes per server to match
//   that. Past about 60 servers the worst one can drift beyond the 10% SPEC promises; 2^18 slots
//   would hold that to 256 servers, at 4× the build time and a 512 KiB table (kSlotBits).
// - O(1) pick: one xxHash of the key, one array load (15 ns). Building costs 65536 × N mixes and
//   a log per weight class and slot: 2-5 ms for 10 servers, 15 ms for 100, 30 ms for 256. Every
//   worker rebuilds on the same change, so the slot array is built once and shared (128 KiB).
// - Retries: a tried server's keys go to the slot's next HRW choice, computed on demand, which
//   is exactly where they would go if that server were removed.
// Weighted HRW: server i draws u in (0,1) per slot and scores -ln(u)/w_i, an exponential variate
// of rate w_i; the lowest wins, so server i wins a slot with probability w_i / Σw.
#include "lb/consistent_hash.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <utility>

#include "lb/algorithms.h"

namespace fulcrum::lb {
namespace {

// Seeds name hashes apart from key hashes, so that a key equal to a server name is not special.
constexpr uint64_t kNameSeed = 0x6e616d65u;  // "name"

// The server's pseudo-random draw for a slot. The slot is spread by an odd multiplier before
// the mix so neighbouring slots give unrelated draws.
uint64_t draw(uint64_t name_hash, uint32_t slot) {
  return mix64(name_hash ^ (uint64_t{slot} * 0xD6E8FEB86659FD93ull));
}

// The top 53 bits as a double strictly inside (0, 1), so log() is finite and negative.
double unit(uint64_t x) { return (static_cast<double>(x >> 11) + 0.5) * 0x1p-53; }

struct Scored {
  uint64_t name_hash;
  uint32_t weight;
  uint64_t x;
};

// Does a beat b for a slot? Between equal weights the larger draw wins (no log needed); between
// different weights, the smaller -ln(u)/w. The name hash breaks exact ties, so the order does
// not depend on the order servers were listed in.
bool beats(const Scored& a, const Scored& b) {
  if (a.weight == b.weight) return a.x != b.x ? a.x > b.x : a.name_hash > b.name_hash;
  return -std::log(unit(a.x)) / a.weight < -std::log(unit(b.x)) / b.weight;
}

using Fingerprint = std::vector<std::pair<uint64_t, uint32_t>>;  // (name hash, weight) per member
using Owners = std::vector<uint16_t>;

Owners build_owners(const Fingerprint& members) {
  constexpr size_t kSlots = HrwTable::kSlots;
  Owners owner(kSlots, 0);
  if (members.empty()) return owner;
  // Group members by weight: within a group only the largest draw can win, so the log is taken
  // once per weight class and slot, not once per server and slot. Within a group members go in
  // name-hash order and `>=` lets the later one take an equal draw: the tie rule of beats().
  std::vector<uint16_t> order(members.size());
  std::iota(order.begin(), order.end(), uint16_t{0});
  std::sort(order.begin(), order.end(), [&](uint16_t a, uint16_t b) {
    return std::pair(members[a].second, members[a].first) < std::pair(members[b].second, members[b].first);
  });

  // Member by member over all slots rather than slot by slot over members: the inner loop is
  // then a branch-free max over an array, several times faster than comparing random draws.
  std::vector<uint64_t> group_x(kSlots);
  std::vector<uint16_t> group_owner(kSlots);
  std::vector<double> best_score;  // -ln(u)/w of the current owner; only with several weights
  const bool one_weight = members[order.front()].second == members[order.back()].second;
  if (!one_weight) best_score.assign(kSlots, HUGE_VAL);
  for (size_t g = 0; g < order.size();) {
    const uint32_t weight = members[order[g]].second;
    const uint16_t first = order[g];
    for (uint32_t slot = 0; slot < kSlots; ++slot) group_x[slot] = draw(members[first].first, slot);
    std::fill(group_owner.begin(), group_owner.end(), first);
    for (++g; g < order.size() && members[order[g]].second == weight; ++g) {
      const uint16_t m = order[g];
      const uint64_t name_hash = members[m].first;
      for (uint32_t slot = 0; slot < kSlots; ++slot) {
        const uint64_t x = draw(name_hash, slot);
        const bool wins = x >= group_x[slot];
        group_x[slot] = wins ? x : group_x[slot];
        group_owner[slot] = wins ? m : group_owner[slot];
      }
    }
    if (one_weight) return group_owner;
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      const double score = -std::log(unit(group_x[slot])) / weight;
      if (score < best_score[slot]) {
        best_score[slot] = score;
        owner[slot] = group_owner[slot];
      }
    }
  }
  return owner;
}

// Workers building for the same servers and weights share one slot array: a 16-worker process
// then holds one 128 KiB table per backend, and builds it once per change instead of 16 times.
// The lock is held only while building, which is the rare path; picks never see it.
std::shared_ptr<const Owners> shared_owners(const Fingerprint& members) {
  struct Entry {
    Fingerprint members;
    std::weak_ptr<const Owners> owners;
  };
  static std::mutex mutex;
  static std::vector<Entry> entries;
  std::lock_guard lock(mutex);
  std::erase_if(entries, [](const Entry& e) { return e.owners.expired(); });
  for (const Entry& e : entries)
    if (e.members == members)
      if (auto owners = e.owners.lock()) return owners;
  auto owners = std::make_shared<const Owners>(build_owners(members));
  entries.push_back({members, owners});
  return owners;
}

}  // namespace

HrwTable::HrwTable(std::span<const Candidate> candidates) {
  const size_t n = std::min(candidates.size(), kMaxMembers);
  members_.reserve(n);
  Fingerprint fingerprint;
  fingerprint.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const Candidate& c = candidates[i];
    uint64_t name_hash = hash_bytes(c.server->name(), kNameSeed);
    members_.push_back({c.server, name_hash, c.weight});
    fingerprint.emplace_back(name_hash, c.weight);
  }
  if (!members_.empty()) owner_ = shared_owners(fingerprint);
}

upstream::Server* HrwTable::pick(uint64_t key_hash, const PickContext& ctx) const {
  if (members_.empty()) return nullptr;
  const uint32_t slot = static_cast<uint32_t>(key_hash & (kSlots - 1));
  upstream::Server* owner = members_[(*owner_)[slot]].server;
  if (!was_tried(ctx, *owner)) return owner;
  return next_choice(slot, ctx);
}

// The rare path of a retry: the best untried server for the slot, scored as the build did, so
// the key goes where it would if the tried servers were gone. O(N), no allocation.
upstream::Server* HrwTable::next_choice(uint32_t slot, const PickContext& ctx) const {
  const Member* best = nullptr;
  Scored best_score{};
  for (const Member& m : members_) {
    if (was_tried(ctx, *m.server)) continue;
    Scored s{m.name_hash, m.weight, draw(m.name_hash, slot)};
    if (best == nullptr || beats(s, best_score)) {
      best = &m;
      best_score = s;
    }
  }
  return best ? best->server : nullptr;
}

std::string_view client_ip_key(const SocketAddress* client) {
  if (client == nullptr) return {};
  std::string_view ip = client->ip_bytes();
  static constexpr char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\xff', '\xff'};
  if (ip.size() == 16 && ip.substr(0, 12) == std::string_view(kMappedPrefix, 12)) ip.remove_prefix(12);
  return ip;
}

namespace {

// `hash`: the consistent hash of the value hash_key names (ctx.key). An empty key (the header,
// cookie or query parameter is absent, or hash_key is `ip`) falls back to the client address,
// hashed as ip_hash does so the two agree; with neither, to smooth round robin.
class KeyHash final : public Balancer {
 public:
  KeyHash(std::vector<Candidate> candidates, uint64_t seed)
      : table_(candidates), fallback_(make_round_robin(std::move(candidates), seed)) {}

  upstream::Server* pick(const PickContext& ctx) override {
    if (!ctx.key.empty()) return table_.pick(hash_bytes(ctx.key), ctx);
    std::string_view ip = client_ip_key(ctx.client);
    if (!ip.empty()) return table_.pick(hash_bytes(ip), ctx);
    return fallback_->pick(ctx);
  }

 private:
  HrwTable table_;
  std::unique_ptr<Balancer> fallback_;
};

}  // namespace

std::unique_ptr<Balancer> make_hash(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<KeyHash>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
