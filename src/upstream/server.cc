#include "upstream/server.h"

#include <algorithm>

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
      weight_(spec.weight) {}

void Server::set_health(Health h) {
  if (health_.exchange(h, std::memory_order_acq_rel) != h) backend_->bump();
}

void Server::set_admin(Admin a) {
  if (admin_.exchange(a, std::memory_order_acq_rel) != a) backend_->bump();
}

void Server::set_weight(uint32_t w) {
  if (weight_.exchange(w, std::memory_order_acq_rel) != w) backend_->bump();
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

State Backend::state_of(const Server& s) const {
  if (s.admin() == Admin::kDisabled) return State::kDisabled;
  if (s.admin() == Admin::kDrain) return State::kDrain;
  if (s.health() == Health::kDown) return State::kDown;
  if (s.health() == Health::kChecking) return State::kChecking;
  if (s.backup()) {
    auto set = serving();
    if (std::find(set.begin(), set.end(), &s) == set.end()) return State::kStandby;
  }
  return State::kUp;
}

}  // namespace fulcrum::upstream
