// The HTTP proxy's client connection, part 2 (client_conn.h): the attempt on a server, the
// exchange streaming both ways, a forward proxy's origins, and tunnels. Worker thread only.
#include "http/client_conn.h"

namespace fulcrum::http {
using namespace conn_detail;

namespace {

// Checks chunked framing in `buf` from `*scanned` on (chunks are forwarded as they are, so the
// decoder only validates): returns how many bytes at the front of `buf` are checked and may go
// on, or kBadBody.
size_t scan_chunked(ChunkedDecoder& decoder, std::string_view buf, size_t* scanned) {
  std::string_view rest = buf.substr(*scanned);
  while (!rest.empty() && !decoder.done()) {
    ChunkStep s = decoder.decode(rest);
    if (s.event == ChunkEvent::kError) return kBadBody;
    *scanned += s.consumed;
    rest.remove_prefix(s.consumed);
    if (s.event == ChunkEvent::kNeedMore) break;
  }
  return *scanned;
}

}  // namespace

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
  sent_at_ = ctx_.loop.now();
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
  return scan_chunked(req_chunks_, in_.view(), &req_scanned_);
}

size_t ClientConn::response_body_ready() {
  Buffer& in = up_->in;
  switch (resp_body_) {
    case BodyKind::kContentLength: return static_cast<size_t>(std::min<uint64_t>(in.size(), resp_left_));
    case BodyKind::kUntilClose:
    case BodyKind::kTunnel: return in.size();
    case BodyKind::kChunked: return scan_chunked(resp_chunks_, in.view(), &resp_scanned_);
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
  if (l_.metrics_) l_.metrics_->end_http(x_, peer_, ctx_.loop.now());
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
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(ctx_.loop.now() - sent_at_).count();
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
  bool ok = true;
  if (h2_ && out_.empty() && submit_h2_head(h2_, head, fwd)) {
    // HTTP/2: the head went to the session as fields, not as text to parse again. It counts as
    // the bytes the backend's head took (what x_.bytes has of it in an access log).
    x_.bytes += head_len;
    client_bytes_ += head_len;
  } else {
    ok = write_response_head(out_, head, fwd);
  }
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
  if (l_.metrics_) l_.metrics_->end_http(x_, peer_, ctx_.loop.now());
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

}  // namespace fulcrum::http
