// HealthService: active checks, passive ejection and slow start for every backend, on a thread
// and event loop of its own, so a check never blocks a worker. It writes what it learns into
// upstream::Server (health, ejection, weight ramp, last check), whose setters bump the backend's
// generation so that workers rebuild their balancers. Front header of the health module.
// start() and stop() belong to the thread that owns the service; the rest runs on its thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "health/check.h"

namespace fulcrum::health {

struct ServiceOptions {
  // Builds the check of a backend. Empty: the registry's kind for `health.check`. Tests use this
  // to script outcomes.
  std::function<std::unique_ptr<Check>(const upstream::Backend&, EventLoop&)> make_check;
  uint64_t seed = 0;  // for the jitter of check times; 0 = random
};

class HealthService {
 public:
  // Builds the checks (a check kind that cannot work here says so now: tcp_half_open without
  // CAP_NET_RAW falls back to tcp). The backends must outlive the service.
  explicit HealthService(std::vector<upstream::Backend*> backends, ServiceOptions options = {});
  // Stops. Destroy only after the workers have stopped: they reach the service through
  // Server::report_outcome when they eject a server.
  ~HealthService();
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // Schedules every server's first check at once (spread over a few tens of milliseconds) and
  // starts the thread. Without checks, passive ejection or slow start anywhere, no thread starts.
  void start();
  // Stops the thread and joins it; checks in flight are abandoned. Idempotent.
  void stop();
  bool has_work() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fulcrum::health
