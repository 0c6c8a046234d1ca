#include "l4/tcp_proxy.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/intrusive_list.h"
#include "core/log.h"
#include "core/socket.h"
#include "l4/proxy_protocol.h"
#include "protect/guard.h"

namespace fulcrum::l4 {

// One proxied connection: the client side, the upstream side, and a flow each way.
class TcpSession final : public Deferred {
 public:
  TcpSession(TcpListener& listener, Fd client, const SocketAddress& peer);
  ~TcpSession() override;
  void start();
  void close(const char* why);

  TcpSession* prev_ = nullptr;
  TcpSession* next_ = nullptr;
  protect::ConnHold hold_;  // its place in protect.max_conns_per_client

 private:
  struct End final : IoHandler {
    TcpSession* session = nullptr;
    Fd fd;
    bool readable = false;
    bool rdhup = false;  // the peer's FIN was signalled: read until 0, never infer from a short read
    bool writable = false;
    bool read_eof = false;   // peer sent FIN
    bool write_shut = false;  // we sent FIN
    void on_io(uint32_t events) override { session->on_io(*this, events); }
  };
  struct Flow {
    Pipe pipe;
    size_t in_pipe = 0;
    bool bulk = false;  // a full copy-read was seen: splice the rest of this burst
  };

  void on_io(End& end, uint32_t events);
  void connect_next();
  void on_connected();
  void connect_failed(const char* why, int err);
  // Moves what it can from src to dst; false on a fatal socket error.
  bool pump(End& src, End& dst, Flow& flow);
  void pump_all();
  void touch();

  TcpListener& listener_;
  PipePool& pipes_;  // outlives the listener: the loop may delete us after the listener is gone
  End client_;
  End upstream_;
  Flow c2u_;
  Flow u2c_;
  SocketAddress peer_;
  Timer connect_timer_;
  Timer idle_timer_;
  upstream::Server* server_ = nullptr;
  lb::TriedSet tried_;
  TimePoint connect_start_{};
  TimePoint started_ = Clock::now();  // accepted, for the access log and the duration histogram
  uint32_t attempts_ = 0;
  bool connected_ = false;
  bool closed_ = false;
};

namespace {
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
constexpr size_t kCopyBytes = 16 * 1024;
}

// ---- listener --------------------------------------------------------------------------------

TcpListener::TcpListener(EventLoop& loop, PipePool& pipes, const config::Listener& spec,
                         const config::Backend& backend, lb::Picker& picker, Fd fd)
    : loop_(loop),
      pipes_(pipes),
      spec_(spec),
      backend_(backend),
      picker_(picker),
      fd_(std::move(fd)),
      resume_timer_(loop, [this] { resume_accepting(); }) {
  if (spec_.idle_timeout) idle_timeout_ = *spec_.idle_timeout;
  else if (spec_.protect) idle_timeout_ = spec_.protect->idle_timeout;
  // Level-triggered: accepting a bounded batch per wake-up keeps one busy listener from
  // starving the sessions on the same loop.
  if (auto r = loop_.add(fd_.get(), this, EPOLLIN); !r)
    FULCRUM_LOG(kError, "listener %s: %s", spec_.name.c_str(), r.error().message.c_str());
}

TcpListener::~TcpListener() {
  if (fd_) loop_.remove(fd_.get());
  while (first_) {
    TcpSession* s = first_;
    s->close("listener closed");
    // close() unlinks the session; it is deleted by the loop.
  }
}

void TcpListener::on_io(uint32_t) {
  for (int i = 0; i < 64 && fd_; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int c = accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        FULCRUM_LOG_LIMITED(kError, "listener %s: accept: %s; pausing accepts for 100ms", spec_.name.c_str(),
                            strerror(errno));
        (void)loop_.modify(fd_.get(), this, 0);
        resume_timer_.arm(Millis(100));
        return;
      }
      FULCRUM_LOG_LIMITED(kWarn, "listener %s: accept: %s", spec_.name.c_str(), strerror(errno));
      return;
    }
    SocketAddress peer(reinterpret_cast<sockaddr*>(&ss), len);
    protect::ConnHold hold;
    if (guard_ && !guard_->admit(peer, loop_.now(), metrics_, &hold)) {  // over a limit: refused, closed now
      protect::refuse_connection(c);
      continue;
    }
    protect::Accepted a{Fd(c), peer, std::move(hold)};
    size_t to = spread_ ? spread_->pick(worker_) : worker_;
    if (to == worker_) {
      adopt(std::move(a), false);
      continue;
    }
    // Another worker's copy holds clearly fewer: it takes the session (see http/proxy.cc).
    spread_->listener(to)->sessions_.fetch_add(1, std::memory_order_relaxed);
    spread_->hand_over(to, std::move(a));
  }
}

void TcpListener::adopt(protect::Accepted a, bool counted) {
  auto* s = new TcpSession(*this, std::move(a.fd), a.peer);
  s->hold_ = std::move(a.hold);
  ilist::push_front(first_, s);
  if (!counted) sessions_.fetch_add(1, std::memory_order_relaxed);
  if (metrics_) metrics_->on_accept();
  s->start();
}

