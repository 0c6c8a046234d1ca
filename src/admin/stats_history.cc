// StatsHistory (stats_history.h): per-second points and windowed rates from counter snapshots.
// Control thread only.
#include "admin/stats_history.h"

#include <algorithm>

namespace fulcrum::admin {

void StatsHistory::Cum::add(const metrics::SlotTotals& s) {
  count += s.count;
  errors += s.codes[4];
  if (s.tcp) return;  // a connection's lifetime is not a request's latency
  http += s.count;
  for (size_t i = 0; i < metrics::kBuckets; ++i) buckets[i] += s.buckets[i];
}

StatsHistory::Rate StatsHistory::rate(const Cum* newer, const Cum* older, double seconds) {
  Rate r;
  if (newer == nullptr || seconds <= 0) return r;
  static const Cum kZero;
  if (older == nullptr) older = &kZero;  // a series that appeared within the window
  auto delta = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  r.rps = static_cast<double>(delta(newer->count, older->count)) / seconds;
  r.err_rps = static_cast<double>(delta(newer->errors, older->errors)) / seconds;
  std::array<uint64_t, metrics::kBuckets> d{};
  uint64_t n = 0;
  for (size_t i = 0; i < metrics::kBuckets; ++i) n += d[i] = delta(newer->buckets[i], older->buckets[i]);
  if (n > 0) {
    r.has_latency = true;
    r.p50_ms = metrics::quantile(d, 0.50) * 1000.0;
    r.p99_ms = metrics::quantile(d, 0.99) * 1000.0;
  }
  return r;
}

void StatsHistory::sample(const metrics::Snapshot& snap, double mono_s, int64_t wall_ms) {
  Sample s;
  s.mono_s = mono_s;
  for (auto& slot : snap.slots) {
    s.total.add(slot);
    if (!slot.backend.empty()) s.backends[slot.backend].add(slot);
    if (!slot.server.empty()) s.servers[{slot.backend, slot.server}].add(slot);
  }
  uint64_t active = 0;
  for (auto& l : snap.listeners) active += l.active;

  if (!samples_.empty()) {
    const Sample& prev = samples_.back();
    double dt = mono_s - prev.mono_s;
    Point p;
    p.t_ms = wall_ms;
    p.active = active;
    Rate r = rate(&s.total, &prev.total, dt);
    p.rps = r.rps;
    p.err_rps = r.err_rps;
    p.p50_ms = r.p50_ms;
    p.p99_ms = r.p99_ms;
    for (auto& [name, cum] : s.backends) {
      auto it = prev.backends.find(name);
      p.backend_rps.emplace_back(name, rate(&cum, it == prev.backends.end() ? nullptr : &it->second, dt).rps);
    }
    points_.push_back(std::move(p));
    if (points_.size() > kKeepPoints) points_.pop_front();
  }
  samples_.push_back(std::move(s));
  if (samples_.size() > kWindow + 1) samples_.pop_front();
}

StatsHistory::Rate StatsHistory::server(const std::string& backend, const std::string& server) const {
  if (samples_.size() < 2) return {};
  auto find = [&](const Sample& s) -> const Cum* {
    auto it = s.servers.find({backend, server});
    return it == s.servers.end() ? nullptr : &it->second;
  };
  return rate(find(samples_.back()), find(samples_.front()),
              samples_.back().mono_s - samples_.front().mono_s);
}

StatsHistory::Rate StatsHistory::backend(const std::string& backend) const {
  if (samples_.size() < 2) return {};
  auto find = [&](const Sample& s) -> const Cum* {
    auto it = s.backends.find(backend);
    return it == s.backends.end() ? nullptr : &it->second;
  };
  return rate(find(samples_.back()), find(samples_.front()),
              samples_.back().mono_s - samples_.front().mono_s);
}

StatsHistory::Rate StatsHistory::total() const {
  if (samples_.size() < 2) return {};
  return rate(&samples_.back().total, &samples_.front().total,
              samples_.back().mono_s - samples_.front().mono_s);
}

}  // namespace fulcrum::admin
