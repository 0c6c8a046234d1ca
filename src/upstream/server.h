// Servers and backends at run time. One Server per configured server, shared by every worker:
// its state and weight are atomics written on the rare path (health checks, the admin API, the
// agent) and read on the hot path; its live counters sit on their own cache line, bumped with
// relaxed atomics, so workers do not false-share with the state bits.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/address.h"

namespace fulcrum::upstream {

// What the health checker says.
enum class Health : uint8_t { kChecking, kUp, kDown };
// What an operator (admin API) or the server's agent asked for.
enum class Admin : uint8_t { kNone, kDrain, kDisabled };
// The state shown to users: one word combining both (SPEC: Admin API).
enum class State : uint8_t { kChecking, kUp, kDown, kDrain, kDisabled, kStandby };
const char* state_name(State s);

class Backend;

class Server {
 public:
  Server(const config::Server& spec, size_t index, Backend* backend);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& name() const { return name_; }
  const SocketAddress& address() const { return address_; }
  const std::string& address_text() const { return address_text_; }
  size_t index() const { return index_; }  // position in its backend, for TriedSet
  bool backup() const { return backup_; }
  Backend& backend() const { return *backend_; }

  Health health() const { return health_.load(std::memory_order_acquire); }
  Admin admin() const { return admin_.load(std::memory_order_acquire); }
  // Takes traffic as far as its own state goes (the backend decides about spares).
  bool usable() const { return health() == Health::kUp && admin() == Admin::kNone && weight() > 0; }

  uint32_t configured_weight() const { return configured_weight_; }
  // The weight balancers use: configured (or set by the API), scaled by agent reports and slow
  // start. 0 means no new traffic.
  uint32_t weight() const { return weight_.load(std::memory_order_relaxed); }

  // Rare path: each setter bumps the backend's generation so workers rebuild their balancers.
  void set_health(Health h);
  void set_admin(Admin a);
  void set_weight(uint32_t w);

  // Hot path counters, shared across workers.
  int32_t active() const { return hot_.active.load(std::memory_order_relaxed); }
  void begin() { hot_.active.fetch_add(1, std::memory_order_relaxed); hot_.requests.fetch_add(1, std::memory_order_relaxed); }
  void end() { hot_.active.fetch_sub(1, std::memory_order_relaxed); }
  uint64_t requests() const { return hot_.requests.load(std::memory_order_relaxed); }
  // Decaying average of response (http) or connect (tcp) times, microseconds; 0 = no sample yet.
  uint32_t ewma_us() const { return hot_.ewma_us.load(std::memory_order_relaxed); }
  void record_time_us(uint32_t us);
  void reset_ewma() { hot_.ewma_us.store(0, std::memory_order_relaxed); }
  uint64_t failures() const { return hot_.failures.load(std::memory_order_relaxed); }
  void record_failure() { hot_.failures.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::string name_;
  SocketAddress address_;
  std::string address_text_;
  size_t index_;
  bool backup_;
  uint32_t configured_weight_;
  Backend* backend_;
  std::atomic<Health> health_{Health::kChecking};
  std::atomic<Admin> admin_{Admin::kNone};
  std::atomic<uint32_t> weight_;
  struct alignas(64) Hot {
    std::atomic<int32_t> active{0};
    std::atomic<uint32_t> ewma_us{0};
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> failures{0};
  } hot_;
};

class Backend {
 public:
  explicit Backend(const config::Backend& spec);
  const config::Backend& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  const std::vector<std::unique_ptr<Server>>& servers() const { return servers_; }
  Server* find(std::string_view name) const;

  // Moves whenever a server's state or weight changes; a worker whose balancer was built at an
  // older generation rebuilds it before its next pick.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void bump() { generation_.fetch_add(1, std::memory_order_acq_rel); }

  // The servers that take new traffic now: the usable primaries, plus one usable spare (in the
  // order written) for each primary that is not usable (N+1, N+M; active-passive with one each).
  std::vector<Server*> serving() const;
  // The state word for the API: spares not standing in for anyone are `standby`.
  State state_of(const Server& s) const;

 private:
  config::Backend spec_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace fulcrum::upstream
