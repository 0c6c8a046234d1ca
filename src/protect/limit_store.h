// LimitStore: the counters behind protect.rate and protect.max_conns_per_client, keyed by client
// IP. One store per listener and config generation, shared by every worker of that listener, so a
// client's limit holds whichever worker accepts it. Any thread may call any method; none blocks,
// allocates (in-process store) or takes a lock.
//
// Two kinds: in-process (make_local_store) and Redis (make_redis_store), the latter shared by
// several fulcrum instances. A reload builds a new generation with a fresh store (buckets start
// full, connection counts start at zero for new connections; old connections release into the old
// store, which lives until they end).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/address.h"
#include "core/event_loop.h"

namespace fulcrum::protect {

// A client address reduced to what limits are keyed on: the IP (IPv4-mapped IPv6 as IPv4, so a
// dual-stack listener counts one client once), and a 64-bit hash of it for table slots.
struct ClientKey {
  unsigned char bytes[16]{};
  uint8_t len = 0;  // 4 or 16; 0 for a non-IP peer (a unix socket), which no limit applies to
  uint64_t hash = 0;
  static ClientKey of(const SocketAddress& addr);
  std::string text() const;  // "192.0.2.7", "2001:db8::1"
};

// A token bucket: `per_second` tokens flow in, at most `burst` are held, a request takes one.
struct BucketSpec {
  double per_second = 0;
  uint32_t burst = 0;
};

struct TakeResult {
  bool allowed = true;
  uint32_t retry_after_s = 0;  // when refused: whole seconds until a token is there, at least 1
  bool failed_open = false;    // the store could not decide (Redis down): allowed unchecked
};

enum class Admit : uint8_t { kCounted, kUncounted, kRefused };

class LimitStore {
 public:
  virtual ~LimitStore() = default;
  // Takes one token from the client's bucket.
  virtual TakeResult take_token(const ClientKey& key, const BucketSpec& spec, TimePoint now) = 0;
  // Counts one more connection of the client unless it already has `max`. kUncounted: the store
  // could not decide (no table room, Redis down) and lets the connection in without counting it.
  virtual Admit acquire_conn(const ClientKey& key, uint32_t max) = 0;
  // Gives back a connection acquire_conn() answered kCounted for.
  virtual void release_conn(const ClientKey& key) = 0;
};

// Lock-free tables in this process (see local_store.cc for the layout and its arithmetic).
std::unique_ptr<LimitStore> make_local_store();

// A Redis server at host:port shared with other fulcrum instances. Its own thread and event loop
// talk to Redis (hiredis async); workers never wait for it. `name` is the listener's, used as a
// key prefix so that listeners keep separate limits on one Redis.
std::unique_ptr<LimitStore> make_redis_store(const std::string& address, const std::string& name);

}  // namespace fulcrum::protect
