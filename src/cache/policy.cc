// RFC 9111 parsing and decisions (policy.h). Pure functions; any thread.
#include "cache/policy.h"
#include "core/ascii.h"

#include <algorithm>
#include <cstdio>

namespace fulcrum::cache {
namespace {

using ascii::iequals;

using http::Header;
using http::HeaderToken;


std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int month_of(std::string_view s) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (s == kMonths[i]) return i + 1;
  return 0;
}

// Fixed-width digits at s[at..at+n); -1 if any is not a digit.
int digits(std::string_view s, size_t at, size_t n) {
  if (at + n > s.size()) return -1;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// "HH:MM:SS" at s[at]; seconds of the day or -1.
int64_t time_of_day(std::string_view s, size_t at) {
  int h = digits(s, at, 2), m = digits(s, at + 3, 2), sec = digits(s, at + 6, 2);
  if (h < 0 || m < 0 || sec < 0 || at + 8 > s.size() || s[at + 2] != ':' || s[at + 5] != ':') return -1;
  if (h > 23 || m > 59 || sec > 60) return -1;
  return h * 3600 + m * 60 + std::min(sec, 59);  // a leap second counts as :59 (no day roll-over)
}

std::optional<int64_t> make_time(int64_t year, int month, int day, int64_t tod) {
  if (month == 0 || day < 1 || day > 31 || tod < 0 || year < 1900 || year > 9999) return std::nullopt;
  return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 + tod;
}

}  // namespace

std::optional<int64_t> parse_delta_seconds(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);  // tolerated
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
    if (v > 2147483648LL) v = 2147483648LL;  // RFC 9111 1.2.2: cap at 2^31
  }
  return v;
}

void parse_cache_control(std::string_view value, CacheControl* cc) {
  // A list of `token [ "=" ( token / quoted-string ) ]`; a quoted string may hold commas.
  size_t i = 0;
  while (i < value.size()) {
    size_t start = i;
    while (i < value.size() && value[i] != ',' && value[i] != '=') ++i;
    std::string_view name = trim(value.substr(start, i - start));
    std::string_view arg;
    bool has_arg = false;
    if (i < value.size() && value[i] == '=') {
      has_arg = true;
      ++i;
      while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
      size_t astart = i;
      if (i < value.size() && value[i] == '"') {
        ++i;
        while (i < value.size() && value[i] != '"') i += value[i] == '\\' ? 2 : 1;
        if (i < value.size()) ++i;
        arg = value.substr(astart, std::min(i, value.size()) - astart);
      }
      while (i < value.size() && value[i] != ',') ++i;
      if (arg.empty()) arg = trim(value.substr(astart, i - astart));
    }
    if (i < value.size()) ++i;  // the comma
    if (name.empty()) continue;
    if (iequals(name, "no-store"))
      cc->no_store = true;
    else if (iequals(name, "no-cache"))
      cc->no_cache = true;
    else if (iequals(name, "private"))
      cc->private_ = true;
    else if (iequals(name, "public"))
      cc->public_ = true;
    else if (iequals(name, "must-revalidate"))
      cc->must_revalidate = true;
    else if (iequals(name, "proxy-revalidate"))
      cc->proxy_revalidate = true;
    else if (iequals(name, "only-if-cached"))
      cc->only_if_cached = true;
    else if (iequals(name, "max-age")) {
      // 4.2.1: an invalid value means stale. Repeated values: the smallest (most restrictive).
      int64_t v = has_arg ? parse_delta_seconds(arg).value_or(0) : 0;
      cc->max_age = cc->max_age ? std::min(*cc->max_age, v) : v;
    } else if (iequals(name, "s-maxage")) {
      int64_t v = has_arg ? parse_delta_seconds(arg).value_or(0) : 0;
      cc->s_maxage = cc->s_maxage ? std::min(*cc->s_maxage, v) : v;
    } else if (iequals(name, "min-fresh")) {
      if (auto v = has_arg ? parse_delta_seconds(arg) : std::nullopt) cc->min_fresh = *v;
    }
  }
}

CacheControl cache_control(std::span<const Header> fields) {
  CacheControl cc;
  for (const Header& h : fields)
    if (h.token == HeaderToken::kCacheControl) parse_cache_control(h.value, &cc);
  return cc;
}

std::optional<int64_t> parse_http_date(std::string_view s) {
  s = trim(s);
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes).
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s[25] == ' ' && s.substr(26) == "GMT") {
    int day = digits(s, 5, 2), year = digits(s, 12, 4);
    if (day < 0 || year < 0) return std::nullopt;
    return make_time(year, month_of(s.substr(8, 3)), day, time_of_day(s, 17));
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT".
  if (auto comma = s.find(", "); comma != std::string_view::npos && comma >= 6 && s.size() == comma + 24) {
    std::string_view r = s.substr(comma + 2);
    if (r[2] != '-' || r[6] != '-' || r[9] != ' ' || r[18] != ' ' || r.substr(19) != "GMT")
      return std::nullopt;
    int day = digits(r, 0, 2), yy = digits(r, 7, 2);
    if (day < 0 || yy < 0) return std::nullopt;
    // RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past century.
    int year = yy < 70 ? 2000 + yy : 1900 + yy;
    return make_time(year, month_of(r.substr(3, 3)), day, time_of_day(r, 10));
  }
  // asctime: "Sun Nov  6 08:49:37 1994".
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    int day = s[8] == ' ' ? digits(s, 9, 1) : digits(s, 8, 2), year = digits(s, 20, 4);
    if (day < 0 || year < 0) return std::nullopt;
    return make_time(year, month_of(s.substr(4, 3)), day, time_of_day(s, 11));
  }
  return std::nullopt;
}

