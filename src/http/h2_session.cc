// See h2_session.h. nghttp2 does the framing, HPACK, flow-control accounting and protocol checks
// (pseudo-headers, connection-specific fields, stream states); we feed it bytes, write what it
// produces, and map streams to exchanges. Callbacks never call into an exchange: they queue a
// "poke" that drive() delivers once nghttp2 has returned, so an exchange that closes (and frees
// its stream) never does so under nghttp2's feet. Worker thread only.
#include "http/h2_session.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/ascii.h"
#include "core/intrusive_list.h"
#include "core/log.h"
#include "http/h2_memory.h"
#include "http/proxy.h"

namespace fulcrum::http {
namespace {

constexpr uint32_t kMaxConcurrentStreams = 128;
// Our receive window per stream: one large buffer's worth, so a request body waits in memory only
// as much as one ClientConn buffer holds.
constexpr uint32_t kInitialWindow = 65535;
constexpr size_t kOutBatch = 64 * 1024;  // frames gathered per write
constexpr int kReadsPerTurn = 32;

H2Stream* stream_of(nghttp2_session* ng, int32_t id) {
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(ng, id));
}

bool is_name(const uint8_t* p, size_t n, std::string_view s) {
  return n == s.size() && std::memcmp(p, s.data(), n) == 0;
}

}  // namespace

struct H2Callbacks {
  static int begin_headers(nghttp2_session* ng, const nghttp2_frame* f, void* ud) {
    auto* self = static_cast<H2Session*>(ud);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto* s = new_h2_stream();
    s->session = self;
    s->id = f->hd.stream_id;
    self->add_stream(s);
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
  }

  static int header(nghttp2_session* ng, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                    const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers: dropped
    H2Stream* s = stream_of(ng, f->hd.stream_id);
    if (!s) return 0;
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (namelen > 0 && name[0] == ':') {
      if (is_name(name, namelen, ":method")) s->method = v;
      else if (is_name(name, namelen, ":path")) s->path = v;
      else if (is_name(name, namelen, ":authority")) s->authority = v;
      return 0;  // :scheme: we know ours
    }
    // RFC 9113 8.2.3: cookie fields may come split; HTTP/1.1 wants them as one.
    if (is_name(name, namelen, "cookie")) {
      if (!s->cookie.empty()) s->cookie += "; ";
      s->cookie += v;
      return 0;
    }
    if (is_name(name, namelen, "host")) s->has_host = true;
    if (is_name(name, namelen, "content-length")) s->has_length = true;
    // The head as HTTP/1.1 is bounded like any head: ClientConn's parser refuses it past
    // max_header_bytes (431); this only keeps a flood of fields from growing memory first.
    if (s->fields.size() + namelen + valuelen > 256 * 1024) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->fields.append(reinterpret_cast<const char*>(name), namelen);
    s->fields += ": ";
    s->fields += v;
    s->fields += "\r\n";
    return 0;
  }

