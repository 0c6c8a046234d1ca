// The admin listener (admin_server.h): request routing, bearer-token checks, the JSON API and the
// once-a-second sampling behind the dashboard's charts. Control loop (main thread) only; it reads
// the workers' counters through metrics::Registry and the servers' state through their atomics.
#include "admin/admin_server.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "admin/assets.h"
#include "admin/prometheus.h"
#include "admin/stats_history.h"
#include "core/log.h"
#include "http/simple_server.h"
#include "metrics/access_log.h"
#include "metrics/metrics.h"
#include "upstream/agent_report.h"
#include "upstream/server.h"

namespace fulcrum::admin {

using json = nlohmann::ordered_json;  // keys in the order written: name first, as people read
using http::SimpleRequest;
using http::SimpleResponse;

bool constant_time_equals(std::string_view a, std::string_view b) {
  // Every byte of the longer string is visited whatever the contents, so the time says nothing
  // about how many leading bytes matched (only the lengths, which a token's length is not secret
  // against: it is fixed by whoever made it).
  size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

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

SimpleResponse json_response(int status, const json& body) {
  auto r = SimpleResponse::json(status, body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

SimpleResponse error_response(int status, std::string message) {
  return json_response(status, json{{"error", std::move(message)}});
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

// ---- implementation --------------------------------------------------------------------------

class AdminServer::Impl {
 public:
  Impl(EventLoop& loop, Sources sources, ReloadHook reload)
      : loop_(loop),
        src_(std::move(sources)),
        reload_(std::move(reload)),
        sample_timer_(loop, [this] { sample(); }),
        started_(Clock::now()) {}

  Result<void> configure(const config::Admin& spec) {
    std::string token;
    if (!spec.token_file.empty()) {
      std::ifstream f(spec.token_file);
      if (!f) return Error{errno, "admin token_file " + spec.token_file + ": " + strerror(errno)};
      std::getline(f, token);
      while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
        token.pop_back();
      if (token.empty()) return Error{0, "admin token_file " + spec.token_file + ": the first line is empty"};
    }
    if (!server_ || !(spec.listen == listen_)) {
      auto next = std::make_unique<http::SimpleServer>(
          loop_, [this](const SimpleRequest& r, http::SimpleServer::Respond done) { done(handle(r)); });
      if (auto r = next->listen(spec.listen); !r)
        return Error{r.error().code, "admin listen " + spec.listen.to_string() + ": " + r.error().message +
                                         ": " + strerror(r.error().code)};
      if (server_) {
        // This may run inside a handler of the old server (POST /api/v1/reload): let it finish
        // its turn before it goes.
        auto old = std::shared_ptr<http::SimpleServer>(std::move(server_));
        loop_.post([old] { old->close(); });
      }
      server_ = std::move(next);
      listen_ = spec.listen;
      FULCRUM_LOG(kInfo, "admin: dashboard, API and metrics on http://%s/%s", listen_.to_string().c_str(),
                  token.empty() ? "" : " (API needs the bearer token)");
    }
    token_ = std::move(token);
    if (!sample_timer_.armed()) sample();
    return {};
  }

  SocketAddress local_address() const { return server_ ? server_->local_address() : SocketAddress(); }
  void set_reload(ReloadHook r) { reload_ = std::move(r); }
  void set_demo_hook(AdminServer::DemoHook h) { demo_ = std::move(h); }
  void set_stopping() { stopping_ = true; }

 private:
  // ---- routing -------------------------------------------------------------------------------

  SimpleResponse handle(const SimpleRequest& req) {
    const std::string& m = req.method;
    bool get = m == "GET" || m == "HEAD";
    if (req.path == "/healthz") {
      if (!get) return method_not_allowed("GET, HEAD");
      return stopping_ ? SimpleResponse::text(503, "stopping\n") : SimpleResponse::text(200, "OK\n");
    }
    if (req.path == "/metrics") {
      if (!get) return method_not_allowed("GET, HEAD");
      auto snap = src_.metrics->collect();
      auto r = SimpleResponse::text(
          200,
          render_prometheus(snap, *src_.backends, src_.access_log ? src_.access_log() : nullptr, uptime()));
      r.content_type = kPrometheusContentType;
      return r;
    }
    if (req.path.rfind("/api/", 0) == 0) {
      if (!authorized(req)) {
        auto r = error_response(401, token_.empty() ? "unauthorized" : "missing or wrong bearer token");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"fulcrum\"");
        return r;
      }
      return api(req);
    }
    // The dashboard's files: static code with no data in it, so no token (a browser cannot send
    // one on navigation); the data it shows comes from /api/, which asks for the token.
    std::string_view path = req.path == "/" ? std::string_view("/index.html") : std::string_view(req.path);
    if (const Asset* a = find_asset(path)) {
      if (!get) return method_not_allowed("GET, HEAD");
      SimpleResponse r;
      r.content_type = std::string(a->content_type);
      r.body = std::string(a->body);
      r.headers.emplace_back("Cache-Control", "no-cache");
      r.headers.emplace_back("X-Content-Type-Options", "nosniff");
      if (path == "/index.html") {
        r.headers.emplace_back(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'");
        r.headers.emplace_back("X-Frame-Options", "DENY");
      }
      return r;
    }
    return error_response(404, "no such page: " + req.path);
  }

  bool authorized(const SimpleRequest& req) const {
    if (token_.empty()) return true;
    std::string h = req.header("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (h.size() < kBearer.size()) return false;
    for (size_t i = 0; i < kBearer.size(); ++i)  // the scheme is case-insensitive (RFC 9110 11.1)
      if (std::tolower(static_cast<unsigned char>(h[i])) !=
          std::tolower(static_cast<unsigned char>(kBearer[i])))
        return false;
    std::string_view given = std::string_view(h).substr(kBearer.size());
    while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
    return constant_time_equals(given, token_);
  }

  static SimpleResponse method_not_allowed(const char* allow) {
    auto r = error_response(405, std::string("method not allowed; allowed: ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  }

  SimpleResponse api(const SimpleRequest& req) {
    auto parts = split_path(req.path);  // "api", "v1", ...
    if (parts.size() < 3 || parts[1] != "v1") return error_response(404, "no such API: " + req.path);
    const std::string& m = req.method;
    bool get = m == "GET" || m == "HEAD";
    const std::string& what = parts[2];
    if (what == "backends") {
      if (parts.size() == 3)
        return get ? json_response(200, backends_json()) : method_not_allowed("GET, HEAD");
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
      return json_response(200, json{{"ok", true},
                                     {"message", "demo app " + parts[3] +
                                                     (fail ? " now fails its health check"
                                                           : " passes its health check again")}});
    }
    if (what == "stats" && parts.size() == 3) {
      if (!get) return method_not_allowed("GET, HEAD");
      int64_t since = 0;
      if (std::string s = req.query_param("since"); !s.empty()) since = std::strtoll(s.c_str(), nullptr, 10);
      return json_response(200, stats_json(since));
    }
    return error_response(404, "no such API: " + req.path);
  }

  const upstream::Backend* find_backend(const std::string& name) const {
    for (auto& b : *src_.backends)
      if (b->name() == name) return b.get();
    return nullptr;
  }

  // ---- PATCH ---------------------------------------------------------------------------------

  SimpleResponse patch_server(const upstream::Backend& b, upstream::Server& s, const SimpleRequest& req) {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) return error_response(400, "the body is not valid JSON");
    if (!body.is_object())
      return error_response(400, "the body must be a JSON object such as {\"state\": \"drain\"}");
    if (body.empty()) return error_response(400, "nothing to change: give \"state\" and/or \"weight\"");
    std::optional<upstream::Admin> admin;
    std::optional<uint32_t> weight;
    for (auto& [key, value] : body.items()) {
      if (key == "state") {
        if (!value.is_string())
          return error_response(400, "\"state\" must be a string: drain, disabled or up");
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

  // ---- JSON views ----------------------------------------------------------------------------

  json server_json(const upstream::Backend& b, const upstream::Server& s) const {
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

  json backend_json(const upstream::Backend& b) const {
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

  json backends_json() const {
    json arr = json::array();
    for (auto& b : *src_.backends) arr.push_back(backend_json(*b));
    return json{{"backends", std::move(arr)}};
  }

  json stats_json(int64_t since_ms) const {
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

  // ---- sampling ------------------------------------------------------------------------------

  void sample() {
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

  // ---- state changes -------------------------------------------------------------------------

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

  // Why a server changed state between two samples, in words for the events list.
  static std::string health_reason(const upstream::Backend& b, const upstream::Server& s,
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

  void add_event(const upstream::Backend& b, const upstream::Server& s, upstream::State from,
                 upstream::State to, std::string reason) {
    events_.push_back({wall_ms(), b.name(), s.name(), upstream::state_name(from), upstream::state_name(to),
                       std::move(reason)});
    if (events_.size() > kEvents) events_.pop_front();
  }

  // An operator's change is recorded at once with who made it, and the next sample sees no change.
  void note_state(const upstream::Backend& b, const upstream::Server& s, upstream::State before,
                  std::string why) {
    upstream::State now = b.state_of(s);
    Track& t = tracks_[{b.name(), s.name()}];
    if (now != before) add_event(b, s, before, now, std::move(why));
    t.seen = true;
    t.state = now;
  }

  json events_json() const {
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

AdminServer::AdminServer(EventLoop& loop, Sources sources, ReloadHook reload)
    : impl_(std::make_unique<Impl>(loop, std::move(sources), std::move(reload))) {}
AdminServer::~AdminServer() = default;
Result<void> AdminServer::configure(const config::Admin& spec) { return impl_->configure(spec); }
void AdminServer::set_reload(ReloadHook reload) { impl_->set_reload(std::move(reload)); }
void AdminServer::set_demo_hook(DemoHook hook) { impl_->set_demo_hook(std::move(hook)); }
void AdminServer::set_stopping() { impl_->set_stopping(); }
SocketAddress AdminServer::local_address() const { return impl_->local_address(); }

}  // namespace fulcrum::admin
