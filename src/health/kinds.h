// The check kinds' factories, for the registry (registry.cc) and tests. Internal to src/health.
// Start-up only (the thread that builds the HealthService).
#pragma once
#include <memory>

#include "health/check.h"

namespace fulcrum::health {

std::unique_ptr<Check> make_tcp_check(const upstream::Backend& backend, EventLoop& loop);
std::unique_ptr<Check> make_http_check(const upstream::Backend& backend, EventLoop& loop);
std::unique_ptr<Check> make_icmp_check(const upstream::Backend& backend, EventLoop& loop);
// Falls back to make_tcp_check, with one warning, where raw sockets are refused (no CAP_NET_RAW).
std::unique_ptr<Check> make_tcp_half_open_check(const upstream::Backend& backend, EventLoop& loop);
// Not a `health.check` word: `health.agent` runs beside whichever check is configured, on its own
// schedule (agent_check.cc). A passing outcome carries the reply line as its detail.
std::unique_ptr<Check> make_agent_check(const upstream::Backend& backend, EventLoop& loop);

}  // namespace fulcrum::health