  static int frame_recv(nghttp2_session* ng, const nghttp2_frame* f, void* ud) {
    auto* self = static_cast<H2Session*>(ud);
    H2Stream* s = f->hd.stream_id ? stream_of(ng, f->hd.stream_id) : nullptr;
    if (!s) return 0;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
      self->on_request_headers(*s, end);
      return 0;
    }
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end && !s->req_end) {
      if (s->chunked) s->req += "0\r\n\r\n";
      s->req_end = true;
      self->poke(s, EPOLLIN);
    }
    return 0;
  }

  static int data_chunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len, void* ud) {
    auto* self = static_cast<H2Session*>(ud);
    H2Stream* s = stream_of(ng, id);
    if (!s || s->conn_gone) {  // nobody will read it: give the window back now
      nghttp2_session_consume(ng, id, len);
      return 0;
    }
    if (s->chunked) {
      char size[24];
      int n = std::snprintf(size, sizeof(size), "%zx\r\n", len);
      s->req.append(size, static_cast<size_t>(n));
    }
    s->req.append(reinterpret_cast<const char*>(data), len);
    if (s->chunked) s->req += "\r\n";
    s->unconsumed += len;
    self->poke(s, EPOLLIN);
    return 0;
  }

  static int stream_close(nghttp2_session* ng, int32_t id, uint32_t, void* ud) {
    auto* self = static_cast<H2Session*>(ud);
    H2Stream* s = stream_of(ng, id);  // still there while this runs
    if (!s) return 0;
    s->closed = true;
    if (s->conn_gone || !s->conn) {  // done, or never got as far as an exchange
      self->drop_stream(s);
    } else {
      self->poke(s, EPOLLIN | EPOLLOUT | EPOLLHUP);  // the exchange learns on its next read or write
    }
    return 0;
  }

  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* src, void*) {
    auto* s = static_cast<H2Stream*>(src->ptr);
    size_t avail = s->data.size() - s->data_off;
    if (avail == 0 && !s->resp_end) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(avail, length);
    std::memcpy(buf, s->data.data() + s->data_off, n);
    s->data_off += n;
    if (s->data_off == s->data.size()) {
      s->data.clear();
      s->data_off = 0;
    }
    if (s->resp_end && s->data.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->deferred_writer && s->session) {  // room again for the exchange's writes
      s->deferred_writer = false;
      s->session->poke(s, EPOLLOUT);
    }
    return static_cast<ssize_t>(n);
  }
};

namespace {

struct StreamPool {
  static constexpr size_t kMax = 1024;  // enough for several connections at the stream limit
  std::vector<H2Stream*> free;
  ~StreamPool() {
    for (H2Stream* s : free) delete s;
  }
};
thread_local StreamPool t_streams;

}  // namespace

H2Stream* new_h2_stream() {
  if (t_streams.free.empty()) return new H2Stream();
  H2Stream* s = t_streams.free.back();
  t_streams.free.pop_back();
  return s;
}

void H2Stream::reset_for_reuse() {
  for (std::string* str : {&method, &path, &authority, &fields, &cookie, &req, &head, &data}) {
    if (str->capacity() > 16 * 1024) std::string().swap(*str);  // a big body's buffer goes back
    else str->clear();
  }
  session = nullptr;
  id = 0;
  conn = nullptr;
  conn_gone = closed = false;
  has_host = has_length = chunked = false;
  req_off = unconsumed = 0;
  req_end = false;
  req_method = Method::kGet;
  head_done = false;
  body = BodyKind::kNone;
  left = 0;
  chunks = ChunkedDecoder();
  data_off = 0;
  resp_end = deferred = deferred_writer = submitted = reset = false;
  prev_ = next_ = nullptr;
}

void free_h2_stream(H2Stream* s) {
  if (t_streams.free.size() >= StreamPool::kMax) {
    delete s;
    return;
  }
  s->reset_for_reuse();
  t_streams.free.push_back(s);
}

void start_h2_session(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer,
                      std::string_view already_read, protect::ConnHold hold) {
  auto* s = new H2Session(l, std::move(fd), std::move(tr), peer);
  s->take_hold(std::move(hold));
  ilist::push_front(l.h2_first_, s);
  s->start(already_read);
}

H2Session::H2Session(HttpListener& l, Fd fd, std::unique_ptr<Transport> tr, const SocketAddress& peer)
    : l_(l),
      fd_(std::move(fd)),
      tr_(std::move(tr)),
      peer_(peer),
      timer_(l.ctx_.loop,
             [this] {
               if (stream_count_ != 0) return timer_.arm(l_.idle_timeout_);
               close("idle timeout");
             }),
      flush_(l.ctx_.loop, [this] { drive(); }) {
  peer_.write_ip(peer_ip_, sizeof(peer_ip_));
  // Made once per thread (they are read-only once set): not on every connection's path.
  struct Setup {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_option* opt = nullptr;
    Setup() {
      nghttp2_session_callbacks_new(&cb);
      nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &H2Callbacks::begin_headers);
      nghttp2_session_callbacks_set_on_header_callback(cb, &H2Callbacks::header);
      nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2Callbacks::frame_recv);
      nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2Callbacks::data_chunk);
      nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2Callbacks::stream_close);
      nghttp2_option_new(&opt);
      // Windows are given back as ClientConn reads the body (consumed()), not as DATA arrives:
      // a client can then send no faster than the backend takes it.
      nghttp2_option_set_no_auto_window_update(opt, 1);
    }
    ~Setup() {
      nghttp2_option_del(opt);
      nghttp2_session_callbacks_del(cb);
    }
  };
  static thread_local Setup setup;
  nghttp2_session_server_new3(&ng_, setup.cb, this, setup.opt, h2_thread_memory());
}

