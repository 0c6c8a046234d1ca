// Internal to src/lb: the consistent-hash table that `hash` (consistent_hash.cc) and `ip_hash`
// (ip_hash.cc) share. Built on a worker's rare path; looked up by that worker only. The slot
// array itself is immutable and shared by every worker with the same servers and weights.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "lb/balancer.h"

namespace fulcrum::lb {

// Weighted rendezvous (HRW) hashing, precomputed into 2^16 slots. See consistent_hash.cc for
// why this and not a ring or Maglev.
class HrwTable {
 public:
  static constexpr unsigned kSlotBits = 16;
  static constexpr size_t kSlots = size_t{1} << kSlotBits;
  // Slots hold a 16-bit member index; a backend past 65536 servers keeps only the first ones.
  static constexpr size_t kMaxMembers = size_t{1} << 16;

  explicit HrwTable(std::span<const Candidate> candidates);

  // The server owning key_hash, or, if it was tried, the next HRW choice for its slot; nullptr
  // when every server was tried or there are none.
  upstream::Server* pick(uint64_t key_hash, const PickContext& ctx) const;

 private:
  struct Member {
    upstream::Server* server;
    uint64_t name_hash;  // HRW draws are keyed on the name, so a server keeps its slots
    uint32_t weight;     // whatever else joins or leaves
  };
  upstream::Server* next_choice(uint32_t slot, const PickContext& ctx) const;

  std::vector<Member> members_;
  std::shared_ptr<const std::vector<uint16_t>> owner_;  // slot -> index in members_
};

// The client address as a hash key: its 4 or 16 address bytes, with an IPv4-mapped IPv6
// address (::ffff:a.b.c.d, seen on dual-stack listeners) cut to its 4 IPv4 bytes so a client
// hashes alike on either family. Empty when there is no client or it is not IP.
std::string_view client_ip_key(const SocketAddress* client);

}  // namespace fulcrum::lb
