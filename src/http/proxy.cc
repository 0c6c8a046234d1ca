#include "http/proxy.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "core/socket.h"
#include "http/chunked.h"
#include "http/local_response.h"

namespace fulcrum::http {
namespace {

// RFC 9110 9.2.2: a request may be repeated when its method is idempotent.
bool idempotent(Method m) {
  return m == Method::kGet || m == Method::kHead || m == Method::kPut || m == Method::kDelete ||
         m == Method::kOptions || m == Method::kTrace;
}

// Writes a then b with one system call; returns bytes written or -1 (errno).
ssize_t write2(int fd, std::string_view a, std::string_view b) {
  iovec iov[2];
  int n = 0;
  if (!a.empty()) iov[n++] = {const_cast<char*>(a.data()), a.size()};
  if (!b.empty()) iov[n++] = {const_cast<char*>(b.data()), b.size()};
  if (n == 0) return 0;
  if (n == 1) return ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
}

struct Appender {
  Buffer& out;
  bool ok = true;
  Appender& operator<<(std::string_view s) {
    ok = ok && out.append(s);
    return *this;
  }
  Appender& operator<<(uint64_t v) {
    char buf[24];
    int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
    return *this << std::string_view(buf, static_cast<size_t>(n));
  }
};

// Splits a request target into path and query; absolute-form loses its scheme and authority
// (RFC 9112 3.2.2: the origin server gets origin-form from us).
void split_target(std::string_view target, TargetForm form, std::string_view* authority, std::string_view* path,
                  std::string_view* query) {
  *authority = {};
  if (form == TargetForm::kAbsolute) {
    auto scheme_end = target.find("://");
    std::string_view rest = scheme_end == std::string_view::npos ? target : target.substr(scheme_end + 3);
    auto slash = rest.find_first_of("/?");
    *authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  auto q = target.find('?');
  *path = target.substr(0, q);
  *query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

}  // namespace

// ---- context ---------------------------------------------------------------------------------

HttpContext::HttpContext(EventLoop& l, std::vector<upstream::Backend*> b, std::vector<lb::Picker*> p)
    : loop(l), pool(l, buffers), backends(std::move(b)), pickers(std::move(p)) {
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

class ClientConn final : public IoHandler, public Deferred, public UpstreamOwner {
 public:
  ClientConn(HttpListener& l, Fd fd, const SocketAddress& peer);
  ~ClientConn() override;
  void start();
  void on_io(uint32_t events) override;
  void on_upstream_io(uint32_t events) override;
  void close(const char* why);
  void on_stop();

  ClientConn* prev_ = nullptr;
  ClientConn* next_ = nullptr;

 private:
  enum class State : uint8_t { kIdle, kHead, kConnecting, kExchange, kTunnel, kLocal, kClosing };

  void drive();
  bool step_head();
  bool step_exchange();
  bool step_tunnel();
  bool step_flush();
  int read_into(int fd, Buffer& buf, bool* readable, bool* eof);  // 1 read, 0 nothing, -1 fatal
  void on_request(const RequestHead& head, size_t head_len);
  bool write_upstream_head(const RequestHead& head, std::string_view path, std::string_view query,
                           std::string_view host);
  upstream::Server* choose(const RequestHead* head, std::string_view path, std::string_view query);
  void connect_upstream();
  void on_upstream_connected();
  void upstream_failed(const char* why, int err, bool timeout);
  bool on_response_head(const ResponseHead& head, size_t head_len);
  void finish_exchange();
  void send_local(int status, bool close_after, std::string_view extra = {});
  void set_state(State s);
  void release_upstream(bool reuse);
  size_t request_body_ready();   // bytes at the front of in_ that belong to the request body
  size_t response_body_ready();  // bytes at the front of up_->in that belong to the response body

  HttpListener& l_;
  HttpContext& ctx_;
  Fd fd_;
  SocketAddress peer_;
  Buffer in_;
  Buffer out_;
  Buffer req_head_;  // the head we send upstream, kept whole until a response starts (retries)
  Timer timer_;
  State state_ = State::kIdle;
  bool readable_ = false;
  bool writable_ = true;
  bool read_eof_ = false;
  bool closed_ = false;

  // The exchange in progress.
  int backend_ = -1;
  upstream::Server* server_ = nullptr;
  UpstreamConn* up_ = nullptr;
  lb::TriedSet tried_;
  uint32_t attempts_ = 0;
  Method method_ = Method::kGet;
  bool keep_alive_ = false;
  bool client_http10_ = false;
  size_t req_head_sent_ = 0;
  BodyKind req_body_ = BodyKind::kNone;
  uint64_t req_left_ = 0;
  ChunkedDecoder req_chunks_;
  size_t req_scanned_ = 0;  // chunked: validated bytes at the front of in_ not yet sent
  bool req_done_ = true;
  bool req_body_sent_ = false;
  bool resp_head_done_ = false;
  bool resp_started_ = false;  // a byte of the response has been read
  BodyKind resp_body_ = BodyKind::kNone;
  uint64_t resp_left_ = 0;
  ChunkedDecoder resp_chunks_;
  ChunkedDecoder dechunk_decoder_;
  size_t resp_scanned_ = 0;
  bool resp_done_ = false;
  bool dechunk_ = false;  // chunked response to an HTTP/1.0 client: send the data only
  bool upstream_keep_alive_ = false;
  bool set_cookie_ = false;
  bool tunnel_ = false;
  bool up_eof_ = false;
  TimePoint sent_at_{};
};

ClientConn::ClientConn(HttpListener& l, Fd fd, const SocketAddress& peer)
    : l_(l),
      ctx_(l.ctx_),
      fd_(std::move(fd)),
      peer_(peer),
      in_(l.ctx_.buffers),
      out_(l.ctx_.buffers),
      req_head_(l.ctx_.buffers),
      timer_(l.ctx_.loop, [this] {
        switch (state_) {
          case State::kIdle: return close("idle timeout");
          case State::kHead: return send_local(408, true);
          case State::kConnecting: return upstream_failed("connect timeout", ETIMEDOUT, true);
          case State::kExchange:
            if (!resp_head_done_) return upstream_failed("response timeout", ETIMEDOUT, true);
            return close("response stalled");
          default: return close("timeout");
        }
      }) {}

ClientConn::~ClientConn() {
  if (up_) ctx_.pool.close(up_);
}

void ClientConn::start() {
  set_nodelay(fd_.get());
  if (!ctx_.loop.add(fd_.get(), this)) return close("epoll");
  set_state(State::kIdle);
}

void ClientConn::set_state(State s) {
  state_ = s;
  switch (s) {
    case State::kIdle: timer_.arm(l_.idle_timeout_); break;
    case State::kHead: timer_.arm(l_.header_timeout_); break;
    case State::kConnecting: timer_.arm(ctx_.backends[backend_]->spec().connect_timeout); break;
    case State::kExchange: timer_.arm(ctx_.backends[backend_]->spec().response_timeout); break;
    case State::kTunnel: timer_.arm(l_.idle_timeout_); break;
    default: break;
  }
}

void ClientConn::on_io(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & EPOLLOUT) writable_ = true;
  drive();
}

void ClientConn::on_upstream_io(uint32_t events) {
  if (closed_) return;
  if (state_ == State::kConnecting) {
    int err = socket_error(up_->fd.get());
    if (err != 0) return upstream_failed("connect", err, false);
    if (!(events & EPOLLOUT)) return;
    on_upstream_connected();
  }
  drive();
}

void ClientConn::on_stop() {
  keep_alive_ = false;
  if (state_ == State::kIdle && in_.empty()) close("stopping");
}

void ClientConn::drive() {
  for (int guard = 0; guard < 256 && !closed_; ++guard) {
    bool progress = false;
    switch (state_) {
      case State::kIdle:
      case State::kHead: progress = step_head(); break;
      case State::kConnecting: return;
      case State::kExchange: progress = step_exchange(); break;
      case State::kTunnel: progress = step_tunnel(); break;
      case State::kLocal:
      case State::kClosing: progress = step_flush(); break;
    }
    if (!progress) break;
  }
  if (!closed_ && state_ == State::kIdle && in_.empty()) {
    in_.release();  // an idle keep-alive connection holds no buffer
    out_.release_if_empty();
  }
}

int ClientConn::read_into(int fd, Buffer& buf, bool* readable, bool* eof) {
  if (!*readable || *eof) return 0;
  if (!buf.reserve(1)) return 0;
  ssize_t n = ::recv(fd, buf.space(), buf.space_size(), 0);
  if (n > 0) {
    buf.produced(static_cast<size_t>(n));
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

// ---- request head ----------------------------------------------------------------------------

bool ClientConn::step_head() {
  if (in_.empty()) {
    if (l_.stopping_) {
      close("stopping");
      return false;
    }
    int r = read_into(fd_.get(), in_, &readable_, &read_eof_);
    if (r < 0) {
      close("read error");
      return false;
    }
    if (read_eof_ && in_.empty()) {
      close("client closed");
      return false;
    }
    if (r == 0) return false;
  }
  if (state_ == State::kIdle) set_state(State::kHead);
  RequestParser parser(H1Limits{static_cast<size_t>(l_.max_header_bytes_)});
  RequestHead head;
  ParseResult pr = parser.parse(in_.view(), ctx_.fields, &head);
  if (pr.done()) {
    on_request(head, pr.consumed);
    return true;
  }
  if (pr.failed()) {
    FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: refused request: %s (%d)", l_.spec_.name.c_str(),
                        peer_.ip_string().c_str(), std::string(parse_error_name(pr.error)).c_str(), pr.http_status());
    send_local(pr.http_status(), true);
    return true;
  }
  // Need more: make room (a head may grow to max_header_bytes), then read.
  if (in_.full() && (!in_.grow() || in_.capacity() > l_.max_header_bytes_ + 1024)) {
    send_local(431, true);
    return true;
  }
  if (read_eof_) {
    close("client closed mid-head");
    return false;
  }
  int r = read_into(fd_.get(), in_, &readable_, &read_eof_);
  if (r < 0) close("read error");
  return r > 0;
}

void ClientConn::on_request(const RequestHead& head, size_t head_len) {
  method_ = head.method;
  client_http10_ = head.version == Version::kHttp10;
  keep_alive_ = head.keep_alive && !l_.stopping_;
  std::string_view authority, path, query;
  split_target(head.target, head.target_form, &authority, &path, &query);
  std::string_view host = head.has_host ? head.host : authority;

  RouteInput ri{head.method_text, host, path, query, head.headers};
  int route = l_.router_->match(ri);
  if (route < 0 || head.target_form == TargetForm::kAuthority || head.target_form == TargetForm::kAsterisk) {
    in_.consume(head_len);
    return send_local(route < 0 ? 404 : 501, !keep_alive_ || head.has_body());
  }
  backend_ = l_.route_backend_[static_cast<size_t>(route)];
  if (backend_ < 0) {  // static routes are served by the static module (not in this build yet)
    in_.consume(head_len);
    return send_local(501, !keep_alive_ || head.has_body());
  }

  tried_.clear();
  attempts_ = 0;
  set_cookie_ = false;
  server_ = choose(&head, path, query);
  req_head_.clear();
  if (!write_upstream_head(head, path, query, host)) {
    in_.consume(head_len);
    return send_local(431, true);
  }
  in_.consume(head_len);
  req_body_ = head.body;
  req_left_ = head.body == BodyKind::kContentLength ? head.content_length : 0;
  req_done_ = !head.has_body();
  req_chunks_.reset();
  req_scanned_ = 0;
  req_body_sent_ = false;
  tunnel_ = head.upgrade;
  if (server_ == nullptr) {
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: no server available in backend %s", l_.spec_.name.c_str(),
                        ctx_.backends[backend_]->name().c_str());
    return send_local(503, !keep_alive_ || !req_done_);
  }
  connect_upstream();
}

upstream::Server* ClientConn::choose(const RequestHead* head, std::string_view path, std::string_view query) {
  auto& backend = *ctx_.backends[backend_];
  const auto& spec = backend.spec();
  lb::Picker& picker = *ctx_.pickers[backend_];
  if (head && spec.sticky) {
    std::string_view id;
    if (find_cookie(head->headers, spec.sticky->cookie, &id)) {
      auto& ids = ctx_.sticky_ids[backend_];
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] != id) continue;
        upstream::Server* s = backend.servers()[i].get();
        if (picker.serving(*s) && !tried_.contains(i)) return s;
        break;
      }
    }
    set_cookie_ = true;
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

bool ClientConn::write_upstream_head(const RequestHead& head, std::string_view path, std::string_view query,
                                     std::string_view host) {
  Appender a{req_head_};
  a << head.method_text << " " << path;
  if (!query.empty() || head.target.find('?') != std::string_view::npos) a << "?" << query;
  a << " HTTP/1.1\r\n";
  bool xff = false, via = false;
  for (const Header& h : head.headers) {
    if (must_strip(head, h)) continue;
    switch (h.token) {
      case HeaderToken::kXForwardedFor: xff = true; continue;
      case HeaderToken::kVia: via = true; continue;
      case HeaderToken::kXForwardedProto:
      case HeaderToken::kXForwardedHost: continue;  // ours replace what the client claims
      default: break;
    }
    a << h.name << ": " << h.value << "\r\n";
  }
  if (!head.has_host) a << "Host: " << (host.empty() ? std::string_view(server_ ? server_->address_text() : "") : host) << "\r\n";
  if (head.body == BodyKind::kChunked) a << "Transfer-Encoding: chunked\r\n";
  if (head.upgrade) {
    const Header* up = head.find(HeaderToken::kUpgrade);
    a << "Connection: Upgrade\r\nUpgrade: " << (up ? up->value : std::string_view("websocket")) << "\r\n";
  }
  // X-Forwarded-For is appended to (SPEC), several fields folded into one list (RFC 9110 5.3).
  a << "X-Forwarded-For: ";
  if (xff)
    for (const Header& h : head.headers)
      if (h.token == HeaderToken::kXForwardedFor && !h.value.empty()) a << h.value << ", ";
  a << peer_.ip_string() << "\r\n";
  a << "X-Forwarded-Proto: " << (l_.spec_.protocol == config::Protocol::kHttps ? "https" : "http") << "\r\n";
  if (!host.empty()) a << "X-Forwarded-Host: " << host << "\r\n";
  a << "Via: ";
  if (via)
    for (const Header& h : head.headers)
      if (h.token == HeaderToken::kVia && !h.value.empty()) a << h.value << ", ";
  a << (client_http10_ ? "1.0 fulcrum" : "1.1 fulcrum") << "\r\n\r\n";
  return a.ok;
}

// ---- upstream --------------------------------------------------------------------------------

void ClientConn::connect_upstream() {
  if (server_ == nullptr) server_ = choose(nullptr, {}, {});
  if (server_ == nullptr) {
    if (attempts_ == 0)
      FULCRUM_LOG_LIMITED(kWarn, "listener %s: no server available in backend %s", l_.spec_.name.c_str(),
                          ctx_.backends[backend_]->name().c_str());
    return send_local(attempts_ ? 502 : 503, !keep_alive_ || !req_done_);
  }
  ++attempts_;
  tried_.add(server_->index());
  server_->begin();
  req_head_sent_ = 0;
  resp_head_done_ = resp_started_ = resp_done_ = false;
  up_eof_ = false;
  if ((up_ = ctx_.pool.take(server_))) {
    up_->owner = this;
    up_->writable = true;  // try; EAGAIN tells otherwise
    sent_at_ = Clock::now();
    set_state(State::kExchange);
    return;
  }
  int err = 0;
  up_ = ctx_.pool.open(server_, &err);
  if (up_ == nullptr) return upstream_failed("connect", err, false);
  up_->owner = this;
  if (up_->connected) {
    up_->writable = true;
    on_upstream_connected();
  } else {
    set_state(State::kConnecting);
  }
}

void ClientConn::on_upstream_connected() {
  up_->connected = true;
  up_->writable = true;
  sent_at_ = Clock::now();
  set_state(State::kExchange);
}

void ClientConn::upstream_failed(const char* why, int err, bool timeout) {
  bool was_reused = up_ && up_->reused;
  if (resp_head_done_) return close("backend failed mid-response");
  if (server_) {
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: backend %s server %s (%s): %s: %s%s", l_.spec_.name.c_str(),
                        ctx_.backends[backend_]->name().c_str(), server_->name().c_str(),
                        server_->address_text().c_str(), why, strerror(err), was_reused ? " (reused connection)" : "");
    server_->end();
    if (!was_reused) server_->record_failure();
  }
  release_upstream(false);
  bool connect_phase = state_ == State::kConnecting || std::string_view(why) == "connect";
  // What may be sent again: nothing reached a server that refused the connect; a request whose
  // body we still hold whole and whose method is idempotent (RFC 9110 9.2.2); and any request on
  // a reused connection the server had closed before our first byte arrived.
  bool retryable = !req_body_sent_ && !resp_started_ &&
                   (connect_phase || idempotent(method_) || (was_reused && req_head_sent_ == 0));
  const auto& spec = ctx_.backends[backend_]->spec();
  if (retryable && !timeout && (was_reused || attempts_ <= spec.retries)) {
    if (was_reused) {  // a stale pooled connection is not the server's fault: same server, fresh
      --attempts_;
      ctx_.pool.loop().refresh_now();
    } else {
      server_ = nullptr;
    }
    if (server_ == nullptr) server_ = choose(nullptr, {}, {});
    return connect_upstream();
  }
  if (retryable && timeout && connect_phase && attempts_ <= spec.retries) {
    server_ = nullptr;
    return connect_upstream();
  }
  server_ = nullptr;
  send_local(timeout && !connect_phase ? 504 : 502, !keep_alive_ || !req_done_);
}

void ClientConn::release_upstream(bool reuse) {
  if (!up_) return;
  if (reuse) ctx_.pool.put(up_);
  else ctx_.pool.close(up_);
  up_ = nullptr;
}

size_t ClientConn::request_body_ready() {
  if (req_done_ && req_scanned_ == 0 && req_body_ != BodyKind::kChunked) return 0;
  if (req_body_ == BodyKind::kContentLength) return static_cast<size_t>(std::min<uint64_t>(in_.size(), req_left_));
  if (req_body_ == BodyKind::kChunked) {
    std::string_view rest = in_.view().substr(req_scanned_);
    while (!rest.empty() && !req_chunks_.done()) {
      ChunkStep s = req_chunks_.decode(rest);
      if (s.event == ChunkEvent::kError) return static_cast<size_t>(-1);
      req_scanned_ += s.consumed;
      rest.remove_prefix(s.consumed);
      if (s.event == ChunkEvent::kNeedMore) break;
    }
    return req_scanned_;
  }
  return 0;
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
        if (s.event == ChunkEvent::kError) return static_cast<size_t>(-1);
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

bool ClientConn::step_exchange() {
  bool progress = false;
  // 1. The request (head, then body) to the upstream.
  if (up_ && (req_head_sent_ < req_head_.size() || !req_done_)) {
    size_t body = request_body_ready();
    if (body == static_cast<size_t>(-1)) {
      FULCRUM_LOG_LIMITED(kInfo, "listener %s: %s: bad chunked request body", l_.spec_.name.c_str(),
                          peer_.ip_string().c_str());
      if (server_) server_->end();
      server_ = nullptr;
      release_upstream(false);
      if (resp_head_done_) {
        close("bad request body");
        return false;
      }
      send_local(400, true);
      return true;
    }
    std::string_view head = req_head_.view().substr(req_head_sent_);
    if (up_->writable && (!head.empty() || body > 0)) {
      ssize_t n = write2(up_->fd.get(), head, in_.view().substr(0, body));
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
            if (req_left_ == 0) req_done_ = true;
          } else {
            req_scanned_ -= w;
            if (req_scanned_ == 0 && req_chunks_.done()) req_done_ = true;
          }
        }
      } else if (n < 0 && errno == EAGAIN) {
        up_->writable = false;
      } else if (n < 0 && errno != EINTR) {
        if (!resp_started_) {
          upstream_failed("send", errno, false);
          return true;
        }
        close("upstream write failed");
        return false;
      }
    }
    // More body to come from the client.
    if (!req_done_ && (body == 0 || in_.size() == body) && !read_eof_) {
      int r = read_into(fd_.get(), in_, &readable_, &read_eof_);
      if (r < 0) {
        close("client read error");
        return false;
      }
      if (read_eof_) {
        close("client closed mid-body");
        return false;
      }
      if (r > 0) progress = true;
    }
  }
  if (closed_ || !up_) return progress;

  // 2. The response from the upstream.
  if (!resp_head_done_) {
    int r = read_into(up_->fd.get(), up_->in, &up_->readable, &up_eof_);
    if (r < 0 || (up_eof_ && !resp_started_)) {
      upstream_failed(r < 0 ? "recv" : "closed before responding", r < 0 ? errno : ECONNRESET, false);
      return true;
    }
    if (r > 0) progress = true;
    if (!up_->in.empty()) {
      resp_started_ = true;
      ResponseParser parser;
      ResponseHead head;
      ParseResult pr = parser.parse(up_->in.view(), ctx_.response_fields, &head, method_);
      if (pr.failed() || (pr.need_more() && (up_->in.full() && !up_->in.grow()))) {
        FULCRUM_LOG_LIMITED(kWarn, "listener %s: backend %s server %s: bad response: %s", l_.spec_.name.c_str(),
                            ctx_.backends[backend_]->name().c_str(), server_->name().c_str(),
                            std::string(parse_error_name(pr.error)).c_str());
        server_->end();
        server_->record_failure();
        server_ = nullptr;
        release_upstream(false);
        send_local(502, true);
        return true;
      }
      if (pr.need_more() && up_eof_) {
        upstream_failed("closed mid-head", ECONNRESET, false);
        return true;
      }
      if (pr.done()) {
        if (!on_response_head(head, pr.consumed)) return false;
        progress = true;
      }
    }
    return progress;
  }

  // 3. The response body to the client.
  if (!resp_done_) {
    size_t body = response_body_ready();
    if (body == static_cast<size_t>(-1)) {
      close("bad chunked response body");
      return false;
    }
    std::string_view send_body = up_->in.view().substr(0, body);
    if (dechunk_) {
      // HTTP/1.0 client: only the chunk data goes on (the connection closes at the end). The
      // bytes were validated by resp_chunks_; a second decoder walks them for their data.
      send_body = {};
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
      up_->in.consume(used);
      resp_scanned_ -= used;
    }
    if (writable_ && (!out_.empty() || !send_body.empty())) {
      ssize_t n = write2(fd_.get(), out_.view(), send_body);
      if (n > 0) {
        progress = true;
        size_t w = static_cast<size_t>(n);
        size_t from_out = std::min(w, out_.size());
        out_.consume(from_out);
        w -= from_out;
        if (w > 0) {
          up_->in.consume(w);
          if (resp_body_ == BodyKind::kContentLength) resp_left_ -= w;
          if (resp_body_ == BodyKind::kChunked) resp_scanned_ -= w;
        }
        timer_.arm(ctx_.backends[backend_]->spec().response_timeout);
      } else if (n < 0 && errno == EAGAIN) {
        writable_ = false;
      } else if (n < 0 && errno != EINTR) {
        close("client write failed");
        return false;
      }
    }
    bool body_complete = (resp_body_ == BodyKind::kContentLength && resp_left_ == 0) ||
                         (resp_body_ == BodyKind::kChunked && resp_chunks_.done() && resp_scanned_ == 0) ||
                         resp_body_ == BodyKind::kNone || (resp_body_ == BodyKind::kUntilClose && up_eof_ && up_->in.empty());
    if (body_complete) {
      resp_done_ = true;
      progress = true;
    } else if (up_->in.empty() || body == up_->in.size()) {
      if (up_eof_) {
        close("backend closed mid-body");
        return false;
      }
      int r = read_into(up_->fd.get(), up_->in, &up_->readable, &up_eof_);
      if (r < 0) {
        close("backend read error");
        return false;
      }
      if (r > 0) progress = true;
    }
  }
  if (resp_done_ && out_.empty()) {
    if (req_done_) {
      finish_exchange();
      return true;
    }
    // The backend answered before the request body was in (an early 413, say): neither
    // connection can carry another request safely.
    keep_alive_ = false;
    release_upstream(false);
    if (server_) server_->end();
    server_ = nullptr;
    set_state(State::kClosing);
    return true;
  }
  return progress;
}

