// The HTTP proxy's client connection, part 3 (client_conn.h): responses fulcrum makes itself
// (errors, static files, cache hits), flushing, lingering and closing. Worker thread only.
#include "core/intrusive_list.h"
#include "http/client_conn.h"

namespace fulcrum::http {
using namespace conn_detail;

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
  if (l_.metrics_) l_.metrics_->local_response(x_, status, out_.size(), peer_, ctx_.loop.now());
  set_state(keep_alive_ ? State::kLocal : State::kClosing);
}

void ClientConn::serve_static(const staticfiles::StaticSite& site, const RequestHead& head, std::string_view path,
                              bool close_after) {
  if (close_after) keep_alive_ = false;
  staticfiles::FileReply reply = site.serve(head.method, path, head.headers, !keep_alive_, out_, &ctx_.files,
                                            ctx_.loop.now());
  x_.status = reply.status;
  file_ = std::move(reply);
  if (file_.fd() < 0) file_.length = 0;
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
  while (file_.length > 0 && writable_) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(file_.length, 1 << 20));
    ssize_t n = tr_->send_file(file_.fd(), file_.offset, chunk);
    if (n > 0) {
      *progress = true;
      file_.offset += static_cast<uint64_t>(n);
      file_.length -= static_cast<uint64_t>(n);
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
  return file_.length == 0;
}

bool ClientConn::step_flush() {
  bool progress = false;
  if (file_.length > 0) {
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
    file_ = {};
    if (l_.metrics_) l_.metrics_->end_http(x_, peer_, ctx_.loop.now());
  }
  if (state_ == State::kClosing) {
    // Half-close: the client reads the whole response, then sees the end.
    tr_->shutdown_write();
    // No lingering on an HTTP/2 stream: its response ended with END_STREAM, and request DATA
    // that still comes is given back to the flow-control windows once the exchange is gone.
    if (read_eof_ || stream_) return close("done"), false;
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
    l_.metrics_->end_http(x_, peer_, ctx_.loop.now());  // a request cut short: logged as 499
    if (!stream_ && !handed_off_) l_.metrics_->on_close();  // the session counts its own
  }
  if (!stream_ && !handed_off_) l_.connection_ended();
  tr_.reset();  // before the socket it writes to (an HTTP/2 stream's may free the stream)
  h2_ = nullptr;
  fd_.reset();
  in_.release();
  out_.release();
  req_head_.release();
  ilist::unlink(l_.first_, this);
  if (!handed_off_) l_.connections_.fetch_sub(1, std::memory_order_relaxed);
  ctx_.loop.defer_delete(this);
}

IoHandler* start_stream_exchange(HttpListener& l, H2Stream* s, const SocketAddress& peer, std::string_view peer_ip) {
  auto* conn = new ClientConn(l, Fd(), make_stream_transport(s), peer, peer_ip);
  conn->set_stream(s);
  ilist::push_front(l.first_, conn);
  l.connections_.fetch_add(1, std::memory_order_relaxed);
  conn->start();
  return conn;
}

}  // namespace fulcrum::http
