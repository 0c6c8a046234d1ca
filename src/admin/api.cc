// The admin API under /api/v1/ (admin_server.h): backends and servers as JSON, PATCH to drain,
// disable or re-weight a server, reload, the demo's fail/recover switches, and the stats behind the
// dashboard's charts, with the once-a-second sampling and the state-change events they report.
// Control loop (main thread) only; it reads the workers' counters through metrics::Registry and the
// servers' state through their atomics.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>

#include "admin/admin_server_impl.h"
#include "core/log.h"
#include "metrics/metrics.h"
#include "upstream/agent_report.h"
#include "upstream/server.h"

namespace fulcrum::admin {
namespace {

std::string iso8601(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t sec = static_cast<time_t>(ms / 1000);
  tm tmv;
  gmtime_r(&sec, &tmv);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tmv);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double round3(double v) {
  return static_cast<double>(static_cast<int64_t>(v * 1000.0 + (v < 0 ? -0.5 : 0.5))) / 1000.0;
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.push_back(percent_decode(path.substr(i, j - i)));
    i = j;
  }
  return parts;
}

const char* health_name(upstream::Health h) {
  switch (h) {
    case upstream::Health::kChecking:
      return "checking";
    case upstream::Health::kUp:
      return "up";
    case upstream::Health::kDown:
      return "down";
  }
  return "?";
}

char state_char(upstream::State s) {
  switch (s) {
    case upstream::State::kChecking:
      return 'c';
    case upstream::State::kUp:
      return 'u';
    case upstream::State::kDown:
      return 'd';
    case upstream::State::kDrain:
      return 'r';
    case upstream::State::kDisabled:
      return 'x';
    case upstream::State::kStandby:
      return 's';
  }
  return 'c';
}

const char* admin_name(upstream::Admin a) {
  switch (a) {
    case upstream::Admin::kNone:
      return "none";
    case upstream::Admin::kDrain:
      return "drain";
    case upstream::Admin::kDisabled:
      return "disabled";
  }
  return "?";
}

}  // namespace

// ---- /api/v1/ -----------------------------------------------------------------------------------

SimpleResponse AdminServer::Impl::api(const SimpleRequest& req) {
  auto parts = split_path(req.path);  // "api", "v1", ...
  if (parts.size() < 3 || parts[1] != "v1") return error_response(404, "no such API: " + req.path);
  const std::string& m = req.method;
  bool get = m == "GET" || m == "HEAD";
  const std::string& what = parts[2];
  if (what == "backends") {
    if (parts.size() == 3) return get ? json_response(200, backends_json()) : method_not_allowed("GET, HEAD");
    const upstream::Backend* b = find_backend(parts[3]);
    if (b == nullptr) return error_response(404, "no backend named '" + parts[3] + "'");
    if (parts.size() == 4)
      return get ? json_response(200, backend_json(*b)) : method_not_allowed("GET, HEAD");
    if (parts[4] != "servers") return error_response(404, "no such API: " + req.path);
    if (parts.size() == 5) {
      if (!get) return method_not_allowed("GET, HEAD");
      return json_response(200, backend_json(*b)["servers"]);
    }
    if (parts.size() != 6) return error_response(404, "no such API: " + req.path);
    upstream::Server* s = b->find(parts[5]);
    if (s == nullptr)
      return error_response(404, "backend '" + b->name() + "' has no server named '" + parts[5] + "'");
    if (get) return json_response(200, server_json(*b, *s));
    if (m == "PATCH" || m == "PUT") return patch_server(*b, *s, req);
    return method_not_allowed("GET, HEAD, PATCH");
  }
  if (what == "reload" && parts.size() == 3) {
    if (m != "POST") return method_not_allowed("POST");
    if (!reload_) return error_response(501, "reloading is not available in this build");
    auto [ok, message] = reload_();
    return json_response(ok ? 200 : 400, json{{"ok", ok}, {ok ? "message" : "error", message}});
  }
  if (what == "demo" && demo_) {
    if (parts.size() != 5 || (parts[4] != "fail" && parts[4] != "recover"))
      return error_response(404, "no such API: " + req.path);
    if (m != "POST") return method_not_allowed("POST");
    bool fail = parts[4] == "fail";
    if (!demo_(parts[3], fail)) return error_response(404, "no demo app named '" + parts[3] + "'");
    return json_response(
        200,
        json{{"ok", true},
             {"message", "demo app " + parts[3] +
                             (fail ? " now fails its health check" : " passes its health check again")}});
  }
  if (what == "stats" && parts.size() == 3) {
    if (!get) return method_not_allowed("GET, HEAD");
    int64_t since = 0;
    if (std::string s = req.query_param("since"); !s.empty()) since = std::strtoll(s.c_str(), nullptr, 10);
    return json_response(200, stats_json(since));
  }
  return error_response(404, "no such API: " + req.path);
}

