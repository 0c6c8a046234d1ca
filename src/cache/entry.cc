// Entries: building from a response, refreshing with a 304, Vary matching (entry.h). Any thread.
#include "cache/entry.h"
#include "core/ascii.h"

#include <array>

namespace fulcrum::cache {
namespace {

using ascii::iequals;

using http::Header;
using http::HeaderToken;

// Fields never stored: framing and hop-by-hop ones are the connection's, Age and X-Cache are
// made fresh on every hit.
bool stored_field(const http::MessageHead& head, const Header& h, bool strip_set_cookie) {
  if (http::must_strip(head, h)) return false;
  switch (h.token) {
    case HeaderToken::kContentLength:
    case HeaderToken::kTransferEncoding:
    case HeaderToken::kAge:
    case HeaderToken::kXCache:
      return false;
    case HeaderToken::kSetCookie:
      return !strip_set_cookie;
    default:
      return true;
  }
}

// Fields a 304 to the client carries (RFC 9110 15.4.5).
bool field_of_304(HeaderToken t) {
  return t == HeaderToken::kETag || t == HeaderToken::kLastModified || t == HeaderToken::kCacheControl ||
         t == HeaderToken::kExpires || t == HeaderToken::kVary || t == HeaderToken::kDate;
}

void append_uint(std::string& s, uint64_t v) {
  char buf[24];
  size_t n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) s.push_back(buf[--n]);
}

// Freshness and validators of a head into *e (RFC 9111 4.2.3 for the age).
void set_times(Entry* e, const http::ResponseHead& resp, const StoreDecision& d, int64_t now_ms) {
  int64_t now_s = now_ms / 1000;
  std::optional<int64_t> date, age;
  e->etag.clear();
  e->last_modified.clear();
  e->last_modified_s.reset();
  for (const Header& h : resp.headers) {
    if (h.token == HeaderToken::kDate && !date) date = parse_http_date(h.value);
    if (h.token == HeaderToken::kAge && !age) age = parse_delta_seconds(h.value);
    if (h.token == HeaderToken::kETag && e->etag.empty()) e->etag = h.value;
    if (h.token == HeaderToken::kLastModified && e->last_modified.empty()) {
      e->last_modified = h.value;
      e->last_modified_s = parse_http_date(h.value);
    }
  }
  // Whole seconds: Date has no finer grain, and a fraction would age a fresh response early.
  int64_t apparent = date ? std::max<int64_t>(0, now_s - *date) : 0;
  e->initial_age_ms = std::max<int64_t>(apparent, age.value_or(0)) * 1000;
  e->response_ms = now_ms;
  e->lifetime_ms = d.lifetime_ms;
  e->must_revalidate = d.must_revalidate;
  e->auth_ok = d.auth_ok;
}

void status_line(std::string& s, int status, std::string_view reason) {
  s += "HTTP/1.1 ";
  append_uint(s, static_cast<uint64_t>(status));
  s += ' ';
  s += reason;
  s += "\r\n";
}

void build_304(Entry* e, const http::ResponseHead& resp) {
  e->head_304 = "HTTP/1.1 304 Not Modified\r\n";
  for (const Header& h : resp.headers)
    if (field_of_304(h.token)) {
      e->head_304.append(h.name).append(": ").append(h.value).append("\r\n");
    }
}

// Compares the request's field lines named `name`, as joined with ", ", to `stored`.
bool joined_equals(std::span<const Header> request, std::string_view name, std::string_view stored,
                   bool present) {
  bool seen = false;
  for (const Header& h : request) {
    if (!iequals(h.name, name)) continue;
    if (seen) {
      if (stored.substr(0, 2) != ", ") return false;
      stored.remove_prefix(2);
    }
    seen = true;
    if (stored.substr(0, h.value.size()) != h.value) return false;
    stored.remove_prefix(h.value.size());
  }
  return seen == present && stored.empty();
}

}  // namespace

void build_key(std::string& out, std::string_view scheme, std::string_view host, std::string_view path,
               std::string_view query, bool has_query) {
  out.clear();
  out.append(scheme).append("://");
  for (char c : host) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  out.append(path);
  if (has_query) out.append("?").append(query);
}