size_t format_http_date(int64_t t, char* buf) {
  static constexpr const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  int64_t tod = t - days * 86400;
  // civil_from_days
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  int n = std::snprintf(buf, 30, "%s, %02u %s %04lld %02d:%02d:%02d GMT", kDays[((days % 7) + 7) % 7], d,
                        kMonths[m - 1], static_cast<long long>(y), static_cast<int>(tod / 3600),
                        static_cast<int>(tod / 60 % 60), static_cast<int>(tod % 60));
  return n > 0 ? static_cast<size_t>(n) : 0;
}

RequestPolicy request_policy(const http::RequestHead& req) {
  RequestPolicy p;
  p.cacheable_method = req.method == http::Method::kGet || req.method == http::Method::kHead;
  bool has_cc = false, pragma_no_cache = false;
  CacheControl cc;
  for (const Header& h : req.headers) {
    switch (h.token) {
      case HeaderToken::kCacheControl:
        has_cc = true;
        parse_cache_control(h.value, &cc);
        break;
      case HeaderToken::kPragma:
        for_each_vary(h.value, [&](std::string_view item) { pragma_no_cache |= iequals(item, "no-cache"); });
        break;
      case HeaderToken::kAuthorization:
        p.authorization = true;
        break;
      case HeaderToken::kRange:
        p.bypass = true;
        break;  // no range support: straight through
      case HeaderToken::kIfNoneMatch:
      case HeaderToken::kIfModifiedSince:
        p.conditional = true;
        break;
      default:
        break;
    }
  }
  if (!p.cacheable_method || cc.no_store) p.bypass = true;
  p.only_if_cached = cc.only_if_cached;
  // 5.4: Pragma counts only when the request has no Cache-Control.
  p.revalidate = cc.no_cache || (cc.max_age && *cc.max_age == 0) || (!has_cc && pragma_no_cache);
  return p;
}

bool cacheable_status(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

StoreDecision store_decision(bool req_authorization, const http::ResponseHead& resp, int64_t default_ttl_ms,
                             int64_t now_s) {
  StoreDecision d;
  auto no = [&d](const char* why) {
    d.store = false;
    d.reason = why;
    return d;
  };
  if (!cacheable_status(resp.status)) return no("status");
  if (resp.other_transfer_codings || resp.body == http::BodyKind::kTunnel) return no("transfer coding");
  CacheControl cc;
  bool vary_star = false, set_cookie = false, validator = false;
  std::string_view expires, date;
  bool has_expires = false;
  for (const Header& h : resp.headers) {
    switch (h.token) {
      case HeaderToken::kCacheControl:
        parse_cache_control(h.value, &cc);
        break;
      case HeaderToken::kVary:
        vary_star |= !for_each_vary(h.value, [](std::string_view) {});
        break;
      case HeaderToken::kSetCookie:
        set_cookie = true;
        break;
      case HeaderToken::kETag:
      case HeaderToken::kLastModified:
        validator = true;
        break;
      case HeaderToken::kExpires:
        if (!has_expires) expires = h.value;
        has_expires = true;
        break;
      case HeaderToken::kDate:
        if (date.empty()) date = h.value;
        break;
      default:
        break;
    }
  }
  if (cc.no_store) return no("no-store");
  if (cc.private_) return no("private");
  if (vary_star) return no("vary *");
  // 4.2.1: s-maxage, then max-age, then Expires - Date.
  bool explicit_fresh = true;
  if (cc.s_maxage) {
    d.lifetime_ms = *cc.s_maxage * 1000;
  } else if (cc.max_age) {
    d.lifetime_ms = *cc.max_age * 1000;
  } else if (has_expires) {
    auto e = parse_http_date(expires);
    auto dt = parse_http_date(date);
    int64_t base = dt ? *dt : now_s;
    d.lifetime_ms = e && *e > base ? (*e - base) * 1000 : 0;  // 5.3: an invalid Expires is in the past
  } else {
    explicit_fresh = false;
    d.lifetime_ms = default_ttl_ms;
  }
  if (cc.no_cache) d.lifetime_ms = 0;  // 5.2.2.4: may be stored, never used without revalidation
  if (!explicit_fresh && !cc.no_cache && default_ttl_ms <= 0) return no("no freshness information");
  if (d.lifetime_ms <= 0 && !validator) return no("stale at once and no validator");
  if (set_cookie) {
    if (!cc.public_ || !explicit_fresh) return no("set-cookie");
    d.strip_set_cookie = true;
  }
  d.auth_ok = cc.public_ || cc.s_maxage.has_value() || cc.must_revalidate;
  if (req_authorization && !d.auth_ok) return no("authorization");
  // 5.2.2.10: s-maxage implies proxy-revalidate, which a shared cache treats as must-revalidate.
  d.must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.has_value();
  d.store = true;
  return d;
}

bool etag_list_matches(std::string_view inm, std::string_view etag) {
  if (etag.empty()) return false;
  auto opaque = [](std::string_view t) {
    t = trim(t);
    if (t.size() >= 2 && t[0] == 'W' && t[1] == '/') t.remove_prefix(2);
    return t;
  };
  std::string_view want = opaque(etag);
  bool match = false;
  // Entity-tags hold no commas inside their quotes (RFC 9110 8.8.3: etagc excludes DQUOTE only,
  // but a comma in one would be pathological); split on commas.
  for_each_vary(inm, [&](std::string_view item) { match |= item == "*" || opaque(item) == want; });
  // for_each_vary stops at "*" and returns false: that is a match too.
  return match || !for_each_vary(inm, [](std::string_view) {});
}

}  // namespace fulcrum::cache
