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
#include "http/proxy.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cache/session.h"
#include "core/log.h"
#include "core/socket.h"
#include "http/chunked.h"
#include "http/forward.h"
#include "http/forward_proxy.h"
#include "http/h2_session.h"
#include "http/local_response.h"
#include "static/static_site.h"
#include "http/observe.h"
#include "tls/tls.h"
#include "protect/guard.h"

namespace fulcrum::http {
namespace {
// How long an idle keep-alive connection stays open once its listener stops (graceful stop or a
// reload): long enough to answer a request that was already on its way, short enough not to
// hold up the stop.
constexpr Millis kStopLinger{1000};

constexpr size_t kBadBody = static_cast<size_t>(-1);
// Steps one connection may take per loop turn before it yields to the others (and resumes on a
// zero-delay timer: with edge-triggered epoll no new event would come for bytes already there).
constexpr int kStepsPerTurn = 64;
// How long a closing connection keeps reading (and dropping) what the client still sends, so that
// closing with unread bytes does not turn into a reset that destroys our last response in flight
// to the client (RFC 9112 9.6; nginx's lingering close).
constexpr Millis kLinger{2000};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// RFC 9110 9.2.2: a request may be repeated when its method is idempotent.
bool idempotent(Method m) {
  return m == Method::kGet || m == Method::kHead || m == Method::kPut || m == Method::kDelete ||
         m == Method::kOptions || m == Method::kTrace;
}

// Splits a request target into path and query; absolute-form loses its scheme and authority
// (RFC 9112 3.2.2: the origin server gets origin-form from us).
void split_target(std::string_view target, TargetForm form, std::string_view* authority, std::string_view* path,
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

}  // namespace

// ---- context ---------------------------------------------------------------------------------

HttpContext::HttpContext(EventLoop& l, std::vector<upstream::Backend*> b, std::vector<lb::Picker*> p)
    : loop(l), pool(l, buffers), backends(std::move(b)), pickers(std::move(p)), backend_tls(backends.size()) {
  for (auto* backend : backends) {
    std::vector<std::string> ids;
    for (auto& s : backend->servers()) {
      std::string key = backend->name() + '\0' + s->name();
      char hex[17];
      std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(lb::hash_bytes(key, 0x5717C4)));
      ids.emplace_back(hex, 16);
    }
    sticky_ids.push_back(std::move(ids));
  }
}

// ---- connection ------------------------------------------------------------------------------

class ClientConn final : public IoHandler, public Deferred, public UpstreamOwner, public OriginWaiter {
 public:
  ClientConn(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer);
  ~ClientConn() override;
  void start();
  void on_io(uint32_t events) override;
  void on_upstream_io(uint32_t events) override;
  void on_origin(upstream::Server* origin, int status) override;
  void close(const char* why);
  void on_stop();
  // An HTTP/2 stream's exchange (h2_session.cc): no socket, no connection counters of its own.
  void set_stream() { stream_ = true; }

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
  bool fresh_ = true;        // no request yet: HTTP/2 may start here (ALPN h2, or the h2c preface)
  bool handed_off_ = false;  // the connection went to an H2Session
  // A static file being sent (serve_static).
  Fd file_;
  uint64_t file_off_ = 0;
  uint64_t file_left_ = 0;
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

ClientConn::ClientConn(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer)
    : l_(l),
      ctx_(l.ctx_),
      fd_(std::move(fd)),
      tr_(std::move(tr)),
      peer_(peer),
      in_(l.ctx_.buffers),
      out_(l.ctx_.buffers),
      req_head_(l.ctx_.buffers),
      timer_(l.ctx_.loop, [this] { on_timer(); }),
      resume_(l.ctx_.loop, [this] { drive(); }),
      req_parser_(H1Limits{static_cast<size_t>(l.max_header_bytes_)}) {
  // The address text once per connection: X-Forwarded-For needs it on every request.
  if (peer_.family() == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(peer_.sa())->sin_addr, peer_ip_, sizeof(peer_ip_));
  else if (peer_.family() == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(peer_.sa())->sin6_addr, peer_ip_, sizeof(peer_ip_));
}

ClientConn::~ClientConn() {
  if (up_) ctx_.pool.close(up_);
}

void ClientConn::start() {
  if (stream_) return set_state(State::kIdle);
  set_nodelay(fd_.get());
  if (!ctx_.loop.add(fd_.get(), this)) return close("epoll");
  set_state(State::kIdle);
  // A TLS handshake counts against header_timeout (it is done by the first read).
  if (tr_->any_edge_retries_both()) timer_.arm(l_.header_timeout_);
}

void ClientConn::set_state(State s) {
  state_ = s;
  switch (s) {
    case State::kIdle: timer_.arm(l_.stopping_ ? kStopLinger : l_.idle_timeout_); break;
    case State::kHead: timer_.arm(l_.header_timeout_); break;
    case State::kConnecting: timer_.arm(backend().spec().connect_timeout); break;
    case State::kExchange: timer_.arm(response_timeout()); break;
    case State::kTunnel: timer_.arm(l_.idle_timeout_); break;
    case State::kLocal:
    case State::kClosing: timer_.arm(l_.idle_timeout_); break;
    case State::kLinger: timer_.arm(kLinger); break;
    case State::kCacheWait: timer_.arm(std::min(response_timeout(), cache::kMaxWait)); break;
  }
}

// A timer callback is an event like any other: after acting on it the connection must be
// driven, or a response queued here would wait for an unrelated event to go out.
void ClientConn::on_timer() {
  switch (state_) {
    case State::kIdle: return close("idle timeout");
    case State::kHead:
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: request head not complete within header_timeout",
                          l_.spec_.name.c_str(), peer_ip_);
      send_local(408, true);
      break;
    case State::kConnecting: upstream_failed("connect timeout", ETIMEDOUT, true, true); break;
    case State::kExchange:
      if (resp_head_done_) return close("response stalled");
      // Waiting on the client for more request body (the backend takes it): the client's fault.
      if (!req_done_ && up_ && up_->writable) return close("request body stalled");
      upstream_failed("response timeout", ETIMEDOUT, false, true);
      break;
    case State::kCacheWait: return on_cache_wake();  // the fill takes too long: go upstream ourselves
    default: return close("timeout");
  }
  drive();
}

void ClientConn::on_io(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hup_ = true;
  if (events & EPOLLOUT) writable_ = true;
  if (events && tr_->any_edge_retries_both()) readable_ = writable_ = true;
  drive();
}

void ClientConn::on_upstream_io(uint32_t events) {
  if (closed_) return;
  if (state_ == State::kConnecting) {
    int err = socket_error(up_->fd.get());
    if (err != 0) {
      upstream_failed("connect", err, true, false);
      return drive();
    }
    if (!(events & EPOLLOUT) && !up_->connected) return;
    up_->connected = true;
    // TLS to the backend: the handshake is part of connecting (connect_timeout bounds it).
    int h = up_->io->handshake();
    if (h == 0) return;
    if (h < 0) {
      upstream_failed("tls handshake", errno ? errno : EPROTO, true, false);
      return drive();
    }
    begin_exchange();
  }
  drive();
}

// Stopping (graceful stop, or a reload retiring this listener): a busy connection answers its
// request with "Connection: close"; an idle one stays open a moment, so that a request a client
// sent just now is answered (with close) rather than cut off, then closes.
void ClientConn::on_stop() {
  // A busy connection finishes its exchange as promised (its response may already say
  // keep-alive) and then idles as below; its next request is answered with close.
  if (state_ != State::kIdle || !in_.empty()) return;
  timer_.arm(kStopLinger);
  readable_ = true;  // look once: a request may already be waiting
  drive();
}

void ClientConn::drive() {
  for (int steps = 0; !closed_; ++steps) {
    if (steps == kStepsPerTurn) {
      resume_.arm(Millis(0));
      return;
    }
    bool progress = false;
    switch (state_) {
      case State::kIdle:
      case State::kHead: progress = step_head(); break;
      case State::kConnecting:
      case State::kCacheWait: return;
      case State::kExchange: progress = step_exchange(); break;
      case State::kTunnel: progress = step_tunnel(); break;
      case State::kLocal:
      case State::kClosing: progress = step_flush(); break;
      case State::kLinger: progress = step_linger(); break;
    }
    if (!progress) break;
  }
  if (!closed_ && state_ == State::kIdle && in_.empty()) {
    in_.release();  // an idle keep-alive connection holds no buffer
    out_.release_if_empty();
  }
}

int ClientConn::read_into(Transport& t, Buffer& buf, bool* readable, bool* eof, bool hup) {
  if (!*readable || *eof) return 0;
  if (!buf.reserve(1)) return 0;
  char* at = buf.space();
  size_t room = buf.space_size();
  ssize_t n = t.read(at, room);
  if (n > 0) {
    buf.produced(static_cast<size_t>(n));
    // A short read took all the socket had (TCP copies while data is queued), and bytes that
    // come later raise a new edge: no recv is spent on seeing EAGAIN. Unless the peer's FIN came
    // with the edge we woke for: no new edge would tell of it, so read on to the end. (TLS reads
    // a record at a time: there, only EAGAIN says all is read.)
    if (static_cast<size_t>(n) < room && !hup && t.short_read_drains()) *readable = false;
    return 1;
  }
  if (n == 0) {
    *eof = true;
    return 1;
  }
  if (errno == EAGAIN || errno == EINTR) {
    *readable = false;
    return 0;
  }
  return -1;
}

ssize_t ClientConn::write_client(std::string_view body, bool* progress) {
  if (!writable_ || (out_.empty() && body.empty())) return 0;
  ssize_t n = tr_->write2(out_.view(), body);
  if (n < 0) {
    if (errno == EAGAIN) writable_ = false;
    else if (errno != EINTR) return close("client write failed"), -1;
    return 0;
  }
  *progress = true;
  size_t w = static_cast<size_t>(n);
  x_.bytes += w;
  client_bytes_ += w;
  size_t from_out = std::min(w, out_.size());
  out_.consume(from_out);
  return static_cast<ssize_t>(w - from_out);
}

// ---- request head ----------------------------------------------------------------------------

bool ClientConn::step_head() {
  if (in_.empty()) {
    int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
    if (r < 0) return close("read error"), false;
    if (read_eof_ && in_.empty()) return close("client closed"), false;
    if (r == 0) return false;
  }
  if (fresh_ && !stream_) {
    // HTTP/2: ALPN said so, or the client starts with the preface (RFC 9113 3.4; h2c with prior
    // knowledge on a plain listener). The session takes the connection and what was read.
    constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    std::string_view got = in_.view().substr(0, kPreface.size());
    if (tr_->alpn() == "h2" || got == kPreface) {
      handed_off_ = true;
      start_h2_session(l_, std::move(fd_), std::move(tr_), peer_, in_.view(), std::move(hold_));
      in_.clear();
      return close("http/2"), false;
    }
    if (kPreface.starts_with(got)) {  // a part of the preface: wait for the rest
      if (read_eof_) return close("client closed mid-head"), false;
      int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
      if (r < 0) close("read error");
      return r > 0;
    }
    fresh_ = false;
  }
  if (state_ == State::kIdle) {
    set_state(State::kHead);  // the header timeout runs from the first byte of the request
    req_parser_.reset();
    method_ = Method::kOther;  // until parsed: a 400 or 408 answers no HEAD
  }
  RequestHead head;
  ParseResult pr = req_parser_.parse(in_.view(), ctx_.fields, &head);
  if (pr.done()) {
    on_request(head, pr.consumed);
    return true;
  }
  if (pr.failed()) {
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: %s (%d)", l_.spec_.name.c_str(), peer_ip_,
                        std::string(parse_error_name(pr.error)).c_str(), pr.http_status());
    send_local(pr.http_status(), true);
    return true;
  }
  // Need more. The parser refuses a head over max_header_bytes itself; the buffer grows once (to
  // 64 KiB) to hold one up to that size.
  if (in_.full() && !in_.grow()) {
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: head over the buffer (431)", l_.spec_.name.c_str(),
                        peer_ip_);
    send_local(431, true);
    return true;
  }
  if (read_eof_) return close("client closed mid-head"), false;
  int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
  if (r < 0) close("read error");
  return r > 0;
}

