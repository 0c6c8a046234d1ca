// libFuzzer target for the cache's header parsing (src/cache/policy.cc): Cache-Control, Vary,
// HTTP dates and If-None-Match lists, alone and inside a whole response head fed to the storage
// decision. Any bytes give an answer, never a crash, hang or leak; and the answers keep their
// promises: a stored response is never no-store/private/Vary-*, lifetimes are never negative,
// and a date that parses formats back to the same instant.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cache/policy.h"

using namespace fulcrum;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Parts separated by '\n': Cache-Control, Vary, Date, Expires, If-None-Match.
  std::array<std::string_view, 5> part{};
  for (size_t i = 0; i < part.size() && !in.empty(); ++i) {
    size_t nl = in.find('\n');
    part[i] = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  }
  cache::CacheControl cc;
  cache::parse_cache_control(part[0], &cc);
  if ((cc.max_age && *cc.max_age < 0) || (cc.s_maxage && *cc.s_maxage < 0)) std::abort();
  size_t names = 0;
  cache::for_each_vary(part[1], [&](std::string_view n) {
    if (n.empty() || n.front() == ' ' || n.back() == ' ') std::abort();
    ++names;
  });
  if (names > part[1].size()) std::abort();
  for (std::string_view d : {part[2], part[3]}) {
    if (auto t = cache::parse_http_date(d)) {
      char buf[32];
      size_t n = cache::format_http_date(*t, buf);
      if (cache::parse_http_date(std::string_view(buf, n)) != t) std::abort();
    }
  }
  (void)cache::etag_list_matches(part[4], part[2]);

  std::string head = "HTTP/1.1 200 OK\r\nCache-Control: " + std::string(part[0]) +
                     "\r\nVary: " + std::string(part[1]) + "\r\nDate: " + std::string(part[2]) +
                     "\r\nExpires: " + std::string(part[3]) + "\r\nETag: \"x\"\r\nContent-Length: 0\r\n\r\n";
  std::array<http::Header, 16> fields;
  http::ResponseHead resp;
  if (!http::parse_response(head, fields, &resp).done()) return 0;
  for (int64_t ttl : {0, 60000}) {
    cache::StoreDecision d = cache::store_decision(size % 2 == 0, resp, ttl, 1700000000);
    if (d.lifetime_ms < 0) std::abort();
    if (d.store) {
      cache::CacheControl all = cache::cache_control(resp.headers);
      if (all.no_store || all.private_) std::abort();
      if (!cache::for_each_vary(part[1], [](std::string_view) {})) std::abort();
    }
  }
  return 0;
}