void TcpListener::resume_accepting() {
  if (fd_) (void)loop_.modify(fd_.get(), this, EPOLLIN);
}

void TcpListener::stop_accepting() {
  if (!fd_) return;
  loop_.remove(fd_.get());
  fd_.reset();
  resume_timer_.cancel();
}

// ---- session ---------------------------------------------------------------------------------

TcpSession::TcpSession(TcpListener& listener, Fd client, const SocketAddress& peer)
    : listener_(listener),
      pipes_(listener.pipes_),
      peer_(peer),
      connect_timer_(listener.loop_, [this] { connect_failed("connect timeout", ETIMEDOUT); }),
      idle_timer_(listener.loop_, [this] { close("idle timeout"); }) {
  client_.session = this;
  client_.fd = std::move(client);
  upstream_.session = this;
}

TcpSession::~TcpSession() {
  pipes_.discard(c2u_.pipe);
  pipes_.discard(u2c_.pipe);
}

void TcpSession::start() {
  set_nodelay(client_.fd.get());
  if (auto r = listener_.loop_.add(client_.fd.get(), &client_); !r) return close("epoll");
  touch();
  connect_next();
}

void TcpSession::touch() {
  if (listener_.idle_timeout_.count() > 0) idle_timer_.arm(listener_.idle_timeout_);
}

void TcpSession::connect_next() {
  lb::PickContext ctx;
  ctx.client = &peer_;
  ctx.tried = &tried_;
  server_ = listener_.picker_.pick(ctx);
  if (server_ == nullptr) {
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: no server available in backend %s for %s",
                        listener_.spec_.name.c_str(), listener_.backend_.name.c_str(), peer_.to_string().c_str());
    return close("no server");
  }
  ++attempts_;
  tried_.add(server_->index());
  server_->begin();
  connect_start_ = Clock::now();
  bool in_progress = false;
  auto fd = connect_socket(server_->address(), &in_progress);
  if (!fd) return connect_failed("connect", fd.error().code);
  upstream_.fd = std::move(*fd);
  upstream_.readable = upstream_.writable = upstream_.read_eof = upstream_.write_shut = false;
  if (auto r = listener_.loop_.add(upstream_.fd.get(), &upstream_); !r) return connect_failed("epoll", r.error().code);
  connect_timer_.arm(listener_.backend_.connect_timeout);
}

void TcpSession::connect_failed(const char* why, int err) {
  connect_timer_.cancel();
  if (upstream_.fd) {
    listener_.loop_.remove(upstream_.fd.get());
    upstream_.fd.reset();
  }
  if (server_) {
    server_->end();
    server_->record_failure();
    server_->report_outcome(false);  // passive health: errors on live traffic may eject it
    FULCRUM_LOG_LIMITED(kWarn, "listener %s: backend %s server %s (%s): %s: %s (attempt %u)",
                        listener_.spec_.name.c_str(), listener_.backend_.name.c_str(), server_->name().c_str(),
                        server_->address_text().c_str(), why, strerror(err), attempts_);
    server_ = nullptr;
  }
  if (attempts_ <= listener_.backend_.retries) return connect_next();
  close("all connect attempts failed");
}

void TcpSession::on_connected() {
  connect_timer_.cancel();
  connected_ = true;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - connect_start_).count();
  server_->record_time_us(static_cast<uint32_t>(us > 0xffffffffLL ? 0xffffffffLL : us));
  server_->report_outcome(true);
  set_nodelay(upstream_.fd.get());
  if (listener_.spec_.proxy_protocol != config::ProxyProtocol::kOff) {
    SocketAddress local = SocketAddress::local_of(client_.fd.get());
    char header[kMaxProxyHeader];
    size_t n = write_proxy_header(listener_.spec_.proxy_protocol, peer_, local, header);
    // A fresh connection's send buffer is empty: a header of ~100 bytes goes in one write.
    if (::send(upstream_.fd.get(), header, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n))
      return close("proxy protocol header not sent");
  }
}

void TcpSession::on_io(End& end, uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) end.readable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) end.rdhup = true;
  if (events & EPOLLOUT) end.writable = true;
  if (!connected_) {
    if (&end != &upstream_) return;  // client bytes wait in its socket until we are connected
    int err = socket_error(upstream_.fd.get());
    if (err != 0) return connect_failed("connect", err);
    if (!(events & EPOLLOUT)) return;
    on_connected();
    if (closed_) return;
    client_.readable = client_.writable = true;  // try both ways once; EAGAIN resets the flags
  }
  pump_all();
}

void TcpSession::pump_all() {
  if (!pump(client_, upstream_, c2u_) || !pump(upstream_, client_, u2c_)) {
    if (!closed_) close("socket error");
    return;
  }
  touch();
  bool c2u_done = client_.read_eof && c2u_.in_pipe == 0 && upstream_.write_shut;
  bool u2c_done = upstream_.read_eof && u2c_.in_pipe == 0 && client_.write_shut;
  if (c2u_done && u2c_done) close("done");
}