void ClientConn::on_request(const RequestHead& head, size_t head_len) {
  fresh_ = false;
  observe_request(l_.metrics_, x_, head);
  x_.http2 = stream_;
  method_ = head.method;
  client_http10_ = head.version == Version::kHttp10;
  keep_alive_ = head.keep_alive && !l_.stopping_;
  std::string_view authority, path, query;
  bool has_query = false;
  split_target(head.target, head.target_form, &authority, &path, &query, &has_query);
  // RFC 9112 3.2.2: with an absolute-form target, its authority is the host, whatever Host says.
  bool absolute = head.target_form == TargetForm::kAbsolute && !authority.empty();
  std::string_view host = absolute || !head.has_host ? authority : head.host;
  // What is left of a refused request (its body) cannot be told from a next request: close.
  bool close_after = !keep_alive_ || head.has_body();
  if (l_.guard_) {  // protect: rate, rules on the target as received, Content-Length over the limit
    protect::Verdict v = l_.guard_->check_request(peer_, peer_ip_, head.target, head.headers, head.content_length,
                                                  ctx_.loop.now(), l_.metrics_);
    if (v.status) {
      in_.consume(head_len);
      x_.refusal = v.reason;
      return send_local(v.status, close_after, v.extra());
    }
  }

  ForwardTarget target;
  int route = 0;  // a forward proxy's cache, if any, is in slot 0
  if (l_.forward_) {  // a forward proxy: the target names the origin
    if (int refused = l_.forward_->admit(head, peer_ip_, x_, &target)) {
      in_.consume(head_len);
      return send_local(refused, close_after);
    }
    backend_ = x_.backend = -1;
  } else {
    RouteInput ri{head.method_text, host, path, query, head.headers};
    route = l_.router_->match(ri);
    if (route < 0 || head.target_form == TargetForm::kAuthority || head.target_form == TargetForm::kAsterisk) {
      in_.consume(head_len);
      return send_local(route < 0 ? 404 : 501, close_after);
    }
    backend_ = l_.route_backend_[static_cast<size_t>(route)];
    x_.backend = backend_;
    if (backend_ < 0) {  // a static route: fulcrum serves the file itself
      in_.consume(head_len);
      return serve_static(*l_.statics_[static_cast<size_t>(route)], head, path, close_after);
    }
  }
  auto r = static_cast<size_t>(route);
  cache::KeyParts key{fwd_https() ? "https" : "http", host, path, query, has_query};
  switch (cache_.begin(r < l_.caches_.size() ? l_.caches_[r].get() : nullptr, head, in_.view().substr(0, head_len),
                       key, ctx_.loop, [this] { on_cache_wake(); }, l_.metrics_)) {
    case cache::Session::Start::kServe: in_.consume(head_len); return serve_cached(close_after, "HIT");
    case cache::Session::Start::kWait: return set_state(State::kCacheWait);  // the head stays in in_
    case cache::Session::Start::kNotCached: in_.consume(head_len); return send_local(504, close_after);
    case cache::Session::Start::kForward: break;
  }

  tried_.clear();
  attempts_ = 0;
  client_bytes_ = 0;
  upstream::Server* first = l_.forward_ ? nullptr : choose(&head, path, query);
  // The head goes out as we rewrite it; it stays whole in req_head_ until a response starts, so
  // that a retry can send it again.
  RequestForward fwd;
  fwd.path = path;
  fwd.query = query;
  fwd.has_query = has_query;
  fwd.host = host;
  if (first) fwd.fallback_host = first->address_text();
  fwd.replace_host = absolute;
  fwd.client_ip = peer_ip_;
  fwd.https = fwd_https();
  fwd.strip_expect = head.expect_continue;
  fwd.strip_conditionals = cache_.strip_conditionals();
  fwd.extra_fields = cache_.upstream_fields();
  req_head_.clear();
  bool head_fits = write_request_head(req_head_, head, fwd);
  in_.consume(head_len);  // `head` is not used past this point
  if (!head_fits) return send_local(431, true);

  req_body_ = head.body;
  req_left_ = head.body == BodyKind::kContentLength ? head.content_length : 0;
  req_done_ = !head.has_body();
  req_chunks_.reset();
  req_scanned_ = 0;
  req_body_sent_ = false;
  tunnel_ = head.upgrade;
  // RFC 9110 10.1.1: a client that sent "Expect: 100-continue" may wait for our go before it
  // sends the body. We give it when a server is reached, and do not pass the expectation on:
  // backends differ in whether they answer it, and a client left waiting costs a second.
  expect_continue_ = head.expect_continue && !req_done_ && in_.empty();
  // A chunked body that came with the head is checked before anything goes upstream, so a bad
  // chunk size sent along with its head never reaches a backend.
  if (req_body_ == BodyKind::kChunked && request_body_ready() == kBadBody) {
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: bad chunked body", l_.spec_.name.c_str(),
                        peer_ip_);
    return send_local(400, true);
  }
  if (req_body_ == BodyKind::kChunked && l_.guard_ && l_.guard_->body_too_large(req_chunks_.data_bytes(), peer_ip_))
    return send_local(413, true);
  if (l_.forward_) return forward_connect(target);
  if (first == nullptr) {
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: no server available in backend %s", l_.spec_.name.c_str(),
                        ctx_.backends[backend_]->name().c_str());
    return send_local(503, !keep_alive_ || !req_done_);
  }
  connect_upstream(first);
}