H2Session::~H2Session() {
  if (ng_) nghttp2_session_del(ng_);
}

void H2Session::start(std::string_view already_read) {
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kInitialWindow}};
  nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv, 2);
  // The descriptor is registered already (for the ClientConn that found HTTP/2): one call moves
  // it to us, and reports at once what is ready (EPOLL_CTL_MOD re-checks, as ADD does).
  if (!l_.ctx_.loop.modify(fd_.get(), this, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)) return close("epoll");
  timer_.arm(l_.idle_timeout_);
  if (!already_read.empty() &&
      nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(already_read.data()), already_read.size()) < 0)
    return close("bad preface");
  if (l_.stopping_) on_stop();
  drive();
}

void H2Session::on_io(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  // The peer's FIN may come in the same edge as its last bytes: after it, read to the end,
  // never stop at a short read (no further edge would tell us of the end).
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hup_ = true;
  if (events & EPOLLOUT) writable_ = true;
  if (events && tr_->any_edge_retries_both()) readable_ = writable_ = true;
  drive();
}

void H2Session::drive() {
  if (closed_ || in_drive_) return;
  in_drive_ = true;
  for (int i = 0; readable_ && i < kReadsPerTurn; ++i) {
    static thread_local uint8_t buf[16384];
    ssize_t n = tr_->read(reinterpret_cast<char*>(buf), sizeof(buf));
    if (n > 0) {
      if (nghttp2_session_mem_recv(ng_, buf, static_cast<size_t>(n)) < 0) {
        in_drive_ = false;
        return close("protocol error");
      }
      if (static_cast<size_t>(n) < sizeof(buf) && !hup_ && tr_->short_read_drains()) readable_ = false;
      if (stream_count_ == 0) timer_.arm(l_.idle_timeout_);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      readable_ = false;
      break;
    }
    in_drive_ = false;
    return close(n == 0 ? "client closed" : "read error");
  }
  if (readable_) flush_.arm(Millis(0));  // more to read: after the others have had a turn
  for (int round = 0; round < 8; ++round) {
    run_pokes();
    if (!flush()) {
      in_drive_ = false;
      return;
    }
    if (pokes_.empty()) break;
  }
  in_drive_ = false;
  if (!pokes_.empty()) flush_.arm(Millis(0));  // the rest next turn, after other connections
  if (!nghttp2_session_want_read(ng_) && !nghttp2_session_want_write(ng_) && out_off_ == out_.size())
    return close("done");
  if (goaway_ && stream_count_ == 0 && out_off_ == out_.size()) return close("stopped");
}

// Frames out, as much as the socket takes; false if the session closed.
bool H2Session::flush() {
  for (;;) {
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
      while (out_.size() < kOutBatch) {
        const uint8_t* d = nullptr;
        ssize_t n = nghttp2_session_mem_send(ng_, &d);
        if (n < 0) return close("send"), false;
        if (n == 0) break;
        out_.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
      }
      if (out_.empty()) return true;
    }
    if (!writable_) return true;
    ssize_t w = tr_->write2(std::string_view(out_).substr(out_off_), {});
    if (w > 0) {
      out_off_ += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      writable_ = false;
      return true;
    }
    return close("write error"), false;
  }
}

