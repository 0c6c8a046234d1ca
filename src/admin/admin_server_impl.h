// AdminServer::Impl, the admin listener's one object, declared here so that its two halves can
// live in files of their own: admin_server.cc binds the listener and routes each request (bearer
// token, /healthz, /metrics, the dashboard's files); api.cc answers /api/v1/ and keeps the
// once-a-second samples and state-change events the API reports. Internal to src/admin. Control
// loop (main thread) only.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "admin/admin_server.h"
#include "admin/stats_history.h"
#include "core/event_loop.h"
#include "http/simple_server.h"
#include "upstream/server.h"

namespace fulcrum::admin {

using json = nlohmann::ordered_json;  // keys in the order written: name first, as people read
using http::SimpleRequest;
using http::SimpleResponse;

// `body` as the API's JSON answer (not cached), and {"error": message} as one.
SimpleResponse json_response(int status, const json& body);
SimpleResponse error_response(int status, std::string message);

class AdminServer::Impl {
 public:
  Impl(EventLoop& loop, Sources sources, ReloadHook reload);

  Result<void> configure(const config::Admin& spec);

  SocketAddress local_address() const { return server_ ? server_->local_address() : SocketAddress(); }
  void set_reload(ReloadHook r) { reload_ = std::move(r); }
  void set_demo_hook(AdminServer::DemoHook h) { demo_ = std::move(h); }
  void set_stopping() { stopping_ = true; }

 private:
  // ---- routing (admin_server.cc) ----------------------------------------------------------------

  SimpleResponse handle(const SimpleRequest& req);
  bool authorized(const SimpleRequest& req) const;
  static SimpleResponse method_not_allowed(const char* allow);

  // ---- the JSON API (api.cc) --------------------------------------------------------------------

  SimpleResponse api(const SimpleRequest& req);
  const upstream::Backend* find_backend(const std::string& name) const;
  SimpleResponse patch_server(const upstream::Backend& b, upstream::Server& s, const SimpleRequest& req);

  json server_json(const upstream::Backend& b, const upstream::Server& s) const;
  json backend_json(const upstream::Backend& b) const;
  json backends_json() const;
  json stats_json(int64_t since_ms) const;

  // ---- sampling and state changes (api.cc) ------------------------------------------------------

  struct Track {
    bool seen = false;
    upstream::State state = upstream::State::kChecking;
    std::string history;
  };
  struct Event {
    int64_t t_ms;
    std::string backend, server, from, to, reason;
  };
  static constexpr size_t kHistory = 120;  // seconds of per-server state kept for the page
  static constexpr size_t kEvents = 200;

  void sample();
  // Why a server changed state between two samples, in words for the events list.
  static std::string health_reason(const upstream::Backend& b, const upstream::Server& s,
                                   upstream::State from, upstream::State to);
  void add_event(const upstream::Backend& b, const upstream::Server& s, upstream::State from,
                 upstream::State to, std::string reason);
  // An operator's change is recorded at once with who made it, and the next sample sees no change.
  void note_state(const upstream::Backend& b, const upstream::Server& s, upstream::State before,
                  std::string why);
  json events_json() const;

  double uptime() const { return std::chrono::duration<double>(Clock::now() - started_).count(); }

  EventLoop& loop_;
  Sources src_;
  ReloadHook reload_;
  AdminServer::DemoHook demo_;
  std::unique_ptr<http::SimpleServer> server_;
  SocketAddress listen_;
  std::string token_;
  bool stopping_ = false;
  StatsHistory history_;
  std::map<std::pair<std::string, std::string>, Track> tracks_;
  std::deque<Event> events_;
  Timer sample_timer_;
  TimePoint started_;
};

}  // namespace fulcrum::admin