bool ClientConn::on_response_head(const ResponseHead& head, size_t head_len) {
  Appender a{out_};
  if (head.informational() && head.status != 101) {
    // 1xx interim responses go on to 1.1 clients (RFC 9110 15.2), and parsing continues.
    if (!client_http10_) {
      a << "HTTP/1.1 " << static_cast<uint64_t>(head.status) << " " << head.reason << "\r\n";
      for (const Header& h : head.headers)
        if (!must_strip(head, h)) a << h.name << ": " << h.value << "\r\n";
      a << "\r\n";
    }
    up_->in.consume(head_len);
    return a.ok || (close("interim response too large"), false);
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at_).count();
  server_->record_time_us(static_cast<uint32_t>(std::min<long long>(us, 0xffffffffLL)));
  resp_head_done_ = true;
  resp_body_ = head.body;
  resp_left_ = head.content_length;
  resp_chunks_.reset();
  dechunk_decoder_.reset();
  resp_scanned_ = 0;
  upstream_keep_alive_ = head.keep_alive;
  dechunk_ = head.body == BodyKind::kChunked && client_http10_;
  bool tunnel = head.body == BodyKind::kTunnel;
  if (head.body == BodyKind::kUntilClose || dechunk_) keep_alive_ = false;
  if (tunnel && !tunnel_ && method_ != Method::kConnect) tunnel = false;

  a << "HTTP/1.1 " << static_cast<uint64_t>(head.status) << " " << head.reason << "\r\n";
  for (const Header& h : head.headers) {
    if (must_strip(head, h)) continue;
    a << h.name << ": " << h.value << "\r\n";
  }
  if (head.body == BodyKind::kChunked && !dechunk_) a << "Transfer-Encoding: chunked\r\n";
  if (set_cookie_ && server_) {
    a << "Set-Cookie: " << ctx_.backends[backend_]->spec().sticky->cookie << "="
      << ctx_.sticky_ids[backend_][server_->index()] << "; Path=/; HttpOnly\r\n";
  }
  if (head.status == 101) {
    const Header* up = head.find(HeaderToken::kUpgrade);
    a << "Connection: Upgrade\r\nUpgrade: " << (up ? up->value : std::string_view("websocket")) << "\r\n";
  } else if (!keep_alive_) {
    a << "Connection: close\r\n";
  } else if (client_http10_) {
    a << "Connection: keep-alive\r\n";
  }
  a << "\r\n";
  up_->in.consume(head_len);
  if (!a.ok) {
    close("response head too large");
    return false;
  }
  if (tunnel) {
    // From here on raw bytes both ways (RFC 9110 7.8, 9.3.6).
    req_done_ = true;
    timer_.arm(l_.idle_timeout_);
    state_ = State::kTunnel;
  }
  return true;
}

