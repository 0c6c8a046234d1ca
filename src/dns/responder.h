// Responder: turns one DNS query into its reply, for the zones of one `protocol: dns` listener.
// Owned by one worker (one per listener per worker) and touched only by its thread; its counters
// (DnsStats) belong to the worker's metrics, which the control thread reads. It does no I/O: the
// listener hands it bytes and a buffer, so tests and the fuzz target drive it directly.
//
// The hot path allocates nothing: the records of each zone are encoded once whenever the
// backend's generation moves (a server went up or down, or its weight changed) and a reply is a
// header, the question copied back, and one memcpy of records per address family.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dns/query.h"
#include "dns/rotation.h"
#include "metrics/metrics.h"
#include "upstream/server.h"

namespace fulcrum::dns {

// The largest UDP reply we send, whatever a client offers: 4096 is what BIND and NSD default to;
// a reply larger than this goes by TCP (TC).
inline constexpr uint16_t kMaxUdpPayload = 4096;
// The size we advertise in our OPT record: what we accept in one datagram (DNS Flag Day 2020's
// 1232 keeps a query in one unfragmented packet on any path).
inline constexpr uint16_t kAdvertisedPayload = 1232;
// A reply over TCP is framed by a 16-bit length (RFC 1035 4.2.2).
inline constexpr size_t kMaxTcpMessage = 65535;

enum class Transport { kUdp, kTcp };

struct ZoneConfig {
  std::string name;  // as in the config: lower case, no trailing dot
  upstream::Backend* backend = nullptr;
  uint32_t ttl = 30;
  uint32_t answers = 0;  // 0 = all
};

// Per listener and worker; summed across workers when read (GET /metrics, fulcrum_dns_*). STYLE
// 11: every reply we refuse and every packet we drop is counted, by reason. The responder and the
// listener count into one struct that the worker's metrics::WorkerMetrics owns, so that the
// counters outlive a listener that a reload retires (metrics/metrics.h lists the fields).
using DnsStats = metrics::DnsCounters;
static_assert(metrics::kDnsParseErrors == kParseErrors, "DnsStats::malformed is indexed by ParseError");

class Responder {
 public:
  // `listener` names the listener in log lines; `seed` staggers the rotation between workers;
  // `stats` (which must outlive the responder) receives its counts.
  Responder(std::string listener, std::span<const ZoneConfig> zones, uint64_t seed, DnsStats& stats);
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // Writes the reply to `packet` into `out` and returns its length; 0 means send nothing (the
  // packet was malformed or a response, and is counted). Over UDP the reply fits the client's
  // size (512 without EDNS, else its OPT size, capped at kMaxUdpPayload) or is cut to the question
  // with TC set; over TCP it fits out.size() (at most kMaxTcpMessage). out must hold at least
  // kMinUdpPayload bytes.
  size_t respond(std::span<const uint8_t> packet, Transport transport, std::span<uint8_t> out);

  const DnsStats& stats() const { return stats_; }
  DnsStats& stats() { return stats_; }

 private:
  struct Family {
    explicit Family(size_t rr) : rr_size(rr) {}
    size_t rr_size;                 // 16 for A, 28 for AAAA (with a 2-byte compressed owner)
    size_t count = 0;               // records
    std::vector<uint8_t> wire;      // the records, twice over: any k from any start is one memcpy
    std::vector<uint32_t> weights;  // scratch for rebuilding the rotation
    Rotation rotation;
  };
  struct Zone {
    std::string name;  // for logs
    std::string wire;  // lower-cased wire form, the lookup key
    upstream::Backend* backend;
    uint32_t ttl;
    uint32_t answers;
    uint64_t generation = 0;  // of the backend when the records were built; 0 = never
    bool fail_open = false;
    Family v4{16};
    Family v6{28};
  };
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  void refresh(Zone& z);
  void rebuild(Zone& z);
  void encode(Family& f, const upstream::Server& s, uint32_t ttl);
  size_t records(const Zone& z, const Family& f) const;

  std::string listener_;
  uint64_t seed_;
  std::vector<Zone> zones_;
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> by_name_;
  Query query_;  // scratch, reused for every packet
  DnsStats& stats_;
};

// A zone name ("www.example.com") in lower-cased wire form, root label included; "" if it is not
// a valid name. Configuration time only (ldns allocates).
std::string name_to_wire(std::string_view name);

}  // namespace fulcrum::dns
