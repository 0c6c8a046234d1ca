// ClientConn, the HTTP proxy's client connection (proxy.h), shared by the files that implement
// it: proxy.cc (the connection, the request head, the listener), exchange.cc (upstream, exchange,
// forward proxy, tunnel) and client_local.cc (fulcrum's own responses: local, static, cached;
// closing). Internal to src/http.
//
// The HTTP/1.1 proxy's client connection: a state machine driven by readiness of the client
// socket and of the upstream connection it holds (see proxy.h). Worker thread only.
//
//   kIdle ──bytes──▶ kHead ──head──▶ (route, pick) ──▶ kConnecting ──▶ kExchange ──▶ kIdle
//                      │                  │ 404/503                       │ 101
//                      ▼ 400/408/431      ▼                               ▼
//                   kClosing ◀──────── kLocal ──▶ kIdle                 kTunnel
//
// kExchange streams both ways at once: the request body goes up while the response may already
// come down (a backend may answer early). Pipelined requests wait in the read buffer and are
// parsed once the exchange before them is over, so responses keep their order. Nothing is
// allocated per request: buffers come from the worker's pool and parse results are views.
//
// A forward_proxy listener (forward_proxy.h) takes the same path: admit() instead of the router,
// the target's origin instead of a pick (kConnecting also covers its name lookup), and a CONNECT
// goes from kConnecting to kTunnel behind a "200 Connection Established".
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cache/session.h"
#include "core/free_list.h"
#include "core/log.h"
#include "core/socket.h"
#include "http/chunked.h"
#include "http/forward.h"
#include "http/forward_proxy.h"
#include "http/h2_session.h"
#include "http/local_response.h"
#include "http/observe.h"
#include "http/proxy.h"
#include "protect/guard.h"
#include "static/static_site.h"
#include "tls/tls.h"

namespace fulcrum::http {
namespace conn_detail {
// How long an idle keep-alive connection stays open once its listener stops (graceful stop or a
// reload): long enough to answer a request that was already on its way, short enough not to
// hold up the stop.
inline constexpr Millis kStopLinger{1000};

inline constexpr size_t kBadBody = static_cast<size_t>(-1);
// Steps one connection may take per loop turn before it yields to the others (and resumes on a
// zero-delay timer: with edge-triggered epoll no new event would come for bytes already there).
inline constexpr int kStepsPerTurn = 64;
// How long a closing connection keeps reading (and dropping) what the client still sends, so that
// closing with unread bytes does not turn into a reset that destroys our last response in flight
// to the client (RFC 9112 9.6; nginx's lingering close).
inline constexpr Millis kLinger{2000};
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// RFC 9110 9.2.2: a request may be repeated when its method is idempotent.
inline bool idempotent(Method m) {
  return m == Method::kGet || m == Method::kHead || m == Method::kPut || m == Method::kDelete ||
         m == Method::kOptions || m == Method::kTrace;
}

// Splits a request target into path and query; absolute-form loses its scheme and authority
// (RFC 9112 3.2.2: the origin server gets origin-form from us).
inline void split_target(std::string_view target, TargetForm form, std::string_view* authority, std::string_view* path,
                  std::string_view* query, bool* has_query) {
  *authority = {};
  if (form == TargetForm::kAbsolute) {
    auto scheme_end = target.find("://");
    std::string_view rest = scheme_end == std::string_view::npos ? target : target.substr(scheme_end + 3);
    auto slash = rest.find_first_of("/?");
    *authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (!target.empty() && target.front() == '?') target = {};  // "http://h?x": path "/" below
  }
  auto q = target.find('?');
  *has_query = q != std::string_view::npos;
  *path = target.substr(0, q);
  if (path->empty()) *path = "/";
  *query = *has_query ? target.substr(q + 1) : std::string_view();
}

}  // namespace conn_detail

class ClientConn final : public IoHandler, public Deferred, public UpstreamOwner, public OriginWaiter {
 public:
  // `peer_ip`: the peer's address as text when the caller has it already (an HTTP/2 session for
  // its streams); otherwise it is written here.
  ClientConn(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer,
             std::string_view peer_ip = {});
  ~ClientConn() override;
  // One per connection and one per HTTP/2 stream: from the worker's free list (core/free_list.h).
  static void* operator new(size_t n) { return FreeList<ClientConn>::allocate(n); }
  static void operator delete(void* p, size_t n) { FreeList<ClientConn>::release(p, n); }
  void start();
  void on_io(uint32_t events) override;
  void on_upstream_io(uint32_t events) override;
  void on_origin(upstream::Server* origin, int status) override;
  void close(const char* why);
  void on_stop();
  // An HTTP/2 stream's exchange (h2_session.cc): no socket, no connection counters of its own.
  void set_stream(H2Stream* s) {
    stream_ = true;
    h2_ = s;
  }

  ClientConn* prev_ = nullptr;
  ClientConn* next_ = nullptr;
  protect::ConnHold hold_;  // its place in protect.max_conns_per_client

 private:
  enum class State : uint8_t { kIdle, kHead, kConnecting, kExchange, kTunnel, kLocal, kClosing, kLinger, kCacheWait };

  void drive();
  void on_timer();
  bool step_head();
  bool step_exchange();
  bool step_tunnel();
  bool step_flush();
  bool step_linger();
  // 1 read, 0 nothing, -1 fatal. `hup`: the peer's FIN or an error was seen with the last edge.
  int read_into(Transport& t, Buffer& buf, bool* readable, bool* eof, bool hup);
  // Writes out_ and then `body` to the client; returns how many bytes of `body` went, or -1 when
  // the connection was closed.
  ssize_t write_client(std::string_view body, bool* progress);

