#include "upstream/server.h"

#include <algorithm>

#include "core/log.h"

namespace fulcrum::upstream {

const char* state_name(State s) {
  switch (s) {
    case State::kChecking: return "checking";
    case State::kUp: return "up";
    case State::kDown: return "down";
    case State::kDrain: return "drain";
    case State::kDisabled: return "disabled";
    case State::kStandby: return "standby";
  }
  return "?";
}

Server::Server(const config::Server& spec, size_t index, Backend* backend)
    : name_(spec.name),
      address_(spec.address),
      address_text_(spec.address_text),
      index_(index),
      backup_(spec.backup),
      configured_weight_(spec.weight),
      backend_(backend),
      weight_(upstream::effective_weight({.base = spec.weight})),
      base_weight_(spec.weight) {
  if (const auto& p = backend->spec().health.passive) passive_threshold_ = p->consecutive_errors;
}

void Server::set_health(Health h) {
  if (health_.exchange(h, std::memory_order_acq_rel) != h) backend_->bump();
}

void Server::set_admin(Admin a) {
  if (admin_.exchange(a, std::memory_order_acq_rel) != a) backend_->bump();
}

const char* agent_state_name(AgentState s) {
  switch (s) {
    case AgentState::kNone: return "none";
    case AgentState::kUp: return "up";
    case AgentState::kDrain: return "drain";
    case AgentState::kDown: return "down";
  }
  return "?";
}

const char* agent_result_name(AgentResult r) {
  switch (r) {
    case AgentResult::kOk: return "ok";
    case AgentResult::kMalformed: return "malformed";
    case AgentResult::kFailed: return "failed";
    case AgentResult::kCount: break;
  }
  return "?";
}

uint32_t Server::base_weight() const {
  std::lock_guard lock(cold_mu_);
  return base_weight_;
}

uint32_t Server::ramp() const {
  std::lock_guard lock(cold_mu_);
  return ramp_permille_;
}

WeightFactors Server::factors_locked() const {
  return {base_weight_, ramp_permille_, reported_.percent, reported_.load_permille};
}

bool Server::update_weight_locked() {
  uint32_t eff = upstream::effective_weight(factors_locked());
  return weight_.exchange(eff, std::memory_order_acq_rel) != eff;
}

// The lock orders the setters: without it the API, slow start and the agent could each compute
// from another's old factor and leave a stale effective weight.
void Server::set_weight(uint32_t w) {
  std::lock_guard lock(cold_mu_);
  base_weight_ = w;
  if (update_weight_locked()) backend_->bump();
}

void Server::set_ramp(uint32_t permille) {
  std::lock_guard lock(cold_mu_);
  ramp_permille_ = std::min<uint32_t>(permille, 1000);
  if (update_weight_locked()) backend_->bump();
}

void Server::apply_agent_report(const AgentReport& report) {
  agent_results_[static_cast<size_t>(AgentResult::kOk)].fetch_add(1, std::memory_order_relaxed);
  bool changed = false;
  {
    std::lock_guard lock(cold_mu_);
    ReportedLoad& r = reported_;
    r.valid = true;
    r.at = std::chrono::system_clock::now();
    r.last_error.clear();
    if (report.state) {
      r.state = *report.state;
      changed |= agent_state_.exchange(*report.state, std::memory_order_acq_rel) != *report.state;
    }
    if (report.percent) r.percent = std::min(*report.percent, kMaxAgentPercent);
    if (report.cpu_ppm) r.cpu_ppm = report.cpu_ppm;
    if (report.mem_ppm) r.mem_ppm = report.mem_ppm;
    if (report.cpu_ppm || report.mem_ppm) {
      uint32_t load = load_permille(r.cpu_ppm.value_or(0), r.mem_ppm.value_or(0));
      if (load_moved(r.load_permille, load)) r.load_permille = load;
    }
    changed |= update_weight_locked();
  }
  // One bump for the whole reply: a state and a weight change rebuild the balancers once.
  if (changed) backend_->bump();
}

void Server::record_agent_problem(AgentResult result, std::string detail) {
  if (result < AgentResult::kCount)
    agent_results_[static_cast<size_t>(result)].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(cold_mu_);
  reported_.last_error = std::move(detail);
  reported_.error_at = std::chrono::system_clock::now();
}

void Server::restore_reported_load(const ReportedLoad& load) {
  bool changed = false;
  {
    std::lock_guard lock(cold_mu_);
    reported_ = load;
    changed |= agent_state_.exchange(load.state, std::memory_order_acq_rel) != load.state;
    changed |= update_weight_locked();
  }
  if (changed) backend_->bump();
}

ReportedLoad Server::reported_load() const {
  std::lock_guard lock(cold_mu_);
  return reported_;
}

void Server::eject() {
  if (ejected_.exchange(true, std::memory_order_acq_rel)) return;
  ejections_.fetch_add(1, std::memory_order_relaxed);
  backend_->bump();
  uint32_t errors = hot_.consecutive_errors.load(std::memory_order_relaxed);
  const auto& passive = backend_->spec().health.passive;
  FULCRUM_LOG_LIMITED(
      kWarn, "backend %s server %s ejected for %lldms: %u consecutive errors on live traffic [PASSIVE]",
      backend_->name().c_str(), name_.c_str(), static_cast<long long>(passive ? passive->eject.count() : 0),
      errors);
  if (auto* l = ejection_listener_.load(std::memory_order_acquire)) l->on_ejected(*this);
}

bool Server::un_eject() {
  // Reset first: errors counted while it was out (requests already in flight) must not count
  // against its return.
  hot_.consecutive_errors.store(0, std::memory_order_relaxed);
  if (!ejected_.exchange(false, std::memory_order_acq_rel)) return false;
  backend_->bump();
  return true;
}

void Server::record_check(const CheckReport& report) {
  if (report.result < kCheckResults) checks_[report.result].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(cold_mu_);
  last_check_ = report;
}

CheckReport Server::last_check() const {
  std::lock_guard lock(cold_mu_);
  return last_check_;
}

void Server::record_time_us(uint32_t us) {
  if (us == 0) us = 1;
  // EWMA with alpha 1/8 (a sample's weight halves in about 5 samples). Workers race on the
  // read-modify-write; a lost sample only nudges an average, so no CAS loop on the hot path.
  uint32_t old = hot_.ewma_us.load(std::memory_order_relaxed);
  uint32_t next = old == 0 ? us : static_cast<uint32_t>((static_cast<uint64_t>(old) * 7 + us) / 8);
  if (next == 0) next = 1;
  hot_.ewma_us.store(next, std::memory_order_relaxed);
}

Backend::Backend(const config::Backend& spec) : spec_(spec) {
  servers_.reserve(spec_.servers.size());
  for (size_t i = 0; i < spec_.servers.size(); ++i) {
    servers_.push_back(std::make_unique<Server>(spec_.servers[i], i, this));
    // Without a health check a server is taken as up from the start.
    if (spec_.health.check == "none") servers_.back()->set_health(Health::kUp);
  }
}

Server* Backend::find(std::string_view name) const {
  for (auto& s : servers_)
    if (s->name() == name) return s.get();
  return nullptr;
}

std::vector<Server*> Backend::serving() const {
  std::vector<Server*> out;
  size_t missing = 0;
  for (auto& s : servers_) {
    if (s->backup()) continue;
    if (s->usable()) out.push_back(s.get());
    else ++missing;
  }
  for (auto& s : servers_) {
    if (missing == 0) break;
    if (!s->backup() || !s->usable()) continue;
    out.push_back(s.get());
    --missing;
  }
  return out;
}

// The operator's word first (an agent cannot undo it), then down from any source (check, passive
// ejection, the agent), then the agent's drain.
State Backend::state_of(const Server& s) const {
  if (s.admin() == Admin::kDisabled) return State::kDisabled;
  if (s.admin() == Admin::kDrain) return State::kDrain;
  AgentState agent = s.agent_state();
  if (s.health() == Health::kDown || s.ejected() || agent == AgentState::kDown) return State::kDown;
  if (agent == AgentState::kDrain) return State::kDrain;
  if (s.health() == Health::kChecking) return State::kChecking;
  if (s.backup()) {
    auto set = serving();
    if (std::find(set.begin(), set.end(), &s) == set.end()) return State::kStandby;
  }
  return State::kUp;
}

}  // namespace fulcrum::upstream
