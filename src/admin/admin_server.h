// The admin listener (SPEC: Admin API): the dashboard at /, /healthz, Prometheus /metrics, and the
// JSON API to read backends, drain / disable / re-weight servers and reload the config. With a
// token file every call but /healthz, /metrics and the page's static files (which hold no data)
// needs "Authorization: Bearer <token>", compared in constant time. Front header of the admin
// module. Runs on the runtime's control loop (main thread); only that thread touches it.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/address.h"
#include "core/event_loop.h"
#include "core/result.h"

namespace fulcrum::upstream {
class Backend;
}
namespace fulcrum::metrics {
class Registry;
class AccessLog;
}  // namespace fulcrum::metrics

namespace fulcrum::admin {

// What the admin server reads. References to the runtime's own members: a reload may change the
// vector's contents (on the control thread), never the vector itself.
struct Sources {
  const std::vector<std::unique_ptr<upstream::Backend>>* backends = nullptr;
  const metrics::Registry* metrics = nullptr;
  // The access log in use, or null; a function because a reload may replace it.
  std::function<const metrics::AccessLog*()> access_log;
};

// POST /api/v1/reload: reloads the config as SIGHUP does; (true, summary) or (false, the
// FILE:LINE:COL error). Unset: the API answers 501.
using ReloadHook = std::function<std::pair<bool, std::string>()>;

class AdminServer {
 public:
  AdminServer(EventLoop& loop, Sources sources, ReloadHook reload = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Reads the token file (first line) and binds spec.listen. Call again after a reload: the token
  // is read again, and the listener moves if `listen` changed.
  Result<void> configure(const config::Admin& spec);
  void set_reload(ReloadHook reload);
  // `fulcrum demo` only: POST /api/v1/demo/{app}/fail|recover makes a demo application server
  // fail or pass its health check (the dashboard shows the buttons). Returns false for an
  // unknown app.
  using DemoHook = std::function<bool(const std::string& app, bool fail)>;
  void set_demo_hook(DemoHook hook);
  // Graceful stop: /healthz answers 503 from now on, so keepalived moves the address away.
  void set_stopping();
  SocketAddress local_address() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Constant-time equality of two strings (the time depends on the lengths only), for the token.
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace fulcrum::admin