const upstream::Backend* AdminServer::Impl::find_backend(const std::string& name) const {
  for (auto& b : *src_.backends)
    if (b->name() == name) return b.get();
  return nullptr;
}

// ---- PATCH --------------------------------------------------------------------------------------

SimpleResponse AdminServer::Impl::patch_server(const upstream::Backend& b, upstream::Server& s,
                                               const SimpleRequest& req) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) return error_response(400, "the body is not valid JSON");
  if (!body.is_object())
    return error_response(400, "the body must be a JSON object such as {\"state\": \"drain\"}");
  if (body.empty()) return error_response(400, "nothing to change: give \"state\" and/or \"weight\"");
  std::optional<upstream::Admin> admin;
  std::optional<uint32_t> weight;
  for (auto& [key, value] : body.items()) {
    if (key == "state") {
      if (!value.is_string()) return error_response(400, "\"state\" must be a string: drain, disabled or up");
      std::string v = value.get<std::string>();
      if (v == "drain")
        admin = upstream::Admin::kDrain;
      else if (v == "disabled")
        admin = upstream::Admin::kDisabled;
      else if (v == "up")
        admin = upstream::Admin::kNone;
      else
        return error_response(400, "unknown state '" + v + "': expected drain, disabled or up");
    } else if (key == "weight") {
      // Same range as the config's weight (0-256); 0 takes no new traffic, like drain.
      if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 256)
        return error_response(400, "\"weight\" must be an integer from 0 to 256");
      weight = static_cast<uint32_t>(value.get<int64_t>());
    } else {
      return error_response(400, "unknown field '" + key + "': expected state and/or weight");
    }
  }
  // Validated whole before anything changes, so a bad request changes nothing.
  std::string peer = req.peer.to_string();
  upstream::State before = b.state_of(s);
  if (admin && *admin != s.admin()) {
    FULCRUM_LOG(kInfo, "admin API (%s): backend %s server %s: %s -> %s", peer.c_str(), b.name().c_str(),
                s.name().c_str(), admin_name(s.admin()), admin_name(*admin));
    s.set_admin(*admin);
  }
  if (weight && *weight != s.base_weight()) {
    FULCRUM_LOG(kInfo, "admin API (%s): backend %s server %s: weight %u -> %u", peer.c_str(),
                b.name().c_str(), s.name().c_str(), s.base_weight(), *weight);
    s.set_weight(*weight);
  }
  note_state(b, s, before, "admin API (" + req.peer.ip_string() + ")");
  return json_response(200, server_json(b, s));
}

// ---- JSON views ---------------------------------------------------------------------------------