size_t Entry::charge() const {
  size_t n = head.size() + head_304.size() + body.size() + etag.size() + last_modified.size() + 256;
  for (auto& v : vary) n += v.name.size() + v.value.size() + 64;
  return n;
}

bool Entry::matches(std::span<const Header> request) const {
  for (const VaryField& v : vary)
    if (!joined_equals(request, v.name, v.value, v.present)) return false;
  return true;
}

EntryBuilder::EntryBuilder(const http::RequestHead& request, const http::ResponseHead& resp,
                           const StoreDecision& d, int64_t now_ms) {
  e_.status = resp.status;
  status_line(e_.head, resp.status, resp.reason);
  for (const Header& h : resp.headers) {
    if (!stored_field(resp, h, d.strip_set_cookie)) continue;
    fields_.append(h.name).append(": ").append(h.value).append("\r\n");
    if (h.token != HeaderToken::kVary) continue;
    for_each_vary(h.value, [&](std::string_view name) {
      VaryField v;
      v.name = name;
      for (const Header& rh : request.headers) {
        if (!iequals(rh.name, name)) continue;
        if (v.present) v.value += ", ";
        v.value += rh.value;
        v.present = true;
      }
      e_.vary.push_back(std::move(v));
    });
  }
  build_304(&e_, resp);
  set_times(&e_, resp, d, now_ms);
}

std::shared_ptr<const Entry> EntryBuilder::finish() {
  auto e = std::make_shared<Entry>(std::move(e_));
  e->head += fields_;
  if (e->status != 204) {  // RFC 9110 8.6: no Content-Length in a 204
    e->head += "Content-Length: ";
    append_uint(e->head, body_.size());
    e->head += "\r\n";
  }
  e->body = std::move(body_);
  return e;
}

std::shared_ptr<const Entry> refresh_entry(const Entry& old, const http::ResponseHead& nm,
                                           bool req_authorization, int64_t default_ttl_ms, int64_t now_ms) {
  // Re-parse the stored head, then lay the 304's fields over it.
  std::string text = old.head + "\r\n";
  std::array<Header, 128> fields;
  http::ResponseHead stored;
  if (!http::parse_response(text, fields, &stored).done()) return nullptr;
  std::string merged;
  status_line(merged, stored.status, stored.reason);
  auto updated = [&nm](const Header& h) {
    for (const Header& n : nm.headers)
      if (iequals(n.name, h.name)) return true;
    return false;
  };
  // A 304 without Date (from a server with no clock) still says the response is current: the
  // stored Date would make it look as old as the first fetch, so it becomes now.
  bool nm_date = nm.find(HeaderToken::kDate) != nullptr;
  for (const Header& h : stored.headers)
    if (h.token != HeaderToken::kContentLength && !updated(h) && (nm_date || h.token != HeaderToken::kDate))
      merged.append(h.name).append(": ").append(h.value).append("\r\n");
  for (const Header& h : nm.headers)
    if (stored_field(nm, h, true) && h.token != HeaderToken::kContentLength)
      merged.append(h.name).append(": ").append(h.value).append("\r\n");
  if (!nm_date) {
    char date[32];
    merged.append("Date: ").append(date, format_http_date(now_ms / 1000, date)).append("\r\n");
  }
  // Length from the stored body: the 304 says nothing about it.
  merged += "Content-Length: ";
  append_uint(merged, old.body.size());
  merged += "\r\n\r\n";
  std::array<Header, 128> mfields;
  http::ResponseHead mh;
  if (!http::parse_response(merged, mfields, &mh).done()) return nullptr;
  StoreDecision d = store_decision(req_authorization, mh, default_ttl_ms, now_ms / 1000);
  if (!d.store) return nullptr;
  auto e = std::make_shared<Entry>();
  e->status = old.status;
  e->head = merged.substr(0, merged.size() - 2);
  if (old.status == 204) {  // the length we added for parsing is not sent
    auto at = e->head.rfind("Content-Length: ");
    if (at != std::string::npos) e->head.resize(at);
  }
  build_304(e.get(), mh);
  set_times(e.get(), mh, d, now_ms);
  e->body = old.body;
  e->vary = old.vary;
  return e;
}

}  // namespace fulcrum::cache