void H2Session::poke(H2Stream* s, uint32_t events) { pokes_.emplace_back(s, events); }

void H2Session::run_pokes() {
  if (pokes_.empty()) return;
  std::vector<std::pair<H2Stream*, uint32_t>>& now = pokes_running_;  // kept: no allocation per round
  now.clear();
  now.swap(pokes_);
  for (size_t i = 0; i < now.size(); ++i) {
    auto [s, events] = now[i];
    if (!s || !s->conn) continue;  // gone since (drop_stream nulled it), or no exchange
    s->conn->on_io(events);  // may free this stream or others (the exchange closed)
  }
  now.clear();
}

void H2Session::add_stream(H2Stream* s) {
  ilist::push_front(streams_, s);
  ++stream_count_;
}

void H2Session::drop_stream(H2Stream* s) {
  for (auto* list : {&pokes_, &pokes_running_})
    for (auto& p : *list)
      if (p.first == s) p.first = nullptr;
  ilist::unlink(streams_, s);
  --stream_count_;
  free_h2_stream(s);
}

void H2Session::schedule_flush() {
  if (!closed_ && !in_drive_ && !flush_.armed()) flush_.arm(Millis(0));
}

void H2Session::consumed(H2Stream& s, size_t n) {
  size_t k = std::min(n, s.unconsumed);  // the HTTP/1.1 framing we added is not the client's
  if (k == 0) return;
  s.unconsumed -= k;
  nghttp2_session_consume(ng_, s.id, k);
  schedule_flush();
}

void H2Session::stream_released(H2Stream* s) {
  if (s->unconsumed) {
    nghttp2_session_consume(ng_, s->id, s->unconsumed);
    s->unconsumed = 0;
  }
  if (s->closed) drop_stream(s);
  schedule_flush();
}

void H2Session::reset_stream(H2Stream& s, uint32_t code) {
  if (s.reset || s.closed) return;
  s.reset = true;
  nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, code);
  schedule_flush();
}

void H2Session::response_ready(H2Stream& s) {
  if (s.deferred && s.submitted) {
    s.deferred = false;
    nghttp2_session_resume_data(ng_, s.id);
  }
  schedule_flush();
}

// HEADERS for a final response: the status, and the fields but those HTTP/2 forbids
// (connection-specific ones, RFC 9113 8.2.2), names in lower case. With `fwd` (the head comes
// straight from the backend's, see submit_h2_head) also what the proxy adds to a forwarded head
// (forward.h): its extra field lines and the sticky cookie; framing and Connection are HTTP/1.1's
// only.
void H2Session::submit_response(H2Stream& s, const ResponseHead& head, const ResponseForward* fwd) {
  int code = head.status % 1000;
  char status[4] = {static_cast<char>('0' + code / 100), static_cast<char>('0' + code / 10 % 10),
                    static_cast<char>('0' + code % 10), 0};
  std::array<nghttp2_nv, 104> nva;
  // Lower-cased names and composed values, back to back (nghttp2 copies them): sized first, so
  // that the views taken below stay put.
  std::string& text = names_;
  text.clear();
  size_t total = 0;
  for (const Header& h : head.headers) total += h.name.size();
  if (fwd) total += fwd->extra_fields.size() + fwd->cookie_name.size() + fwd->cookie_value.size() + 64;
  text.reserve(total);
  auto nv = [](std::string_view name, std::string_view value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  auto lowered = [&text](std::string_view name) {
    size_t at = text.size();
    text.resize(at + name.size());
    for (size_t i = 0; i < name.size(); ++i) text[at + i] = ascii::lower(name[i]);
    return std::string_view(text.data() + at, name.size());
  };
  size_t n = 0;
  nva[n++] = nv(":status", std::string_view(status, 3));
  bool length_sent = false;
  for (const Header& h : head.headers) {
    if (n == 101) break;
    if (must_strip(head, h) || (header_token_flags(h.token) & kTokenH2Forbidden)) continue;
    if (h.token == HeaderToken::kContentLength) {  // one, as write_response_head sends it
      if (length_sent) continue;
      length_sent = true;
    }
    std::string_view name = header_token_lower_name(h.token);
    if (name.empty()) name = lowered(h.name);
    nva[n++] = nv(name, h.value);
  }
  if (fwd) {
    // Complete field lines, "Name: value\r\n" each (ours: well formed).
    for (std::string_view rest = fwd->extra_fields; !rest.empty();) {
      size_t eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos || n == nva.size()) continue;
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      nva[n++] = nv(lowered(line.substr(0, colon)), value);
    }
    if (!fwd->cookie_name.empty() && n < nva.size()) {
      size_t at = text.size();
      text.append(fwd->cookie_name).append("=").append(fwd->cookie_value).append("; Path=/; HttpOnly");
      nva[n++] = nv("set-cookie", std::string_view(text.data() + at, text.size() - at));
    }
  }
  bool body = head.body != BodyKind::kNone && !(head.body == BodyKind::kContentLength && head.content_length == 0);
  if (!body) s.resp_end = true;
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = &H2Callbacks::read_data;
  s.submitted = true;
  if (nghttp2_submit_response(ng_, s.id, nva.data(), n, body ? &prd : nullptr) != 0) reset_stream(s, NGHTTP2_INTERNAL_ERROR);
  schedule_flush();
}