upstream::Server* ClientConn::choose(const RequestHead* head, std::string_view path, std::string_view query) {
  auto& backend = *ctx_.backends[backend_];
  const auto& spec = backend.spec();
  lb::Picker& picker = *ctx_.pickers[backend_];
  if (head && spec.sticky) {
    sticky_index_ = -1;
    std::string_view id;
    if (find_cookie(head->headers, spec.sticky->cookie, &id)) {
      auto& ids = ctx_.sticky_ids[backend_];
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] != id) continue;
        sticky_index_ = static_cast<int>(i);
        upstream::Server* s = backend.servers()[i].get();
        if (picker.serving(*s)) return s;
        break;  // down or drained: balanced like a new client, and given a new cookie
      }
    }
  }
  lb::PickContext ctx;
  ctx.client = &peer_;
  ctx.tried = &tried_;
  if (head && spec.balance == "hash") {
    std::string_view key;
    switch (spec.hash_key.kind) {
      case config::HashKey::Kind::kIp: break;
      case config::HashKey::Kind::kHeader: find_header(head->headers, spec.hash_key.name, &key); break;
      case config::HashKey::Kind::kCookie: find_cookie(head->headers, spec.hash_key.name, &key); break;
      case config::HashKey::Kind::kQuery: find_query_param(query, spec.hash_key.name, &key); break;
      case config::HashKey::Kind::kPath: key = path; break;
    }
    ctx.key = key;
  }
  return picker.pick(ctx);
}

