// A stored response: immutable once built, shared by every worker through
// std::shared_ptr<const Entry>, so a hit is written from it with no lock held. Also the key
// builder, and how an entry is made from a parsed response and refreshed by a 304. Any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/policy.h"
#include "http/h1_parser.h"

namespace fulcrum::cache {

// The primary cache key (RFC 9111 2): scheme "://" host (lower-cased) path ["?" query], the
// target as received (not normalised: two spellings are two entries, never a wrong answer).
// Reusable by any front end (the forward proxy passes its absolute URI's parts). `out` is
// overwritten; its capacity is kept, so a connection reusing one string does not allocate.
void build_key(std::string& out, std::string_view scheme, std::string_view host, std::string_view path,
               std::string_view query, bool has_query);

struct VaryField {
  std::string name;   // as the Vary field spells it
  std::string value;  // the request's field lines of that name, joined with ", "; empty if absent
  bool present = false;
};

struct Entry {
  int status = 0;
  std::string head;      // status line and fields, each ending CRLF, with Content-Length; no blank line
  std::string head_304;  // the 304 for a client whose validator matches (RFC 9110 15.4.5 fields)
  std::string body;      // de-chunked
  std::string etag;
  std::string last_modified;
  std::optional<int64_t> last_modified_s;
  std::vector<VaryField> vary;
  int64_t response_ms = 0;     // wall clock when it arrived (or was last refreshed)
  int64_t initial_age_ms = 0;  // corrected_initial_age (RFC 9111 4.2.3)
  int64_t lifetime_ms = 0;
  bool must_revalidate = false;
  bool auth_ok = false;  // may answer a request with Authorization (3.5)

  int64_t age_ms(int64_t now_ms) const { return initial_age_ms + std::max<int64_t>(0, now_ms - response_ms); }
  bool fresh(int64_t now_ms) const { return lifetime_ms > age_ms(now_ms); }
  bool has_validator() const { return !etag.empty() || !last_modified.empty(); }
  // Bytes it costs against the store's size: its strings plus a fixed overhead for the object.
  size_t charge() const;
  // Whether the request's fields selected by Vary equal the stored ones (RFC 9111 4.1). No
  // allocation.
  bool matches(std::span<const http::Header> request) const;
};

// Builds an entry as the response arrives: the head at once, the body piece by piece.
class EntryBuilder {
 public:
  // `request`: the request it answers (for the Vary values). `now_ms`: wall clock.
  EntryBuilder(const http::RequestHead& request, const http::ResponseHead& resp, const StoreDecision& d,
               int64_t now_ms);
  void append(std::string_view data) { body_.append(data); }
  size_t body_size() const { return body_.size(); }
  std::shared_ptr<const Entry> finish();

 private:
  Entry e_;
  std::string fields_;
  std::string body_;
};

// The entry a 304 makes of a stored one (RFC 9111 4.3.4): the 304's fields replace the stored
// fields of the same names; freshness is worked out again from the result. Null if the result may
// not be stored any more (the 304 said no-store, say).
std::shared_ptr<const Entry> refresh_entry(const Entry& old, const http::ResponseHead& not_modified,
                                           bool req_authorization, int64_t default_ttl_ms, int64_t now_ms);

}  // namespace fulcrum::cache