// The request as HTTP/1.1, handed to a new exchange (which makes one exchange per stream: no
// "Connection: close" to write and parse again).
void H2Session::on_request_headers(H2Stream& s, bool end_stream) {
  std::string& r = s.req;
  r.reserve(s.method.size() + s.path.size() + s.authority.size() + s.fields.size() + s.cookie.size() + 64);
  r += s.method;
  r += ' ';
  r += s.method == "CONNECT" ? s.authority : s.path;
  r += " HTTP/1.1\r\n";
  if (!s.has_host && !s.authority.empty()) {
    r += "Host: ";
    r += s.authority;
    r += "\r\n";
  }
  r += s.fields;
  if (!s.cookie.empty()) {
    r += "Cookie: ";
    r += s.cookie;
    r += "\r\n";
  }
  if (!end_stream && !s.has_length) {
    s.chunked = true;
    r += "Transfer-Encoding: chunked\r\n";
  }
  r += "\r\n";
  s.fields.clear();
  s.req_method = s.method == "HEAD" ? Method::kHead : s.method == "CONNECT" ? Method::kConnect : Method::kGet;
  s.req_end = end_stream;
  s.conn = start_stream_exchange(l_, &s, peer_, peer_ip_);
  poke(&s, EPOLLIN | EPOLLOUT);
}

void H2Session::on_stop() {
  if (closed_ || goaway_) return;
  goaway_ = true;
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  if (!in_drive_) drive();
}

void H2Session::close(const char* why) {
  if (closed_) return;
  closed_ = true;
  FULCRUM_LOG(kDebug, "http/2 connection %s closed: %s", peer_.to_string().c_str(), why);
  timer_.cancel();
  flush_.cancel();
  pokes_.clear();
  pokes_running_.clear();
  H2Stream* next = nullptr;
  for (H2Stream* s = std::exchange(streams_, nullptr); s; s = next) {
    next = s->next_;
    s->prev_ = s->next_ = nullptr;
    s->session = nullptr;
    s->closed = true;
    if (s->conn_gone || !s->conn) {
      free_h2_stream(s);
      continue;
    }
    s->conn->on_io(EPOLLIN | EPOLLOUT | EPOLLHUP | EPOLLERR);  // it fails and closes, freeing s
  }
  if (fd_) l_.ctx_.loop.remove(fd_.get());
  tr_.reset();
  fd_.reset();
  ilist::unlink(l_.h2_first_, this);
  if (l_.metrics_) l_.metrics_->on_close();
  l_.connection_ended();
  l_.connections_.fetch_sub(1, std::memory_order_relaxed);
  l_.ctx_.loop.defer_delete(this);
}

}  // namespace fulcrum::http