// Small bursts (a request, a short response) are copied: one recv and one send, and a short recv
// tells the socket is drained without a third call that would only say EAGAIN. Once a recv fills
// the scratch block the burst is bulk, and the rest of it moves with splice(2) through a pipe,
// never through user space. What dst cannot take at once waits in the flow's pipe either way.
bool TcpSession::pump(End& src, End& dst, Flow& flow) {
  PipePool& pool = pipes_;
  static thread_local char scratch[kCopyBytes];
  for (;;) {
    if (flow.in_pipe > 0) {
      if (!dst.writable) break;
      ssize_t n = splice(flow.pipe.read, nullptr, dst.fd.get(), nullptr, flow.in_pipe, kSpliceFlags);
      if (n > 0) {
        flow.in_pipe -= static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EAGAIN) {
        dst.writable = false;
        break;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;  // EPIPE, ECONNRESET: the other side is gone
    }
    if (src.read_eof || !src.readable) break;
    if (!flow.bulk) {
      ssize_t n = ::recv(src.fd.get(), scratch, sizeof(scratch), 0);
      if (n == 0) {
        src.read_eof = true;
        break;
      }
      if (n < 0) {
        if (errno == EAGAIN) {
          src.readable = false;
          break;
        }
        if (errno == EINTR) continue;
        return false;
      }
      size_t got = static_cast<size_t>(n);
      if (got == sizeof(scratch)) flow.bulk = true;
      else if (!src.rdhup) src.readable = false;  // drained; a new edge comes with new bytes
      size_t sent = 0;
      if (dst.writable) {
        ssize_t w = ::send(dst.fd.get(), scratch, got, MSG_NOSIGNAL);
        if (w > 0) sent = static_cast<size_t>(w);
        else if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
        if (sent < got) dst.writable = false;
      }
      if (sent < got) {  // the rest waits in the pipe (a pipe holds far more than the scratch)
        if (!flow.pipe.valid() && !(flow.pipe = pool.acquire()).valid()) return false;
        ssize_t w = ::write(flow.pipe.write, scratch + sent, got - sent);
        if (w != static_cast<ssize_t>(got - sent)) return false;
        flow.in_pipe += got - sent;
      }
      continue;
    }
    if (!flow.pipe.valid()) {
      flow.pipe = pool.acquire();
      if (!flow.pipe.valid()) {
        FULCRUM_LOG_LIMITED(kError, "listener %s: pipe2: %s", listener_.spec_.name.c_str(), strerror(errno));
        return false;
      }
    }
    ssize_t n = splice(src.fd.get(), nullptr, flow.pipe.write, nullptr, static_cast<size_t>(pool.pipe_bytes()),
                       kSpliceFlags);
    if (n > 0) {
      flow.in_pipe += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      src.read_eof = true;
      break;
    }
    if (errno == EAGAIN) {  // the pipe is empty here, so it is the socket that has nothing
      src.readable = false;
      flow.bulk = false;  // the burst is over; the next one starts with a copy
      break;
    }
    if (errno == EINTR) continue;
    return false;
  }
  if (flow.in_pipe == 0 && flow.pipe.valid()) pool.release(flow.pipe);
  // Half-close (RFC 9293 3.6): pass the FIN on once everything before it has been delivered.
  if (src.read_eof && flow.in_pipe == 0 && !dst.write_shut) {
    ::shutdown(dst.fd.get(), SHUT_WR);
    dst.write_shut = true;
  }
  return true;
}

void TcpSession::close(const char* why) {
  if (closed_) return;
  closed_ = true;
  FULCRUM_LOG(kDebug, "tcp session %s closed: %s", peer_.to_string().c_str(), why);
  connect_timer_.cancel();
  idle_timer_.cancel();
  if (auto* m = listener_.metrics_) {
    // As nginx's stream module logs them: 200 served, 502 no server would connect, 503 none
    // available, 499 the client left before a server was reached.
    int status = connected_                                        ? 200
                 : std::strcmp(why, "no server") == 0                  ? 503
                 : std::strcmp(why, "all connect attempts failed") == 0 ? 502
                                                                        : 499;
    m->end_tcp(peer_, started_, Clock::now(), connected_ && server_ ? static_cast<int>(server_->index()) : -1, status,
               client_.fd.get());
    m->on_close();
  }
  if (server_) {
    server_->end();
    server_ = nullptr;
  }
  // Closing the descriptors drops them from epoll; events already fetched for this turn see
  // closed_ and return, and the loop deletes us after the turn.
  client_.fd.reset();
  upstream_.fd.reset();
  ilist::unlink(listener_.first_, this);
  if (listener_.spread_) listener_.spread_->closed(listener_.worker_);
  listener_.sessions_.fetch_sub(1, std::memory_order_relaxed);
  listener_.loop_.defer_delete(this);
}

}  // namespace fulcrum::l4
