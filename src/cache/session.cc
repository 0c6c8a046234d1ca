// A connection's cache steps (session.h). Worker thread only.
#include "cache/session.h"

#include <array>
#include <chrono>

#include "core/event_loop.h"
#include "http/forward.h"
#include "metrics/metrics.h"

namespace fulcrum::cache {
namespace {

using http::Header;
using http::HeaderToken;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// RFC 9110 13.2.2: the methods whose success invalidates stored responses (RFC 9111 4.4).
bool unsafe(http::Method m) {
  return m == http::Method::kPost || m == http::Method::kPut || m == http::Method::kDelete ||
         m == http::Method::kPatch || m == http::Method::kOther;
}

}  // namespace

Session::Start Session::begin(Store* store, const http::RequestHead& head, std::string_view head_bytes,
                              const KeyParts& key, metrics::ListenerMetrics* m) {
  bool waited = waited_;  // set by stop_waiting() when this same request waited before
  abort();                // a request before it left nothing pending; this is a safety net
  store_ = store;
  metrics_ = m;
  entry_.reset();
  body_ = {};
  validators_.clear();
  not_modified_ = false;
  if (!store_) return Start::kForward;
  build_key(key_, key.scheme, key.host, key.path, key.query, key.has_query);
  policy_ = request_policy(head);
  if (!policy_.cacheable_method) {
    if (unsafe(head.method)) store_->invalidate(key_);
    return Start::kForward;
  }
  if (policy_.bypass) return Start::kForward;
  head_only_ = head.method == http::Method::kHead;
  has_inm_ = has_ims_ = false;
  if (policy_.conditional) {
    for (const Header& h : head.headers) {
      if (h.token == HeaderToken::kIfNoneMatch && !has_inm_) {
        if_none_match_ = h.value;
        has_inm_ = true;
      } else if (h.token == HeaderToken::kIfModifiedSince && !has_ims_) {
        if_modified_since_ = h.value;
        has_ims_ = true;
      }
    }
  }
  // Only GET fills: a HEAD miss goes upstream as it is (its response has no body to store).
  bool may_fill = !head_only_ && !waited && !policy_.only_if_cached;
  // One waiter per connection, made on first need and reused until a wait consumes it.
  if (may_fill && !waiter_) waiter_ = std::make_shared<Waiter>();
  Store::Lookup r = store_->lookup(key_, head.headers, wall_ms(), policy_.revalidate, may_fill,
                                   policy_.authorization, waiter_);
  switch (r.action) {
    case Store::Action::kHit:
      entry_ = std::move(r.entry);
      choose_reply(*entry_);
      if (metrics_) metrics_->cache_hit();
      return Start::kServe;
    case Store::Action::kWait:
      waiter_->loop = loop_;
      waiter_->wake = wake_;
      waiting_ = true;
      return Start::kWait;
    case Store::Action::kFill:
      filler_ = true;
      request_copy_.assign(head_bytes);
      // A stale entry with a validator is revalidated (RFC 9111 4.3.1); HEAD never gets here.
      if (r.entry && r.entry->has_validator()) {
        entry_ = std::move(r.entry);
        if (!entry_->etag.empty()) validators_.append("If-None-Match: ").append(entry_->etag).append("\r\n");
        if (!entry_->last_modified.empty())
          validators_.append("If-Modified-Since: ").append(entry_->last_modified).append("\r\n");
      } else if (metrics_) {
        metrics_->cache_miss();
      }
      return Start::kForward;
    case Store::Action::kBypass:
      if (policy_.only_if_cached) return Start::kNotCached;
      if (metrics_) metrics_->cache_miss();
      return Start::kForward;
  }
  return Start::kForward;
}

void Session::stop_waiting() {
  if (!waiting_) return;
  waiting_ = false;
  waited_ = true;
  waiter_->wake = nullptr;  // a wake already posted finds nothing to call
  store_->cancel(key_, waiter_.get());
  waiter_.reset();  // the store or a posted task may still hold it; the next wait gets a new one
}

// RFC 9110 13.1.1-13.1.3: If-None-Match decides when present; If-Modified-Since otherwise.
void Session::choose_reply(const Entry& e) {
  status_ = e.status;
  if (has_inm_) {
    not_modified_ = etag_list_matches(if_none_match_, e.etag);
  } else if (has_ims_ && e.last_modified_s) {
    auto since = parse_http_date(if_modified_since_);
    not_modified_ = since && *e.last_modified_s <= *since;
  }
  if (e.status != 200) not_modified_ = false;  // conditionals apply to 200 representations
  if (not_modified_) status_ = 304;
}

Session::Reply Session::on_response(const http::ResponseHead& head) {
  if (!filler_) return Reply::kForward;
  int64_t now = wall_ms();
  if (head.status == 304 && entry_) {
    // 4.3.3: the stored response is still good; its fields are updated from the 304's.
    auto fresh = refresh_entry(*entry_, head, policy_.authorization, store_->default_ttl_ms(), now);
    if (fresh) {
      store_->insert(key_, fresh);
      entry_ = std::move(fresh);
    } else {
      store_->release(key_);
    }
    filler_ = false;
    choose_reply(*entry_);
    if (metrics_) metrics_->cache_revalidated();
    return Reply::kServe;
  }
  if (entry_ && metrics_) metrics_->cache_miss();  // revalidation answered with a new response
  entry_.reset();
  StoreDecision d = store_decision(policy_.authorization, head, store_->default_ttl_ms(), now / 1000);
  // A body announced larger than we would keep is not worth collecting.
  if (d.store && head.body == http::BodyKind::kContentLength && head.content_length > store_->max_object()) {
    d.store = false;
  }
  if (!d.store) {
    store_->release(key_);
    filler_ = false;
    return Reply::kForward;
  }
  std::array<Header, 128> fields;
  http::RequestHead req;
  if (!http::parse_request(request_copy_, fields, &req).done()) {
    store_->release(key_);
    filler_ = false;
    return Reply::kForward;
  }
  fill_ = std::make_unique<EntryBuilder>(req, head, d, now);
  chunked_ = head.chunked();
  chunks_.reset();
  return Reply::kForward;
}

void Session::tee_slow(std::string_view raw) {
  if (!chunked_) {
    fill_->append(raw);
  } else {
    while (!raw.empty()) {
      http::ChunkStep s = chunks_.decode(raw);
      if (s.event == http::ChunkEvent::kData) fill_->append(s.bytes);
      if (s.event == http::ChunkEvent::kError) return abort();
      raw.remove_prefix(s.consumed);
      if (s.event == http::ChunkEvent::kDone || s.consumed == 0) break;
    }
  }
  if (fill_->body_size() > store_->max_object()) abort();  // too large to keep: the client still gets it all
}

void Session::commit() {
  if (!fill_) return abort();
  if (chunked_ && !chunks_.done()) return abort();
  auto e = fill_->finish();
  fill_.reset();
  filler_ = false;
  if (metrics_) metrics_->cache_stored(e->charge());
  store_->insert(key_, std::move(e));
}

void Session::abort() {
  fill_.reset();
  if (filler_) {
    filler_ = false;
    store_->release(key_);
  }
  stop_waiting();
  waited_ = false;
}

bool Session::write_response(Buffer& out, bool keep_alive, bool http10, std::string_view how) {
  const Entry& e = *entry_;
  http::Appender a{out};
  a << (not_modified_ ? e.head_304 : e.head) << "Age: " << static_cast<uint64_t>(e.age_ms(wall_ms()) / 1000)
    << "\r\nX-Cache: " << how << "\r\n";
  if (!keep_alive)
    a << "Connection: close\r\n";
  else if (http10)
    a << "Connection: keep-alive\r\n";
  a << "\r\n";
  body_ = head_only_ || not_modified_ ? std::string_view() : std::string_view(e.body);
  if (body_.empty()) entry_.reset();
  return a.ok;
}

}  // namespace fulcrum::cache