// ---- upstream --------------------------------------------------------------------------------

void ClientConn::connect_upstream(upstream::Server* server) {
  ++attempts_;
  tried_.add(server->index());
  server_ = server;
  server_->begin();
  x_.server = static_cast<int>(server->index());
  req_head_sent_ = 0;
  resp_head_done_ = resp_started_ = resp_done_ = false;
  up_eof_ = false;
  resp_parser_.reset();
  if (!connect_tunnel_ && (up_ = ctx_.pool.take(server_))) {  // a tunnel gets a connection of its own
    up_->owner = this;
    up_->writable = true;  // try; EAGAIN tells otherwise
    return begin_exchange();
  }
  int err = 0;
  up_ = ctx_.pool.open(server_, backend_ >= 0 ? ctx_.backend_tls[backend_].get() : nullptr, &err);
  if (up_ == nullptr) return upstream_failed("connect", err, true, false);
  up_->owner = this;
  set_state(State::kConnecting);
  if (up_->connected) {
    int h = up_->io->handshake();
    if (h < 0) return upstream_failed("tls handshake", errno ? errno : EPROTO, true, false);
    if (h > 0) begin_exchange();
  }
}

void ClientConn::begin_exchange() {
  up_->connected = true;
  up_->writable = true;
  sent_at_ = Clock::now();
  if (connect_tunnel_) {  // RFC 9110 9.3.6: 2xx, then the connection is a tunnel
    connect_tunnel_ = false;
    req_head_.clear();
    x_.status = 200;
    keep_alive_ = false;
    if (!out_.append("HTTP/1.1 200 Connection Established\r\n\r\n")) return close("no buffer");
    return set_state(State::kTunnel);
  }
  set_state(State::kExchange);
  if (expect_continue_) {
    expect_continue_ = false;
    if (in_.empty() && !out_.append(kContinue)) return close("no buffer");
  }
}

void ClientConn::upstream_failed(const char* why, int err, bool connecting, bool timeout) {
  if (resp_head_done_) return close("backend failed mid-response");
  if (resolving_) FULCRUM_LOG_LIMITED(kWarn, "listener %s: name lookup: %s", l_.spec_.name.c_str(), why);
  stop_resolving();
  upstream::Server* failed = server_;
  bool reused = up_ && up_->reused;
  // A pooled connection the server closed while it idled (it answered nothing, and we did not
  // time out waiting) says nothing about the server: try again on a fresh connection.
  bool stale = reused && !timeout && !resp_started_;
  if (failed) {
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: backend %s server %s (%s): %s: %s%s", l_.spec_.name.c_str(),
                        backend().name().c_str(), failed->name().c_str(), failed->address_text().c_str(), why, strerror(err), reused ? " (reused connection)" : "");
    failed->end();
    if (!stale) {
      failed->record_failure();
      failed->report_outcome(false);
    }
    server_ = nullptr;
  }
  release_upstream(false);
  // What may be sent again (RFC 9110 9.2.2): nothing reached a server that refused the connect;
  // an idempotent request whose body we still hold whole and that got no byte of answer; and any
  // request whose head had not gone out on a stale pooled connection. Never after a response
  // timeout: the server may still be working on it, and the client has waited long enough.
  bool retryable = !resp_started_ && !req_body_sent_ && (!timeout || connecting) &&
                   (connecting || idempotent(method_) || (stale && req_head_sent_ == 0));
  const auto& spec = backend().spec();
  if (retryable && failed && (stale || attempts_ <= spec.retries)) {
    upstream::Server* next = nullptr;
    if (stale) {
      --attempts_;  // not the server's fault: the same server again, on a fresh connection
      if (backend_ < 0 || ctx_.pickers[backend_]->serving(*failed)) next = failed;
    }
    if (next == nullptr) next = choose(nullptr, {}, {});
    if (next) return connect_upstream(next);
  }
  // A forward proxy's name with several addresses: a refused connect moves on to the next one.
  if (backend_ < 0 && connecting && !timeout && failed)
    if (upstream::Server* next = l_.forward_->next_origin(target_, *failed)) return connect_upstream(next);
  send_local(timeout ? 504 : 502, !keep_alive_ || !req_done_);
}

void ClientConn::bad_response(const char* why) {
  FULCRUM_LOG_LIMITED(kWarn, "listener %s: backend %s server %s: bad response: %s", l_.spec_.name.c_str(),
                      backend().name().c_str(), server_->name().c_str(), why);
  server_->record_failure();
  server_->report_outcome(false);
  send_local(502, true);
}

void ClientConn::release_upstream(bool reuse) {
  if (!up_) return;
  if (reuse) ctx_.pool.put(up_);
  else ctx_.pool.close(up_);
  up_ = nullptr;
}

