// The admin listener (admin_server.h): binds it, reads the token file, and routes each request:
// /healthz, /metrics, the dashboard's files, and, with the bearer token checked, /api/ to the
// JSON API (api.cc). Control loop (main thread) only.
#include "admin/admin_server.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "admin/admin_server_impl.h"
#include "admin/assets.h"
#include "admin/prometheus.h"
#include "core/log.h"
#include "http/simple_server.h"
#include "metrics/access_log.h"
#include "metrics/metrics.h"

namespace fulcrum::admin {

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

SimpleResponse json_response(int status, const json& body) {
  auto r = SimpleResponse::json(status, body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

SimpleResponse error_response(int status, std::string message) {
  return json_response(status, json{{"error", std::move(message)}});
}

// ---- implementation -----------------------------------------------------------------------------

AdminServer::Impl::Impl(EventLoop& loop, Sources sources, ReloadHook reload)
    : loop_(loop),
      src_(std::move(sources)),
      reload_(std::move(reload)),
      sample_timer_(loop, [this] { sample(); }),
      started_(Clock::now()) {}

Result<void> AdminServer::Impl::configure(const config::Admin& spec) {
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

// ---- routing ------------------------------------------------------------------------------------

SimpleResponse AdminServer::Impl::handle(const SimpleRequest& req) {
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
      r.headers.emplace_back("Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                             "connect-src 'self'; frame-ancestors 'none'");
      r.headers.emplace_back("X-Frame-Options", "DENY");
    }
    return r;
  }
  return error_response(404, "no such page: " + req.path);
}

bool AdminServer::Impl::authorized(const SimpleRequest& req) const {
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

SimpleResponse AdminServer::Impl::method_not_allowed(const char* allow) {
  auto r = error_response(405, std::string("method not allowed; allowed: ") + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
}

AdminServer::AdminServer(EventLoop& loop, Sources sources, ReloadHook reload)
    : impl_(std::make_unique<Impl>(loop, std::move(sources), std::move(reload))) {}
AdminServer::~AdminServer() = default;
Result<void> AdminServer::configure(const config::Admin& spec) { return impl_->configure(spec); }
void AdminServer::set_reload(ReloadHook reload) { impl_->set_reload(std::move(reload)); }
void AdminServer::set_demo_hook(DemoHook hook) { impl_->set_demo_hook(std::move(hook)); }
void AdminServer::set_stopping() { impl_->set_stopping(); }
SocketAddress AdminServer::local_address() const { return impl_->local_address(); }

}  // namespace fulcrum::admin
