// Servers and backends at run time. One Server per configured server, shared by every worker:
// its state and weight are atomics written on the rare path (health checks, the admin API, the
// agent) and read on the hot path; its live counters sit on their own cache line, bumped with
// relaxed atomics, so workers do not false-share with the state bits.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/address.h"
#include "upstream/agent_report.h"
#include "upstream/weight.h"

namespace fulcrum::upstream {

// What the health checker says.
enum class Health : uint8_t { kChecking, kUp, kDown };
// What an operator (admin API) asked for.
enum class Admin : uint8_t { kNone, kDrain, kDisabled };
// The state shown to users: one word combining both (SPEC: Admin API).
enum class State : uint8_t { kChecking, kUp, kDown, kDrain, kDisabled, kStandby };
const char* state_name(State s);

class Backend;
class Server;

// The outcome of the last active health check, for the admin API (`last_check`) and metrics.
// The health thread writes it once per check and the admin thread reads it: both cold, so a copy
// under a mutex.
struct CheckReport {
  bool valid = false;  // false until the first check has finished
  bool passed = false;
  uint8_t result = 0;  // health::Reason as a number (an index into Server::checks())
  std::string code;    // short code: "OK", "L7STS", "L4TOUT"
  std::string detail;  // "HTTP 503", "timeout after 1s", "connection refused"
  uint32_t duration_us = 0;
  // When it finished: wall clock, for people.
  std::chrono::system_clock::time_point at{};
  // Passes in a row if it passed, failures in a row if not.
  uint32_t consecutive = 0;
};

// How agent probes end, for counters: a well-formed reply, a reply we refused, no reply at all.
enum class AgentResult : uint8_t { kOk, kMalformed, kFailed, kCount };
const char* agent_result_name(AgentResult r);  // "ok", "malformed", "failed"

// What the agent reported, for the admin API (`reported_load`) and metrics. Cold: a copy under
// the server's mutex.
struct ReportedLoad {
  bool valid = false;  // false until the first well-formed reply
  AgentState state = AgentState::kNone;
  std::optional<uint32_t> cpu_ppm;  // last reported, parts per million
  std::optional<uint32_t> mem_ppm;
  uint32_t percent = 100;                      // last `N%`, 100 until one is reported
  uint32_t load_permille = 1000;               // the cpu/mem factor in use (after the deadband, weight.h)
  std::chrono::system_clock::time_point at{};  // the last well-formed reply (wall clock)
  // Why the last probe that taught us nothing did so ("connection refused", "malformed reply:
  // unknown word 'busy'"); empty when the last probe succeeded.
  std::string last_error;
  std::chrono::system_clock::time_point error_at{};
};

// Told when live traffic ejects a server (passive checks), so that someone arms the timer that
// brings it back. Called on the worker thread that saw the last error: post, do not work.
class EjectionListener {
 public:
  virtual void on_ejected(Server& server) = 0;

 protected:
  ~EjectionListener() = default;
};

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
  // Ejected by passive checks: errors on live traffic took it out for `health.passive.eject`.
  bool ejected() const { return ejected_.load(std::memory_order_acquire); }
  AgentState agent_state() const { return agent_state_.load(std::memory_order_acquire); }
  // Takes traffic as far as its own state goes (the backend decides about spares).
  bool usable() const {
    AgentState a = agent_state();
    return health() == Health::kUp && admin() == Admin::kNone && !ejected() && a != AgentState::kDrain &&
           a != AgentState::kDown && scaled_weight() > 0;
  }

  // Weights. Configured and base weights are in the config's units (0-256); the effective weight
  // is what balancers use, in units of 1/kWeightScale of a configured unit (weight.h), so that
  // slow start and agent reports can scale a weight-1 server down to 1% of itself.
  //
  // The `weight` of the config file.
  uint32_t configured_weight() const { return configured_weight_; }
  // Configured, or what the admin API set since. Config units.
  uint32_t base_weight() const;
  // The effective weight, in kWeightScale units: the base scaled by slow start and the agent's
  // `N%` and cpu/mem. What lb::Candidate carries. 0 means no new traffic.
  uint32_t scaled_weight() const { return weight_.load(std::memory_order_relaxed); }
  // The same in config units (2.7 for weight 3 at 90%), for people: the API and metrics.
  double effective_weight() const { return static_cast<double>(scaled_weight()) / kWeightScale; }