void ClientConn::finish_exchange() {
  bool reuse = upstream_keep_alive_ && resp_body_ != BodyKind::kUntilClose && up_ && up_->in.empty() && !up_eof_;
  release_upstream(reuse);
  if (server_) server_->end();
  server_ = nullptr;
  req_head_.release();
  if (!keep_alive_ || read_eof_) {
    set_state(State::kClosing);
    return;
  }
  set_state(State::kIdle);
}

bool ClientConn::step_tunnel() {
  bool progress = false;
  // client -> upstream
  if (!in_.empty() && up_->writable) {
    ssize_t n = ::send(up_->fd.get(), in_.data(), in_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      in_.consume(static_cast<size_t>(n));
      progress = true;
    } else if (n < 0 && errno == EAGAIN) {
      up_->writable = false;
    } else if (n < 0 && errno != EINTR) {
      close("tunnel upstream write");
      return false;
    }
  }
  if (in_.empty() && !read_eof_) {
    int r = read_into(fd_.get(), in_, &readable_, &read_eof_);
    if (r < 0) return close("tunnel client read"), false;
    if (r > 0) progress = true;
    if (read_eof_ && in_.empty()) ::shutdown(up_->fd.get(), SHUT_WR);
  }
  // upstream -> client (out_ first: the 101 head)
  if (writable_ && (!out_.empty() || !up_->in.empty())) {
    ssize_t n = write2(fd_.get(), out_.view(), up_->in.view());
    if (n > 0) {
      size_t w = static_cast<size_t>(n);
      size_t from_out = std::min(w, out_.size());
      out_.consume(from_out);
      up_->in.consume(w - from_out);
      progress = true;
    } else if (n < 0 && errno == EAGAIN) {
      writable_ = false;
    } else if (n < 0 && errno != EINTR) {
      close("tunnel client write");
      return false;
    }
  }
  if (up_->in.empty() && !up_eof_) {
    int r = read_into(up_->fd.get(), up_->in, &up_->readable, &up_eof_);
    if (r < 0) return close("tunnel upstream read"), false;
    if (r > 0) progress = true;
    if (up_eof_ && up_->in.empty() && out_.empty()) ::shutdown(fd_.get(), SHUT_WR);
  }
  if (progress) timer_.arm(l_.idle_timeout_);
  if (read_eof_ && up_eof_ && in_.empty() && up_->in.empty() && out_.empty()) {
    close("tunnel done");
    return false;
  }
  return progress;
}

