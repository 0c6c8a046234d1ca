// The HTTP proxy's client connection, part 1 (client_conn.h has the state machine): the
// connection's life and I/O, the request head and routing, and the listener. Worker thread only.
#include "core/intrusive_list.h"
#include "http/client_conn.h"

#include <cstdio>

namespace fulcrum::http {
using namespace conn_detail;

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


ClientConn::ClientConn(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer,
                       std::string_view peer_ip)
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
  if (!peer_ip.empty() && peer_ip.size() < sizeof(peer_ip_))
    std::memcpy(peer_ip_, peer_ip.data(), peer_ip.size());
  else
    peer_.write_ip(peer_ip_, sizeof(peer_ip_));
  cache_.set_waker(ctx_.loop, [this] { on_cache_wake(); });
}

ClientConn::~ClientConn() {
  if (up_) ctx_.pool.close(up_);
}

void ClientConn::start() {
  if (stream_) {
    // No idle timer: the stream's request head is whole already and the session pokes the
    // exchange in this turn, which moves it to kHead (header_timeout) at once.
    state_ = State::kIdle;
    return;
  }
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
  observe_request(l_.metrics_, x_, head, ctx_.loop.now());
  x_.http2 = stream_;
  method_ = head.method;
  client_http10_ = head.version == Version::kHttp10;
  keep_alive_ = head.keep_alive && !l_.stopping_ && !stream_;  // an HTTP/2 stream: one exchange
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
                       key, l_.metrics_)) {
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
    protect::Accepted a{Fd(c), peer, std::move(hold)};
    size_t to = spread_ ? spread_->pick(worker_) : worker_;
    if (to == worker_) {
      adopt(std::move(a), false);
      continue;
    }
    // Another worker's copy holds clearly fewer: it takes the connection, counted as its own
    // from now on (a reload waiting for that copy to drain must not miss one on its way).
    spread_->listener(to)->connections_.fetch_add(1, std::memory_order_relaxed);
    spread_->hand_over(to, std::move(a));
  }
}

void HttpListener::adopt(protect::Accepted a, bool counted) {
  int c = a.fd.get();
  std::unique_ptr<Transport> tr;
  if (tls_) {
    SSL* ssl = tls_->new_ssl(c);
    if (!ssl) {  // the socket closes with `a`
      if (counted) connections_.fetch_sub(1, std::memory_order_relaxed);
      return connection_ended();
    }
    tr = std::make_unique<tls::TlsTransport>(ssl, true);
  } else {
    tr = std::make_unique<SocketTransport>(c);
  }
  auto* conn = new ClientConn(*this, std::move(a.fd), std::move(tr), a.peer);
  conn->hold_ = std::move(a.hold);
  ilist::push_front(first_, conn);
  if (!counted) connections_.fetch_add(1, std::memory_order_relaxed);
  if (metrics_) metrics_->on_accept();
  conn->start();
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
