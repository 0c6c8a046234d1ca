// The router: a listener's routes compiled once per config (RE2 patterns included) and matched
// in order, first match wins (SPEC: listeners/routes). Built on the control thread at load time,
// then read by every worker without locks (RE2 matching is thread-safe).
#pragma once
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/ascii.h"
#include "core/result.h"
#include "http/h1_parser.h"

namespace re2 {
class RE2;
}

namespace fulcrum::http {

// What routing looks at, as views into the request.
struct RouteInput {
  std::string_view method;
  std::string_view host;   // Host header (or absolute-form authority), port and case as received
  std::string_view path;   // target up to '?'
  std::string_view query;  // after '?', without it
  std::span<const Header> headers;
};

// Case-insensitive ASCII comparison (header names, host names).
using ascii::iequals;
// The first value of a header, or nullptr-like empty with found=false.
bool find_header(std::span<const Header> headers, std::string_view name, std::string_view* value);
// A query parameter's raw value, or false.
bool find_query_param(std::string_view query, std::string_view name, std::string_view* value);
// A cookie's value from the Cookie headers, or false.
bool find_cookie(std::span<const Header> headers, std::string_view name, std::string_view* value);

class Router {
 public:
  // Compiles every route's regular expressions; an invalid pattern is a config error.
  static Result<std::unique_ptr<Router>> build(const config::Listener& listener);
  ~Router();
  // The index of the first matching route in listener.routes, or -1 (404).
  int match(const RouteInput& in) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> routes_;
};

}  // namespace fulcrum::http