// ---- local responses and closing -------------------------------------------------------------

void ClientConn::send_local(int status, bool close_after, std::string_view extra) {
  if (server_) {
    server_->end();
    server_ = nullptr;
  }
  release_upstream(false);
  if (close_after) keep_alive_ = false;
  out_.clear();
  write_local_response(out_, status, !keep_alive_, method_ == Method::kHead && state_ != State::kHead, extra);
  set_state(keep_alive_ ? State::kLocal : State::kClosing);
  timer_.arm(l_.idle_timeout_);
}

bool ClientConn::step_flush() {
  if (!out_.empty()) {
    if (!writable_) return false;
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      writable_ = false;
      return false;
    } else if (n < 0 && errno != EINTR) {
      close("write failed");
      return false;
    }
    if (!out_.empty()) return true;
  }
  if (state_ == State::kClosing) {
    // Half-close first so the client reads the whole response before the connection goes.
    ::shutdown(fd_.get(), SHUT_WR);
    close("done");
    return false;
  }
  set_state(State::kIdle);
  return true;
}

void ClientConn::close(const char* why) {
  if (closed_) return;
  closed_ = true;
  FULCRUM_LOG(kDebug, "http connection %s closed: %s", peer_.to_string().c_str(), why);
  timer_.cancel();
  if (server_) {
    server_->end();
    server_ = nullptr;
  }
  release_upstream(false);
  fd_.reset();
  in_.release();
  out_.release();
  req_head_.release();
  if (prev_) prev_->next_ = next_;
  else l_.first_ = next_;
  if (next_) next_->prev_ = prev_;
  prev_ = next_ = nullptr;
  l_.connections_.fetch_sub(1, std::memory_order_relaxed);
  ctx_.loop.defer_delete(this);
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
  }
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
    auto* conn = new ClientConn(*this, Fd(c), SocketAddress(reinterpret_cast<sockaddr*>(&ss), len));
    conn->next_ = first_;
    if (first_) first_->prev_ = conn;
    first_ = conn;
    connections_.fetch_add(1, std::memory_order_relaxed);
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
}

}  // namespace fulcrum::http