  // Rare path: each setter bumps the backend's generation so workers rebuild their balancers.
  void set_health(Health h);
  void set_admin(Admin a);
  // Sets the base weight (config units); slow start and the agent go on scaling the new value.
  void set_weight(uint32_t w);
  // Slow start: the share of the base weight in use, in per mille (1000 = all of it). The
  // effective weight never drops below one unit while the base is above 0, so a ramping server
  // is still picked now and then.
  void set_ramp(uint32_t permille);
  uint32_t ramp() const;

  // Server-reported load (the health thread, on each agent probe). A well-formed reply updates
  // the agent state, `N%` and cpu/mem it names; the generation moves once, and only when the
  // agent state or the effective weight actually changed (a cpu/mem change inside the deadband
  // of weight.h changes neither).
  void apply_agent_report(const AgentReport& report);
  // A probe that taught us nothing (no answer, malformed reply): counted and kept for the API;
  // the last reported state and load stay as they were (SPEC).
  void record_agent_problem(AgentResult result, std::string detail);
  ReportedLoad reported_load() const;
  // A reload builds new Servers: they take over what the old one's agent reported (state, N%,
  // cpu/mem), so an agent's drain holds across the reload instead of lapsing until the next probe.
  void restore_reported_load(const ReportedLoad& load);
  // Agent probes that ended with `r`, since start.
  uint64_t agent_results(AgentResult r) const {
    return r < AgentResult::kCount ? agent_results_[static_cast<size_t>(r)].load(std::memory_order_relaxed)
                                   : 0;
  }

  // Passive checks. Hot path: the proxies call this once per request or connection outcome (ok =
  // the server answered; !ok = connect failed, reset, timed out, 5xx where they count those).
  // `health.passive.consecutive_errors` errors in a row eject the server until
  // un_eject(); without `passive` it does nothing.
  void report_outcome(bool ok) {
    if (passive_threshold_ == 0) return;
    if (ok) {
      // Load first: a store to a line every worker reads would bounce it on every success.
      if (hot_.consecutive_errors.load(std::memory_order_relaxed) != 0)
        hot_.consecutive_errors.store(0, std::memory_order_relaxed);
      return;
    }
    // Only the error that reaches the threshold exactly ejects: racing workers cannot eject twice.
    if (hot_.consecutive_errors.fetch_add(1, std::memory_order_relaxed) + 1 == passive_threshold_) eject();
  }
  // Takes the server out now and tells the listener (passive ejection; tests).
  void eject();
  // Returns an ejected server (the health thread, after `eject`). False if it was not ejected.
  bool un_eject();
  void set_ejection_listener(EjectionListener* l) { ejection_listener_.store(l, std::memory_order_release); }
  uint64_t ejections() const { return ejections_.load(std::memory_order_relaxed); }

  // Active checks: the health thread records each result; the API and metrics read them.
  static constexpr size_t kCheckResults = 16;  // >= health::Reason's count (static_assert there)
  void record_check(const CheckReport& report);
  CheckReport last_check() const;
  // Checks that ended with result `r` (health::Reason as a number), since start.
  uint64_t checks(size_t r) const {
    return r < kCheckResults ? checks_[r].load(std::memory_order_relaxed) : 0;
  }
  // Health state changes (checking/up/down) since start.
  uint64_t transitions() const { return transitions_.load(std::memory_order_relaxed); }
  void count_transition() { transitions_.fetch_add(1, std::memory_order_relaxed); }

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
  uint32_t passive_threshold_ = 0;  // health.passive.consecutive_errors; 0 = off
  std::atomic<Health> health_{Health::kChecking};
  std::atomic<Admin> admin_{Admin::kNone};
  std::atomic<bool> ejected_{false};
  std::atomic<AgentState> agent_state_{AgentState::kNone};
  std::atomic<uint32_t> weight_;  // effective_weight(factors_locked()), kWeightScale units
  std::atomic<EjectionListener*> ejection_listener_{nullptr};
  // Cold: weight setters (API, slow start, agent) and check reports.
  WeightFactors factors_locked() const;
  // Recomputes weight_ from the factors; true if it changed. Caller holds cold_mu_.
  bool update_weight_locked();
  mutable std::mutex cold_mu_;
  uint32_t base_weight_;
  uint32_t ramp_permille_ = 1000;
  ReportedLoad reported_;
  CheckReport last_check_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(AgentResult::kCount)> agent_results_{};
  std::array<std::atomic<uint64_t>, kCheckResults> checks_{};
  std::atomic<uint64_t> transitions_{0};
  std::atomic<uint64_t> ejections_{0};
  struct alignas(64) Hot {
    std::atomic<int32_t> active{0};
    std::atomic<uint32_t> ewma_us{0};
    std::atomic<uint32_t> consecutive_errors{0};  // passive checks
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
