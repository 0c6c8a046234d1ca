// The cache's part in one client connection's requests: look up at the request, answer from an
// entry (hit, 304, HEAD), or let the request go upstream as the key's filler (fetching or
// revalidating) and tee the response into a new entry; or wait for another request's fill. The
// proxy calls it at four points (request routed, response head, body bytes, exchange end); the
// rules live here and in policy/entry/store. One per connection; its worker thread only.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cache/store.h"
#include "core/buffer.h"
#include "http/chunked.h"
#include "http/h1_parser.h"

namespace fulcrum {
class EventLoop;
}
namespace fulcrum::metrics {
class ListenerMetrics;
}

namespace fulcrum::cache {

struct KeyParts {
  std::string_view scheme;  // "http", "https"
  std::string_view host;
  std::string_view path;
  std::string_view query;
  bool has_query = false;
};

// How long a request waits for another's fill before it goes upstream itself (nginx's
// proxy_cache_lock_timeout has the same default). The fill ends when its own client has the whole
// body (the body streams at that client's pace), so a slow first client must not hold the others.
inline constexpr std::chrono::milliseconds kMaxWait{5000};

class Session {
 public:
  Session() = default;
  ~Session() { abort(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  enum class Start : uint8_t {
    kForward,  // go upstream (as the filler, or past the cache)
    kServe,    // answer from the cache: write_response(), then send body_left()
    kWait,     // another request is fetching this key: wake() runs when it is done; then parse
               // the same request again and call begin() again
    kNotCached,  // `Cache-Control: only-if-cached` and nothing fresh stored: answer 504 (RFC 9111
                 // 5.2.1.7)
  };
  // Once, before the first begin(): what runs (on `loop`) when a fill this session waits for is
  // over. Kept here so that a request does not build a callback on its way past the cache.
  void set_waker(EventLoop& loop, std::function<void()> wake) {
    loop_ = &loop;
    wake_ = std::move(wake);
  }
  // At a routed request. `store` null: no cache on this route. `head_bytes`: the request head
  // as received (copied when this request becomes a filler, for Vary).
  Start begin(Store* store, const http::RequestHead& head, std::string_view head_bytes, const KeyParts& key,
              metrics::ListenerMetrics* m);
  // The waited-for fill is over, or the wait timed out: the next begin() does not wait again.
  void stop_waiting();

  // The upstream request of a filler: the client's own conditionals are left out (we want the
  // whole response, and answer the client's conditions ourselves) and ours added.
  bool strip_conditionals() const { return filler_; }
  std::string_view upstream_fields() const { return validators_; }  // "If-None-Match: ...\r\n"...
  // Added to a forwarded response's head on a cache route.
  std::string_view x_cache_field() const {
    return store_ ? std::string_view("X-Cache: MISS\r\n") : std::string_view();
  }

  enum class Reply : uint8_t { kForward, kServe };
  // The upstream response head. kServe: a 304 refreshed the stored entry; the caller drops the
  // 304 and answers with write_response() (X-Cache: REVALIDATED).
  Reply on_response(const http::ResponseHead& head);
  // Response body bytes as they pass to the client (chunked framing included, if any).
  void tee(std::string_view raw) {
    if (fill_) tee_slow(raw);
  }
  // The response is complete: store it.
  void commit();
  // The exchange failed or the connection goes: give up the fill or the wait.
  void abort();

  // Writes the head of the answer from the cache: the entry's head (or its 304), Age, X-Cache
  // `how`, and the connection's fields. The body then comes from body_left().
  bool write_response(Buffer& out, bool keep_alive, bool http10, std::string_view how);
  int status() const { return status_; }
  bool sending() const { return !body_.empty(); }
  std::string_view body_left() const { return body_; }
  void body_sent(size_t n) {
    body_.remove_prefix(n);
    if (body_.empty()) entry_.reset();
  }

 private:
  void tee_slow(std::string_view raw);
  void choose_reply(const Entry& e);

  EventLoop* loop_ = nullptr;
  std::function<void()> wake_;
  Store* store_ = nullptr;
  metrics::ListenerMetrics* metrics_ = nullptr;
  std::string key_;  // capacity kept across requests: no allocation per lookup
  RequestPolicy policy_;
  bool head_only_ = false;
  bool not_modified_ = false;  // answer 304
  int status_ = 0;             // of the answer from the cache
  bool filler_ = false;        // this request holds the key's pending fill
  bool waited_ = false;        // it waited once already
  std::string if_none_match_;  // the client's conditionals, copied (the head is gone by the response)
  std::string if_modified_since_;
  bool has_inm_ = false, has_ims_ = false;
  std::string request_copy_;  // a filler's request head, for the Vary values
  std::string validators_;
  std::shared_ptr<const Entry> entry_;  // to serve, or being revalidated
  std::unique_ptr<EntryBuilder> fill_;
  http::ChunkedDecoder chunks_;
  bool chunked_ = false;
  std::shared_ptr<Waiter> waiter_;
  bool waiting_ = false;
  std::string_view body_;  // of entry_, still to send
};

}  // namespace fulcrum::cache