json AdminServer::Impl::server_json(const upstream::Backend& b, const upstream::Server& s) const {
  json j;
  j["name"] = s.name();
  j["address"] = s.address_text();
  j["state"] = upstream::state_name(b.state_of(s));
  j["health"] = health_name(s.health());
  j["admin"] = admin_name(s.admin());
  j["backup"] = s.backup();
  j["ejected"] = s.ejected();
  j["weight"] = s.base_weight();
  j["configured_weight"] = s.configured_weight();
  j["active"] = s.active();
  j["requests"] = s.requests();
  j["failures"] = s.failures();
  j["ewma_ms"] = round3(static_cast<double>(s.ewma_us()) / 1000.0);
  upstream::CheckReport rep = s.last_check();
  if (rep.valid) {
    j["last_check"] = {{"result", rep.passed ? "pass" : "fail"},
                       {"code", rep.code},
                       {"reason", rep.detail.empty() ? rep.code : rep.detail},
                       {"at", iso8601(rep.at)},
                       {"duration_ms", round3(rep.duration_us / 1000.0)},
                       {"consecutive", rep.consecutive}};
  } else {
    j["last_check"] = nullptr;
  }
  // Issue 11: what the server's agent reports, and the weight balancers use after it and
  // slow start (config units, fractional: 2.7 is weight 3 at 90%).
  upstream::ReportedLoad load = s.reported_load();
  if (load.valid || !load.last_error.empty()) {
    auto ppm = [](const std::optional<uint32_t>& v) { return v ? json(round3(*v / 1e6)) : json(nullptr); };
    j["reported_load"] = {{"state", upstream::agent_state_name(load.state)},
                          {"cpu", ppm(load.cpu_ppm)},
                          {"mem", ppm(load.mem_ppm)},
                          {"percent", load.percent},
                          {"load_factor", round3(load.load_permille / 1000.0)},
                          {"at", load.valid ? json(iso8601(load.at)) : json(nullptr)},
                          {"error", load.last_error.empty() ? json(nullptr) : json(load.last_error)}};
  } else {
    j["reported_load"] = nullptr;
  }
  j["effective_weight"] = round3(s.effective_weight());
  auto r = history_.server(b.name(), s.name());
  j["rps"] = round3(r.rps);
  j["p50_ms"] = r.has_latency ? json(round3(r.p50_ms)) : json(nullptr);
  j["p99_ms"] = r.has_latency ? json(round3(r.p99_ms)) : json(nullptr);
  // One letter a second, oldest first: c(hecking) u(p) d(own) (d)r(ain) (disabled)x s(tandby).
  auto t = tracks_.find({b.name(), s.name()});
  j["history"] = t == tracks_.end() ? std::string() : t->second.history;
  return j;
}

json AdminServer::Impl::backend_json(const upstream::Backend& b) const {
  const auto& spec = b.spec();
  json servers = json::array();
  size_t up = 0;
  for (auto& s : b.servers()) {
    servers.push_back(server_json(b, *s));
    if (b.state_of(*s) == upstream::State::kUp) ++up;
  }
  auto r = history_.backend(b.name());
  return json{{"name", b.name()},
              {"balance", spec.balance},
              {"health_check", spec.health.check},
              {"sticky", spec.sticky ? json(spec.sticky->cookie) : json(nullptr)},
              {"servers_up", up},
              {"rps", round3(r.rps)},
              {"err_rps", round3(r.err_rps)},
              {"p50_ms", r.has_latency ? json(round3(r.p50_ms)) : json(nullptr)},
              {"p99_ms", r.has_latency ? json(round3(r.p99_ms)) : json(nullptr)},
              {"servers", std::move(servers)}};
}

json AdminServer::Impl::backends_json() const {
  json arr = json::array();
  for (auto& b : *src_.backends) arr.push_back(backend_json(*b));
  return json{{"backends", std::move(arr)}};
}

