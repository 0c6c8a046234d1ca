// HTTP/2 front end (RFC 9113) with nghttp2: an H2Session owns a client connection (TLS with ALPN
// h2, or h2c with prior knowledge on a plain listener) and turns each stream into an exchange of
// the same ClientConn state machine that serves HTTP/1.1, whose client side is the stream in
// memory (H2Stream, a Transport). The request reaches ClientConn as HTTP/1.1 bytes, parsed by the
// same strict parser; its response is parsed back into HEADERS and DATA frames. So routing,
// balancing, static files, protection and caching run once, on one path, whatever the wire.
// Worker thread only.
#pragma once
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.h"
#include "core/fd.h"
#include "core/socket.h"
#include "core/transport.h"
#include "http/chunked.h"
#include "http/forward.h"
#include "http/h1_parser.h"
#include "protect/guard.h"

namespace fulcrum::http {

class HttpListener;
class H2Session;

// One stream; lives until both nghttp2 and its ClientConn are done with it.
struct H2Stream {
  H2Session* session = nullptr;  // null once the session is gone
  int32_t id = 0;
  IoHandler* conn = nullptr;  // the ClientConn; null once it closed
  bool conn_gone = false;
  bool closed = false;  // nghttp2 closed the stream (or the session went)

  // Request: HTTP/1.1 bytes for ClientConn to read.
  std::string method, path, authority, fields, cookie;
  bool has_host = false;
  bool has_length = false;
  bool chunked = false;
  std::string req;
  size_t req_off = 0;
  size_t unconsumed = 0;  // DATA bytes not yet given back to the flow-control windows
  bool req_end = false;

  // Response: ClientConn's HTTP/1.1 bytes, turned into HEADERS and DATA.
  Method req_method = Method::kGet;
  std::string head;
  bool head_done = false;
  BodyKind body = BodyKind::kNone;
  uint64_t left = 0;
  ChunkedDecoder chunks;
  std::string data;  // DATA not yet taken by nghttp2
  size_t data_off = 0;
  bool resp_end = false;
  bool deferred = false;  // the data source said "later": resume when bytes come
  bool deferred_writer = false;  // ClientConn was told EAGAIN: tell it when there is room
  bool submitted = false;
  bool reset = false;     // we reset it

  H2Stream* prev_ = nullptr;  // the session's streams (ilist)
  H2Stream* next_ = nullptr;

  // Back to a fresh stream, keeping the strings' buffers (small ones: a big body's goes back).
  void reset_for_reuse();
};

std::unique_ptr<Transport> make_stream_transport(H2Stream* s);

// The exchange's final response head, straight from the backend's parsed head and what the proxy
// adds to it (`fwd`), with no HTTP/1.1 text in between; the body then comes through the
// transport as usual. False when it cannot go that way (the stream has response bytes already,
// or is gone): the caller writes the head as HTTP/1.1 text instead, which the transport parses.
bool submit_h2_head(H2Stream* s, const ResponseHead& head, const ResponseForward& fwd);

// Streams come from a per-thread free list: a recycled stream keeps its strings' capacity, so a
// connection's steady stream of requests allocates no stream state (STYLE 8).
H2Stream* new_h2_stream();
void free_h2_stream(H2Stream* s);

// Creates the session; it takes over counting the connection (HttpListener::connections_) and
// its place in protect.max_conns_per_client (`hold`).
void start_h2_session(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer,
                      std::string_view already_read, protect::ConnHold hold);

class H2Session final : public IoHandler, public Deferred {
 public:
  H2Session(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer);
  ~H2Session() override;
  void start(std::string_view already_read);
  void on_io(uint32_t events) override;
  // Graceful stop: GOAWAY, finish the streams under way, then close.
  void on_stop();
  void close(const char* why);

  // For streams.
  void poke(H2Stream* s, uint32_t events);
  void schedule_flush();
  void consumed(H2Stream& s, size_t n);
  void stream_released(H2Stream* s);
  void response_ready(H2Stream& s);  // a head parsed, or more data, or the end
  void reset_stream(H2Stream& s, uint32_t code);
  void submit_response(H2Stream& s, const ResponseHead& head, const ResponseForward* fwd = nullptr);
  void count_request() { ++streams_seen_; }
  void take_hold(protect::ConnHold hold) { hold_ = std::move(hold); }

  H2Session* prev_ = nullptr;
  H2Session* next_ = nullptr;

 private:
  friend struct H2Callbacks;
  void drive();
  bool flush();
  void run_pokes();
  void on_request_headers(H2Stream& s, bool end_stream);
  void add_stream(H2Stream* s);
  // Unlinks and frees `s`; pokes still queued for it are dropped.
  void drop_stream(H2Stream* s);

  HttpListener& l_;
  Fd fd_;
  std::unique_ptr<Transport> tr_;
  SocketAddress peer_;
  char peer_ip_[INET6_ADDRSTRLEN] = {};  // once per connection, for every stream's exchange
  protect::ConnHold hold_;
  nghttp2_session* ng_ = nullptr;
  H2Stream* streams_ = nullptr;  // every stream we hold (ilist): nghttp2's, and those whose exchange lingers
  size_t stream_count_ = 0;
  // Exchanges to tell of stream events, after nghttp2 returns; an entry is nulled when its stream goes.
  std::vector<std::pair<H2Stream*, uint32_t>> pokes_;
  std::vector<std::pair<H2Stream*, uint32_t>> pokes_running_;
  std::string out_;  // frames not yet written
  size_t out_off_ = 0;
  Timer timer_;
  Timer flush_;
  bool readable_ = true;
  bool writable_ = true;
  bool hup_ = false;  // the peer has shut its side (RDHUP/HUP/ERR seen): read until 0 or an error
  bool closed_ = false;
  bool in_drive_ = false;
  bool goaway_ = false;
  uint64_t streams_seen_ = 0;
  std::array<Header, 100> fields_;
  std::string names_;  // submit_response: lower-cased field names, reused

 public:
  std::array<Header, 100>& fields() { return fields_; }
  nghttp2_session* ng() { return ng_; }
};

}  // namespace fulcrum::http
