// RFC 9111 rules of a shared cache, as pure functions of parsed heads: Cache-Control directives,
// HTTP dates, Vary lists, whether a response may be stored and for how long, and what a request
// asks of the cache. No I/O, no allocation except where a signature says std::string; any thread.
//
// Decisions where RFC 9111 leaves a choice (SPEC: Caching):
//  - No heuristic freshness (4.2.2): a response without max-age / s-maxage / Expires lives
//    `default_ttl`, and with default_ttl 0 it is not stored.
//  - An explicit lifetime of 0 (max-age=0, no-cache, an Expires not after Date, an invalid
//    Expires) is stored only when it has a validator: every use then revalidates it (a 304 is
//    cheaper than the body), and without a validator it could never be used.
//  - Set-Cookie: not stored unless the response is `public` with explicit freshness; then the
//    stored copy drops Set-Cookie (one client's cookie must not be handed to every client).
//  - Authorization (3.5): stored and served only if the response has public, s-maxage or
//    must-revalidate.
//  - Status codes: those RFC 9110 15.1 calls heuristically cacheable (200 203 204 300 301 308 404
//    405 410 414 501); 206 is not stored (no range support in the cache).
//  - Only GET responses are stored; HEAD is answered from a stored GET response.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "http/h1_parser.h"

namespace fulcrum::cache {

// Directives of RFC 9111 5.2, from every Cache-Control field of a message. Unknown directives are
// ignored (5.2.3); a malformed delta-seconds makes the directive absent, except that max-age and
// s-maxage then count as 0 (4.2.1: an invalid freshness value means stale).
struct CacheControl {
  bool no_store = false;
  bool no_cache = false;  // also `no-cache="field"`: we do not store partial heads, so the same
  bool private_ = false;  // also `private="field"`: as a shared cache, not stored at all
  bool public_ = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool only_if_cached = false;
  std::optional<int64_t> max_age;   // seconds
  std::optional<int64_t> s_maxage;  // seconds
  std::optional<int64_t> min_fresh;
};

// Adds the directives of one field value ("max-age=60, public") to *cc.
void parse_cache_control(std::string_view value, CacheControl* cc);
// All Cache-Control fields of a head.
CacheControl cache_control(std::span<const http::Header> fields);

// RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms. Seconds since the
// epoch, or nothing when the text is not a date.
std::optional<int64_t> parse_http_date(std::string_view text);
// IMF-fixdate into buf (at least 30 bytes); returns the length (29).
size_t format_http_date(int64_t epoch_seconds, char* buf);

// Calls fn(name) for each field name of a Vary value; returns false (stopping) if the list holds
// "*" (4.1: never matches). Empty elements are skipped.
template <typename Fn>
bool for_each_vary(std::string_view value, Fn&& fn);
// A delta-seconds (RFC 9111 1.2.2): digits only; values past 2^31 are capped there.
std::optional<int64_t> parse_delta_seconds(std::string_view s);

// What a request asks of the cache (RFC 9111 5.2.1, 5.4 Pragma; 3.5 Authorization).
struct RequestPolicy {
  bool cacheable_method = false;  // GET or HEAD
  bool bypass = false;            // no-store, Range, or an unsupported method: not looked up
  bool revalidate = false;        // no-cache, max-age=0, Pragma: no-cache: no fresh hit
  bool authorization = false;
  bool conditional = false;     // If-None-Match or If-Modified-Since
  bool only_if_cached = false;  // 5.2.1.7: a 504 rather than going upstream
};
RequestPolicy request_policy(const http::RequestHead& req);

// Whether and for how long a response may be stored.
struct StoreDecision {
  bool store = false;
  const char* reason = "";  // why not, for logs and tests
  int64_t lifetime_ms = 0;  // freshness lifetime (4.2.1)
  bool must_revalidate = false;
  bool auth_ok = false;  // may be served to requests with Authorization
  bool strip_set_cookie = false;
};
// For a response to a GET. `req_authorization`: the request carried Authorization. `now_s`: when
// the response arrived (epoch seconds), for Expires without Date.
StoreDecision store_decision(bool req_authorization, const http::ResponseHead& resp, int64_t default_ttl_ms,
                             int64_t now_s);

bool cacheable_status(int status);

// RFC 9110 13.1.2: If-None-Match against a stored entity-tag, weak comparison ("*" matches any).
bool etag_list_matches(std::string_view if_none_match, std::string_view etag);

// ---- template definitions --------------------------------------------------------------------

template <typename Fn>
bool for_each_vary(std::string_view value, Fn&& fn) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.empty()) continue;
    if (item == "*") return false;
    fn(item);
  }
  return true;
}

}  // namespace fulcrum::cache