json AdminServer::Impl::stats_json(int64_t since_ms) const {
  json points = json::array();
  for (auto& p : history_.points()) {
    if (p.t_ms <= since_ms) continue;
    json per = json::object();
    for (auto& [name, rps] : p.backend_rps) per[name] = round3(rps);
    points.push_back(json{{"t", p.t_ms},
                          {"rps", round3(p.rps)},
                          {"err_rps", round3(p.err_rps)},
                          {"p50_ms", round3(p.p50_ms)},
                          {"p99_ms", round3(p.p99_ms)},
                          {"active", p.active},
                          {"backends", std::move(per)}});
  }
  auto snap = src_.metrics->collect();
  json listeners = json::array();
  for (auto& l : snap.listeners) {
    uint64_t refused = 0;
    for (uint64_t n : l.refusals) refused += n;
    listeners.push_back(json{{"name", l.name},
                             {"protocol", l.tcp ? "tcp" : "http"},
                             {"active", l.active},
                             {"accepted", l.accepted},
                             {"refused", refused}});
  }
  auto t = history_.total();
  return json{{"now", wall_ms()},
              {"version", FULCRUM_VERSION},
              {"uptime_s", round3(uptime())},
              {"stopping", stopping_},
              {"demo", static_cast<bool>(demo_)},
              {"interval_ms", 1000},
              {"total",
               {{"rps", round3(t.rps)},
                {"err_rps", round3(t.err_rps)},
                {"p50_ms", t.has_latency ? json(round3(t.p50_ms)) : json(nullptr)},
                {"p99_ms", t.has_latency ? json(round3(t.p99_ms)) : json(nullptr)}}},
              {"points", std::move(points)},
              {"events", events_json()},
              {"listeners", std::move(listeners)},
              {"backends", backends_json()["backends"]}};
}

// ---- sampling -----------------------------------------------------------------------------------

void AdminServer::Impl::sample() {
  auto mono = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  history_.sample(src_.metrics->collect(), mono, wall_ms());
  for (auto& b : *src_.backends) {
    for (auto& s : b->servers()) {
      upstream::State now = b->state_of(*s);
      Track& t = tracks_[{b->name(), s->name()}];
      if (t.seen && t.state != now) add_event(*b, *s, t.state, now, health_reason(*b, *s, t.state, now));
      t.seen = true;
      t.state = now;
      t.history += state_char(now);
      if (t.history.size() > kHistory) t.history.erase(0, t.history.size() - kHistory);
    }
  }
  sample_timer_.arm(Millis(1000));
}

// ---- state changes ------------------------------------------------------------------------------

std::string AdminServer::Impl::health_reason(const upstream::Backend& b, const upstream::Server& s,
                                             upstream::State from, upstream::State to) {
  if (s.ejected() && to != upstream::State::kUp) return "ejected: errors on live traffic";
  if (to == upstream::State::kStandby) return "spare back to standby";
  if (from == upstream::State::kStandby) return "spare stands in for a primary";
  upstream::CheckReport rep = s.last_check();
  if (rep.valid)
    return "health check: " + (rep.detail.empty() ? rep.code : rep.detail) + " [" + rep.code + "]";
  (void)b;
  return {};
}

void AdminServer::Impl::add_event(const upstream::Backend& b, const upstream::Server& s, upstream::State from,
                                  upstream::State to, std::string reason) {
  events_.push_back({wall_ms(), b.name(), s.name(), upstream::state_name(from), upstream::state_name(to),
                     std::move(reason)});
  if (events_.size() > kEvents) events_.pop_front();
}

void AdminServer::Impl::note_state(const upstream::Backend& b, const upstream::Server& s,
                                   upstream::State before, std::string why) {
  upstream::State now = b.state_of(s);
  Track& t = tracks_[{b.name(), s.name()}];
  if (now != before) add_event(b, s, before, now, std::move(why));
  t.seen = true;
  t.state = now;
}

json AdminServer::Impl::events_json() const {
  json arr = json::array();
  size_t skip = events_.size() > 50 ? events_.size() - 50 : 0;
  for (size_t i = skip; i < events_.size(); ++i) {
    const Event& e = events_[i];
    arr.push_back(json{{"t", e.t_ms},
                       {"backend", e.backend},
                       {"server", e.server},
                       {"from", e.from},
                       {"to", e.to},
                       {"reason", e.reason}});
  }
  return arr;
}

}  // namespace fulcrum::admin
