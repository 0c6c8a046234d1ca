// Runtime: a running fulcrum. Owns the config snapshot, the shared upstream state (backends and
// servers), the worker threads (one event loop each, with their own listening sockets), and the
// control loop on the main thread, which takes signals and drives graceful stop.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "core/result.h"

namespace fulcrum::app {

class Runtime {
 public:
  // Binds every listener (one socket per worker) before anything starts, so a port in use is
  // reported at once.
  static Result<std::unique_ptr<Runtime>> create(std::shared_ptr<const config::Config> cfg);
  virtual ~Runtime() = default;
  // Runs until SIGTERM/SIGINT and the graceful stop; returns the process exit code.
  virtual int run() = 0;
  // `fulcrum demo`: lets the dashboard make a demo app fail (admin API /api/v1/demo/...).
  virtual void set_demo_hook(std::function<bool(const std::string& app, bool fail)> hook) = 0;
};

}  // namespace fulcrum::app