size_t ClientConn::request_body_ready() {
  if (req_body_ == BodyKind::kContentLength) return static_cast<size_t>(std::min<uint64_t>(in_.size(), req_left_));
  if (req_body_ != BodyKind::kChunked) return 0;
  std::string_view rest = in_.view().substr(req_scanned_);
  while (!rest.empty() && !req_chunks_.done()) {
    ChunkStep s = req_chunks_.decode(rest);
    if (s.event == ChunkEvent::kError) return kBadBody;
    req_scanned_ += s.consumed;
    rest.remove_prefix(s.consumed);
    if (s.event == ChunkEvent::kNeedMore) break;
  }
  return req_scanned_;
}

size_t ClientConn::response_body_ready() {
  Buffer& in = up_->in;
  switch (resp_body_) {
    case BodyKind::kContentLength: return static_cast<size_t>(std::min<uint64_t>(in.size(), resp_left_));
    case BodyKind::kUntilClose:
    case BodyKind::kTunnel: return in.size();
    case BodyKind::kChunked: {
      std::string_view rest = in.view().substr(resp_scanned_);
      while (!rest.empty() && !resp_chunks_.done()) {
        ChunkStep s = resp_chunks_.decode(rest);
        if (s.event == ChunkEvent::kError) return kBadBody;
        resp_scanned_ += s.consumed;
        rest.remove_prefix(s.consumed);
        if (s.event == ChunkEvent::kNeedMore) break;
      }
      return resp_scanned_;
    }
    case BodyKind::kNone: return 0;
  }
  return 0;
}

bool ClientConn::response_body_complete() const {
  switch (resp_body_) {
    case BodyKind::kNone: return true;
    case BodyKind::kContentLength: return resp_left_ == 0;
    case BodyKind::kChunked: return resp_chunks_.done() && resp_scanned_ == 0;
    case BodyKind::kUntilClose: return up_eof_ && up_->in.empty();
    case BodyKind::kTunnel: return false;
  }
  return false;
}

// ---- exchange --------------------------------------------------------------------------------

// One round of an exchange: request bytes up, response bytes down, then whatever ends it. Each
// part may change the state (a local error, a retry, a tunnel); the drive loop then dispatches.
bool ClientConn::step_exchange() {
  bool progress = send_request();
  if (closed_ || state_ != State::kExchange) return true;
  if (!resp_head_done_) {
    progress |= read_response_head();
    if (closed_ || state_ != State::kExchange) return true;
    if (!resp_head_done_) {
      // Interim responses (ours or the backend's) go out while the final one is awaited.
      if (write_client({}, &progress) < 0) return true;
      return progress;
    }
  }
  // The head (in out_) and the first body bytes go out together.
  progress |= forward_response_body();
  if (closed_ || state_ != State::kExchange) return true;
  if (!resp_done_ || !out_.empty()) return progress;
  if (req_done_ && req_head_sent_ == req_head_.size()) {
    finish_exchange();
    return true;
  }
  // The backend answered before the request body was in (an early 413, say): neither connection
  // can carry another request (the response said "Connection: close").
  cache_.abort();
  release_upstream(false);
  server_->end();
  server_ = nullptr;
  if (l_.metrics_) l_.metrics_->end_http(x_, peer_, Clock::now());
  set_state(State::kClosing);
  return true;
}

// The request head and body to the upstream; more body from the client once all we hold is out.
bool ClientConn::send_request() {
  if (req_head_sent_ == req_head_.size() && req_done_) return false;
  bool progress = false;
  size_t body = request_body_ready();
  bool too_large = body != kBadBody && req_body_ == BodyKind::kChunked && l_.guard_ &&
                   l_.guard_->body_too_large(req_chunks_.data_bytes(), peer_ip_);  // protect.max_body_bytes
  if (body == kBadBody || too_large) {
    if (!too_large)
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: bad chunked request body", l_.spec_.name.c_str(), peer_ip_);
    if (resp_head_done_) return close("bad request body"), true;
    server_->end();
    server_ = nullptr;
    release_upstream(false);  // the backend has a part of a request: that connection is spoilt
    send_local(too_large ? 413 : 400, true);
    return true;
  }
  std::string_view head = req_head_.view().substr(req_head_sent_);
  if (up_->writable && (!head.empty() || body > 0)) {
    ssize_t n = up_->io->write2(head, in_.view().substr(0, body));
    if (n > 0) {
      progress = true;
      size_t w = static_cast<size_t>(n);
      size_t from_head = std::min(w, head.size());
      req_head_sent_ += from_head;
      w -= from_head;
      if (w > 0) {
        req_body_sent_ = true;
        in_.consume(w);
        if (req_body_ == BodyKind::kContentLength) {
          req_left_ -= w;
          req_done_ = req_left_ == 0;
        } else {
          req_scanned_ -= w;
          req_done_ = req_scanned_ == 0 && req_chunks_.done();
        }
      }
      if (!resp_head_done_) timer_.arm(response_timeout());  // the backend is taking what we send
    } else if (n < 0 && errno == EAGAIN) {
      up_->writable = false;
    } else if (n < 0 && errno != EINTR) {
      upstream_failed("send", errno, false, false);
      return true;
    }
  }
  // More body from the client, while the buffer has room (memory stays at one small block per
  // direction however large the body: the client is read only as fast as the backend takes it).
  if (!req_done_ && in_.size() == request_body_ready() && !in_.full()) {
    int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
    if (r < 0) return close("client read error"), true;
    if (read_eof_) return close("client closed mid-body"), true;
    if (r > 0) progress = true;
  }
  return progress;
}

bool ClientConn::read_response_head() {
  bool progress = false;
  int r = read_into(*up_->io, up_->in, &up_->readable, &up_eof_, up_->hup);
  if (r < 0) {
    upstream_failed("recv", errno, false, false);
    return true;
  }
  if (r > 0) progress = true;
  while (!up_->in.empty()) {
    resp_started_ = true;
    ResponseHead head;
    ParseResult pr = resp_parser_.parse(up_->in.view(), ctx_.response_fields, &head, method_);
    if (pr.failed()) {
      bad_response(std::string(parse_error_name(pr.error)).c_str());
      return true;
    }
    if (pr.need_more()) break;
    if (head.informational() && head.status != 101) {
      // 1xx interim responses go on to 1.1 clients (RFC 9110 15.2), and parsing goes on.
      if (!client_http10_ && !write_interim_head(out_, head)) return close("interim response too large"), true;
      up_->in.consume(pr.consumed);
      resp_parser_.reset();
      continue;
    }
    return on_response_head(head, pr.consumed) || progress;
  }
  if (up_eof_) {
    upstream_failed(resp_started_ ? "closed mid-head" : "closed before responding", ECONNRESET, false, false);
    return true;
  }
  return progress;
}