  // A request.
  void on_request(const RequestHead& head, size_t head_len);
  upstream::Server* choose(const RequestHead* head, std::string_view path, std::string_view query);
  // An attempt on one server: from the pool, or a new connection.
  void connect_upstream(upstream::Server* server);
  void begin_exchange();
  void upstream_failed(const char* why, int err, bool connecting, bool timeout);
  void bad_response(const char* why);
  bool send_request();
  bool read_response_head();
  bool on_response_head(const ResponseHead& head, size_t head_len);
  bool forward_response_body();
  size_t dechunk_into_out(size_t body);
  void finish_exchange();
  size_t request_body_ready();   // bytes at the front of in_ that belong to the request body
  size_t response_body_ready();  // bytes at the front of up_->in that belong to the response body
  bool response_body_complete() const;

  void send_local(int status, bool close_after, std::string_view extra = {});
  void serve_static(const staticfiles::StaticSite& site, const RequestHead& head, std::string_view path,
                    bool close_after);
  bool send_file(bool* progress);
  // The cache (src/cache/session.h): an answer from it, and waking from a wait for another fill.
  void serve_cached(bool close_after, std::string_view how);
  void on_cache_wake();
  void set_state(State s);
  void release_upstream(bool reuse);
  Millis response_timeout() const { return backend().spec().response_timeout; }
  bool fwd_https() const { return l_.spec_.protocol == config::Protocol::kHttps; }
  // The backend of the exchange: the route's, or a forward proxy's origins (forward_proxy.h).
  upstream::Backend& backend() const { return backend_ >= 0 ? *ctx_.backends[backend_] : l_.forward_->backend(); }
  // Forward proxy: connects to the admitted target's origin, at once or once it is resolved.
  void forward_connect(const ForwardTarget& target);
  void stop_resolving();

  HttpListener& l_;
  HttpContext& ctx_;
  Fd fd_;                          // the client's socket; none for an HTTP/2 stream
  std::unique_ptr<Transport> tr_;  // how bytes move to and from the client
  SocketAddress peer_;
  char peer_ip_[INET6_ADDRSTRLEN] = {};
  Buffer in_;
  Buffer out_;
  Buffer req_head_;  // the head we send upstream, kept whole until a response starts (retries)
  Timer timer_;
  Timer resume_;  // zero-delay: carries on after kStepsPerTurn
  RequestParser req_parser_;
  ResponseParser resp_parser_;
  State state_ = State::kIdle;
  bool readable_ = false;
  bool hup_ = false;  // the client's FIN (or an error) came with an edge
  bool writable_ = true;
  bool read_eof_ = false;
  bool closed_ = false;
  bool stream_ = false;      // the client side is an HTTP/2 stream
  H2Stream* h2_ = nullptr;   // that stream, while tr_ (which keeps it) lives
  bool fresh_ = true;        // no request yet: HTTP/2 may start here (ALPN h2, or the h2c preface)
  bool handed_off_ = false;  // the connection went to an H2Session
  // A static file being sent (serve_static).
  staticfiles::FileReply file_;  // its descriptor (own or the worker's cache's); offset and length left
  bool static_pending_ = false;
  metrics::Exchange x_;  // the request in progress, for the counters and the access log
  cache::Session cache_;

  // The exchange in progress.
  int backend_ = -1;
  upstream::Server* server_ = nullptr;  // set while it counts this request as active
  UpstreamConn* up_ = nullptr;
  lb::TriedSet tried_;
  uint32_t attempts_ = 0;
  int sticky_index_ = -1;  // the server the client's sticky cookie names, if valid
  Method method_ = Method::kGet;
  bool keep_alive_ = false;
  bool client_http10_ = false;
  bool expect_continue_ = false;  // we owe the client "100 Continue" once a server is reached
  size_t req_head_sent_ = 0;
  BodyKind req_body_ = BodyKind::kNone;
  uint64_t req_left_ = 0;
  ChunkedDecoder req_chunks_;
  size_t req_scanned_ = 0;  // chunked: validated bytes at the front of in_ not yet sent
  bool req_done_ = true;
  bool req_body_sent_ = false;
  bool resp_head_done_ = false;
  uint64_t client_bytes_ = 0;  // written to the client for this request (interim responses too)
  bool resp_started_ = false;  // a byte of the response has been read
  BodyKind resp_body_ = BodyKind::kNone;
  uint64_t resp_left_ = 0;
  ChunkedDecoder resp_chunks_;
  ChunkedDecoder dechunk_decoder_;
  size_t resp_scanned_ = 0;
  bool resp_done_ = false;
  bool dechunk_ = false;  // chunked response to an HTTP/1.0 client: send the data only
  bool upstream_keep_alive_ = false;
  bool tunnel_ = false;  // the client asked to upgrade
  bool connect_tunnel_ = false;  // forward proxy: a CONNECT, answered 200 once connected
  bool resolving_ = false;       // forward proxy: waiting in kConnecting for on_origin()
  ForwardTarget target_;         // forward proxy: the request's origin (its next address on refusal)
  bool up_eof_ = false;
  TimePoint sent_at_{};
};

}  // namespace fulcrum::http
