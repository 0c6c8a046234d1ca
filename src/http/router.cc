#include "http/router.h"
#include "core/ascii.h"

#include <re2/re2.h>

namespace fulcrum::http {

struct Router::Compiled {
  const config::Route* route = nullptr;
  std::unique_ptr<re2::RE2> path_regex;
};

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Host without the port; IPv6 literals keep their brackets.
std::string_view host_only(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}
}  // namespace

bool find_header(std::span<const Header> headers, std::string_view name, std::string_view* value) {
  for (auto& h : headers)
    if (iequals(h.name, name)) {
      *value = h.value;
      return true;
    }
  return false;
}

bool find_query_param(std::string_view query, std::string_view name, std::string_view* value) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    auto eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) {
      *value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      return true;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

bool find_cookie(std::span<const Header> headers, std::string_view name, std::string_view* value) {
  for (auto& h : headers) {
    if (!iequals(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {  // RFC 6265 5.4: cookie-pair *( ";" SP cookie-pair )
      auto semi = rest.find(';');
      std::string_view pair = trim(rest.substr(0, semi));
      auto eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        *value = pair.substr(eq + 1);
        return true;
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return false;
}

Result<std::unique_ptr<Router>> Router::build(const config::Listener& listener) {
  auto router = std::unique_ptr<Router>(new Router());
  for (auto& r : listener.routes) {
    auto c = std::make_unique<Compiled>();
    c->route = &r;
    if (r.match && !r.match->path_regex.empty()) {
      re2::RE2::Options opts;
      opts.set_log_errors(false);
      c->path_regex = std::make_unique<re2::RE2>(r.match->path_regex, opts);
      if (!c->path_regex->ok())
        return Error{0, "bad path_regex '" + r.match->path_regex + "': " + c->path_regex->error()};
    }
    router->routes_.push_back(std::move(c));
  }
  return router;
}

Router::~Router() = default;

int Router::match(const RouteInput& in) const {
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Compiled& c = *routes_[i];
    if (!c.route->match) return static_cast<int>(i);
    const config::Match& m = *c.route->match;
    if (!m.host.empty() && !iequals(host_only(in.host), m.host)) continue;
    if (!m.path_prefix.empty() && in.path.substr(0, m.path_prefix.size()) != m.path_prefix) continue;
    if (c.path_regex && !re2::RE2::PartialMatch(re2::StringPiece(in.path.data(), in.path.size()), *c.path_regex))
      continue;
    if (!m.methods.empty()) {
      bool any = false;
      for (auto& meth : m.methods) any = any || meth == in.method;
      if (!any) continue;
    }
    bool ok = true;
    std::string_view v;
    for (auto& kv : m.headers) ok = ok && find_header(in.headers, kv.key, &v) && v == kv.value;
    for (auto& kv : m.query) ok = ok && find_query_param(in.query, kv.key, &v) && v == kv.value;
    for (auto& kv : m.cookies) ok = ok && find_cookie(in.headers, kv.key, &v) && v == kv.value;
    if (ok) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace fulcrum::http