bool ClientConn::on_response_head(const ResponseHead& head, size_t head_len) {
  // RFC 9110 15.2.2: a server switches protocols only when asked to.
  if (head.status == 101 && !tunnel_) return bad_response("101 to a request without Upgrade"), true;
  // Codings other than chunked cannot be undone for a 1.0 client (RFC 9112 6.1).
  if (head.other_transfer_codings && client_http10_) return bad_response("transfer coding for HTTP/1.0"), true;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at_).count();
  server_->record_time_us(static_cast<uint32_t>(std::min<long long>(us, 0xffffffffLL)));
  server_->report_outcome(true);
  resp_head_done_ = true;
  x_.status = head.status;
  resp_body_ = head.body;
  resp_left_ = head.content_length;
  resp_chunks_.reset();
  dechunk_decoder_.reset();
  resp_scanned_ = 0;
  upstream_keep_alive_ = head.keep_alive;
  dechunk_ = head.body == BodyKind::kChunked && client_http10_;
  if (head.body == BodyKind::kUntilClose || dechunk_ || !req_done_) keep_alive_ = false;
  if (cache_.on_response(head) == cache::Session::Reply::kServe) {  // a 304 refreshed the entry:
    up_->in.consume(head_len);                                      // answer from it (no body)
    x_.status = cache_.status();
    dechunk_ = false;
    if (!cache_.write_response(out_, keep_alive_, client_http10_, "REVALIDATED")) return close("no buffer"), true;
    return true;
  }

  const auto& spec = backend().spec();
  ResponseForward fwd;
  fwd.extra_fields = cache_.x_cache_field();
  fwd.keep_alive = keep_alive_;
  fwd.client_http10 = client_http10_;
  fwd.dechunk = dechunk_;
  if (spec.sticky && sticky_index_ != static_cast<int>(server_->index())) {
    fwd.cookie_name = spec.sticky->cookie;
    fwd.cookie_value = ctx_.sticky_ids[backend_][server_->index()];
  }
  bool ok = write_response_head(out_, head, fwd);
  up_->in.consume(head_len);
  if (!ok) return close("response head too large"), true;
  if (head.body == BodyKind::kTunnel) {
    // From here on raw bytes both ways (RFC 9110 7.8).
    req_done_ = true;
    set_state(State::kTunnel);
  }
  return true;
}

// The response body to the client, as it comes; chunked bodies are checked as they pass.
bool ClientConn::forward_response_body() {
  bool progress = false;
  if (resp_done_) return write_client({}, &progress) < 0 || progress;
  size_t body = response_body_ready();
  if (body == kBadBody) {
    if (client_bytes_ > 0) return close("bad chunked response body"), true;
    out_.clear();  // nothing of it went out yet: the client can still have a clean 502
    bad_response("bad chunked body");
    return true;
  }
  std::string_view send_body = up_->in.view().substr(0, body);
  if (dechunk_) {
    size_t used = dechunk_into_out(body);
    if (used > 0) progress = true;
    send_body = {};
    body -= used;
  }
  ssize_t w = write_client(send_body, &progress);
  if (w < 0) return true;
  if (w > 0) {
    size_t n = static_cast<size_t>(w);
    cache_.tee(up_->in.view().substr(0, n));
    up_->in.consume(n);
    body -= n;
    if (resp_body_ == BodyKind::kContentLength) resp_left_ -= n;
    if (resp_body_ == BodyKind::kChunked) resp_scanned_ -= n;
    timer_.arm(response_timeout());
  }
  if (response_body_complete()) {
    resp_done_ = true;
    return true;
  }
  // Everything buffered is on its way: read more (the buffer drains before it is refilled, so a
  // slow client holds back the backend rather than filling our memory).
  if (body == up_->in.size() && body == 0) {
    if (up_eof_) {
      if (resp_body_ != BodyKind::kUntilClose) return close("backend closed mid-body"), true;
      return progress;
    }
    int r = read_into(*up_->io, up_->in, &up_->readable, &up_eof_, up_->hup);
    if (r < 0) return close("backend read error"), true;
    if (r > 0) progress = true;
  }
  return progress;
}

// For an HTTP/1.0 client: the data of the validated chunks at the front of up_->in, into out_ as
// far as it has room. Returns the bytes of up_->in used.
size_t ClientConn::dechunk_into_out(size_t body) {
  std::string_view rest = up_->in.view().substr(0, body);
  size_t used = 0;
  while (!rest.empty()) {
    out_.space();
    size_t room = out_.space_size();
    if (room == 0) break;
    ChunkStep s = dechunk_decoder_.decode(rest.substr(0, std::min(rest.size(), room)));
    if (s.event == ChunkEvent::kData) out_.append(s.bytes);
    used += s.consumed;
    rest.remove_prefix(s.consumed);
    if (s.event == ChunkEvent::kDone || s.event == ChunkEvent::kError || s.consumed == 0) break;
  }
  cache_.tee(up_->in.view().substr(0, used));
  up_->in.consume(used);
  resp_scanned_ -= used;
  return used;
}

void ClientConn::finish_exchange() {
  cache_.commit();
  bool reuse = upstream_keep_alive_ && resp_body_ != BodyKind::kUntilClose && up_->in.empty() && !up_eof_;
  release_upstream(reuse);
  server_->end();
  server_ = nullptr;
  req_head_.release();
  if (l_.metrics_) l_.metrics_->end_http(x_, peer_, Clock::now());
  // A client that half-closed after its last request still gets answers to all it sent.
  if (!keep_alive_ || (read_eof_ && in_.empty())) return set_state(State::kClosing);
  set_state(cache_.sending() ? State::kLocal : State::kIdle);  // a revalidated entry's body is still to go
}

// ---- forward proxy ---------------------------------------------------------------------------

void ClientConn::forward_connect(const ForwardTarget& target) {
  target_ = target;
  connect_tunnel_ = target.tunnel;
  int status = 0;
  if (upstream::Server* origin = l_.forward_->origin(target, this, &status)) return connect_upstream(origin);
  if (status != 0) return send_local(status, !keep_alive_ || !req_done_);
  resolving_ = true;
  set_state(State::kConnecting);  // connect_timeout covers the lookup too
}

void ClientConn::on_origin(upstream::Server* origin, int status) {
  resolving_ = false;
  if (origin) connect_upstream(origin);
  else send_local(status, !keep_alive_ || !req_done_);
  drive();
}

void ClientConn::stop_resolving() {
  if (!resolving_) return;
  resolving_ = false;
  l_.forward_->cancel(this);
}

// ---- tunnel ----------------------------------------------------------------------------------

bool ClientConn::step_tunnel() {
  bool progress = false;
  // client -> upstream
  if (!in_.empty() && up_->writable) {
    ssize_t n = up_->io->write2(in_.view(), {});
    if (n > 0) {
      in_.consume(static_cast<size_t>(n));
      progress = true;
    } else if (n < 0 && errno == EAGAIN) {
      up_->writable = false;
    } else if (n < 0 && errno != EINTR) {
      return close("tunnel upstream write"), false;
    }
  }
  if (in_.empty() && !read_eof_) {
    int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
    if (r < 0) return close("tunnel client read"), false;
    if (r > 0) progress = true;
    if (read_eof_ && in_.empty()) up_->io->shutdown_write();
  }
  // upstream -> client (out_ first: the 101 head)
  ssize_t w = write_client(up_->in.view(), &progress);
  if (w < 0) return false;
  up_->in.consume(static_cast<size_t>(w));
  if (up_->in.empty() && !up_eof_) {
    int r = read_into(*up_->io, up_->in, &up_->readable, &up_eof_, up_->hup);
    if (r < 0) return close("tunnel upstream read"), false;
    if (r > 0) progress = true;
    if (up_eof_ && up_->in.empty() && out_.empty()) tr_->shutdown_write();
  }
  if (progress) timer_.arm(l_.idle_timeout_);
  if (read_eof_ && up_eof_ && in_.empty() && up_->in.empty() && out_.empty()) return close("tunnel done"), false;
  return progress;
}

// ---- local responses and closing -------------------------------------------------------------

void ClientConn::send_local(int status, bool close_after, std::string_view extra) {
  cache_.abort();
  if (server_) {
    server_->end();
    server_ = nullptr;
  }
  release_upstream(false);
  if (close_after) keep_alive_ = false;
  // out_ may still hold an interim response: this one follows it.
  if (!write_local_response(out_, status, !keep_alive_, method_ == Method::kHead, extra)) return close("no buffer");
  if (l_.metrics_) l_.metrics_->local_response(x_, status, out_.size(), peer_, Clock::now());
  set_state(keep_alive_ ? State::kLocal : State::kClosing);
}

void ClientConn::serve_static(const staticfiles::StaticSite& site, const RequestHead& head, std::string_view path,
                              bool close_after) {
  if (close_after) keep_alive_ = false;
  staticfiles::FileReply reply = site.serve(head.method, path, head.headers, !keep_alive_, out_);
  x_.status = reply.status;
  file_ = std::move(reply.file);
  file_off_ = reply.offset;
  file_left_ = file_ ? reply.length : 0;
  static_pending_ = true;
  set_state(keep_alive_ ? State::kLocal : State::kClosing);
}

// The head goes out corked (MSG_MORE) so the kernel sends it in one segment with the file's
// first bytes; the file goes from the page cache to the socket with sendfile(2), no copy here.
bool ClientConn::send_file(bool* progress) {
  if (!out_.empty()) {
    if (!writable_) return false;
    ssize_t n = tr_->write2(out_.view(), {}, true);
    if (n < 0) {
      if (errno == EAGAIN) writable_ = false;
      else if (errno != EINTR) return close("client write failed"), false;
      return false;
    }
    *progress = true;
    x_.bytes += static_cast<size_t>(n);
    out_.consume(static_cast<size_t>(n));
    if (!out_.empty()) return false;
  }
  while (file_left_ > 0 && writable_) {
    ssize_t n = tr_->send_file(file_.get(), file_off_, static_cast<size_t>(std::min<uint64_t>(file_left_, 1 << 20)));
    if (n > 0) {
      *progress = true;
      file_off_ += static_cast<uint64_t>(n);
      file_left_ -= static_cast<uint64_t>(n);
      x_.bytes += static_cast<size_t>(n);
      timer_.arm(l_.idle_timeout_);
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      writable_ = false;
      break;
    }
    if (n < 0 && errno == EINTR) continue;
    return close(n == 0 ? "file shrank while sent" : "sendfile failed"), false;
  }
  return file_left_ == 0;
}

bool ClientConn::step_flush() {
  bool progress = false;
  if (file_left_ > 0) {
    if (!send_file(&progress)) return progress && !closed_;
  } else if (cache_.sending()) {
    ssize_t w = write_client(cache_.body_left(), &progress);  // from the entry's memory, no copy
    if (w < 0) return false;
    cache_.body_sent(static_cast<size_t>(w));
    if (cache_.sending()) return progress;
  } else if (write_client({}, &progress) < 0) {
    return false;
  }
  if (!out_.empty()) return progress;
  if (static_pending_) {
    static_pending_ = false;
    file_.reset();
    if (l_.metrics_) l_.metrics_->end_http(x_, peer_, Clock::now());
  }
  if (state_ == State::kClosing) {
    // Half-close: the client reads the whole response, then sees the end.
    tr_->shutdown_write();
    if (read_eof_) return close("done"), false;
    set_state(State::kLinger);
    return true;
  }
  set_state(State::kIdle);
  return true;
}

// An answer from the cache; like a static file, it is logged once flushed (step_flush).
void ClientConn::serve_cached(bool close_after, std::string_view how) {
  if (close_after) keep_alive_ = false;
  x_.status = cache_.status();
  if (!cache_.write_response(out_, keep_alive_, client_http10_, how)) return close("no buffer");
  static_pending_ = true;
  set_state(keep_alive_ ? State::kLocal : State::kClosing);
}

// The fill this request waited for is over (or the wait timed out): parse the request again,
// which still sits whole in in_, and look it up again (now a hit, or straight upstream).
void ClientConn::on_cache_wake() {
  if (closed_ || state_ != State::kCacheWait) return;
  cache_.stop_waiting();
  set_state(State::kHead);
  drive();
}

bool ClientConn::step_linger() {
  in_.clear();
  int r = read_into(*tr_, in_, &readable_, &read_eof_, hup_);
  in_.clear();
  if (r < 0 || read_eof_) return close("done"), false;
  return r > 0;
}

void ClientConn::close(const char* why) {
  if (closed_) return;
  closed_ = true;
  cache_.abort();
  FULCRUM_LOG(kDebug, "http connection %s closed: %s", peer_.to_string().c_str(), why);
  stop_resolving();
  timer_.cancel();
  resume_.cancel();
  if (server_) {
    server_->end();
    server_ = nullptr;
  }
  release_upstream(false);
  if (l_.metrics_) {
    l_.metrics_->end_http(x_, peer_, Clock::now());  // a request cut short: logged as 499
    if (!stream_ && !handed_off_) l_.metrics_->on_close();  // the session counts its own
  }
  tr_.reset();  // before the socket it writes to
  fd_.reset();
  in_.release();
  out_.release();
  req_head_.release();
  if (prev_) prev_->next_ = next_;
  else l_.first_ = next_;
  if (next_) next_->prev_ = prev_;
  prev_ = next_ = nullptr;
  if (!handed_off_) l_.connections_.fetch_sub(1, std::memory_order_relaxed);
  ctx_.loop.defer_delete(this);
}

IoHandler* start_stream_exchange(HttpListener& l, std::unique_ptr<Transport> tr, const SocketAddress& peer) {
  auto* conn = new ClientConn(l, Fd(), std::move(tr), peer);
  conn->set_stream();
  conn->next_ = l.first_;
  if (l.first_) l.first_->prev_ = conn;
  l.first_ = conn;
  l.connections_.fetch_add(1, std::memory_order_relaxed);
  conn->start();
  return conn;
}

// ---- listener --------------------------------------------------------------------------------

HttpListener::HttpListener(HttpContext& ctx, const config::Config& cfg, const config::Listener& spec,
                           std::shared_ptr<const Router> router, Fd fd)
    : ctx_(ctx), cfg_(cfg), spec_(spec), router_(std::move(router)), fd_(std::move(fd)) {
  for (auto& r : spec_.routes) {
    int bi = -1;
    for (size_t i = 0; i < cfg_.backends.size(); ++i)
      if (!r.static_site && cfg_.backends[i].name == r.backend) bi = static_cast<int>(i);
    route_backend_.push_back(bi);
    statics_.push_back(r.static_site ? std::make_unique<staticfiles::StaticSite>(*r.static_site) : nullptr);
    if (statics_.back() && !statics_.back()->ok())
      FULCRUM_LOG(kError, "listener %s: %s", spec_.name.c_str(), statics_.back()->error().c_str());
  }
  if (spec_.protocol == config::Protocol::kForwardProxy)
    forward_ = std::make_unique<ForwardProxy>(ctx_.loop, ctx_.pool, spec_);
  if (spec_.protect) {
    header_timeout_ = spec_.protect->header_timeout;
    idle_timeout_ = spec_.protect->idle_timeout;
    max_header_bytes_ = spec_.protect->max_header_bytes;
  }
  if (auto r = ctx_.loop.add(fd_.get(), this, EPOLLIN); !r)
    FULCRUM_LOG(kError, "listener %s: %s", spec_.name.c_str(), r.error().message.c_str());
}

HttpListener::~HttpListener() {
  if (fd_) ctx_.loop.remove(fd_.get());
  while (h2_first_) h2_first_->close("listener closed");
  while (first_) first_->close("listener closed");
}

void HttpListener::on_io(uint32_t) {
  for (int i = 0; i < 64 && fd_; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int c = accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        FULCRUM_LOG_LIMITED(kError, "listener %s: accept: %s", spec_.name.c_str(), strerror(errno));
      return;
    }
    SocketAddress peer(reinterpret_cast<sockaddr*>(&ss), len);
    protect::ConnHold hold;
    if (guard_ && !guard_->admit(peer, ctx_.loop.now(), metrics_, &hold)) {  // allow/deny, max_conns_per_client
      protect::refuse_connection(c);
      continue;
    }
    std::unique_ptr<Transport> tr;
    if (tls_) {
      SSL* ssl = tls_->new_ssl(c);
      if (!ssl) {
        ::close(c);
        continue;
      }
      tr = std::make_unique<tls::TlsTransport>(ssl, true);
    } else {
      tr = std::make_unique<SocketTransport>(c);
    }
    auto* conn = new ClientConn(*this, Fd(c), std::move(tr), peer);
    conn->hold_ = std::move(hold);
    conn->next_ = first_;
    if (first_) first_->prev_ = conn;
    first_ = conn;
    connections_.fetch_add(1, std::memory_order_relaxed);
    if (metrics_) metrics_->on_accept();
    conn->start();
  }
}

void HttpListener::stop_accepting() {
  stopping_ = true;
  if (fd_) {
    ctx_.loop.remove(fd_.get());
    fd_.reset();
  }
  for (ClientConn* c = first_; c;) {
    ClientConn* next = c->next_;
    c->on_stop();
    c = next;
  }
  for (H2Session* s = h2_first_; s;) {  // GOAWAY; each closes once its streams are done
    H2Session* next = s->next_;
    s->on_stop();
    s = next;
  }
}

}  // namespace fulcrum::http
