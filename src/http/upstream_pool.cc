// See upstream_pool.h. Worker thread only.
#include "http/upstream_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "core/socket.h"
#include "tls/tls.h"

namespace fulcrum::http {

UpstreamConn::UpstreamConn(UpstreamPool& pool, upstream::Server* s, Fd f)
    : fd(std::move(f)), server(s), in(pool.buffers()), pool_(pool), idle_timer_(pool.loop(), [this] {
        if (pooled) pool_.drop_idle(this);  // else in use: the timer is armed again when it returns
      }) {}

UpstreamConn::~UpstreamConn() = default;

void UpstreamConn::on_io(uint32_t events) {
  if (closed) return;  // closed earlier in this turn; deleted after it
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hup = true;
  if (events & EPOLLOUT) writable = true;
  if (events && io && io->any_edge_retries_both()) readable = writable = true;
  if (owner) return owner->on_upstream_io(events);
  // Idle in the pool: the server closed it, or sent bytes nobody asked for; either way it is no
  // longer safe to reuse. But a readable edge may also be one for the last bytes of the response
  // before it, already read (edge-triggered: it was queued before we read them): peek to tell.
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) return pool_.drop_idle(this);
  if ((events & EPOLLIN) && pool_.unsafe_to_reuse(this)) pool_.drop_idle(this);
}

bool UpstreamPool::unsafe_to_reuse(UpstreamConn* c) {
  if (c->io->peek_unsafe()) return true;  // bytes, the server's FIN, or an error
  c->readable = false;
  return false;
}

UpstreamPool::~UpstreamPool() {
  for (auto& [server, list] : idle_)
    for (UpstreamConn* c : list) {
      loop_.remove(c->fd.get());
      delete c;
    }
}

UpstreamConn* UpstreamPool::take(upstream::Server* server) {
  auto it = idle_.find(server);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  UpstreamConn* c = it->second.back();  // the most recently used: likeliest to be alive
  it->second.pop_back();
  // The idle timer stays armed: put() moves its deadline later, which costs nothing (the loop's
  // heap re-files a timer only when its old key comes due), where a cancel and a new arm for
  // each request were two heap operations.
  c->pooled = false;
  c->reused = true;
  return c;
}

UpstreamConn* UpstreamPool::open(upstream::Server* server, const tls::ClientContext* tls, int* err) {
  bool in_progress = false;
  auto fd = connect_socket(server->address(), &in_progress);
  if (!fd) {
    *err = fd.error().code;
    return nullptr;
  }
  set_nodelay(fd->get());
  auto* c = new UpstreamConn(*this, server, std::move(*fd));
  c->connected = !in_progress;
  if (tls) {
    SSL* ssl = tls->new_ssl(c->fd.get());
    if (!ssl) {
      *err = ENOMEM;
      delete c;
      return nullptr;
    }
    c->io = std::make_unique<tls::TlsTransport>(ssl, false);
  } else {
    c->io = std::make_unique<SocketTransport>(c->fd.get());
  }
  if (auto r = loop_.add(c->fd.get(), c); !r) {
    *err = r.error().code;
    delete c;
    return nullptr;
  }
  return c;
}

void UpstreamPool::put(UpstreamConn* c) {
  c->owner = nullptr;
  c->in.release();
  // An edge we have not read to EAGAIN may hide bytes after the response, or the server's FIN:
  // either would be taken for the next response. One peek settles it (MSG_PEEK leaves the bytes).
  if (c->readable && unsafe_to_reuse(c)) return close(c);
  auto& list = idle_[c->server];
  if (list.size() >= max_idle_ || c->server->health() == upstream::Health::kDown) return close(c);
  list.push_back(c);
  c->pooled = true;
  c->idle_timer_.arm(idle_timeout_);
}

void UpstreamPool::drop_idle(UpstreamConn* c) {
  c->pooled = false;
  auto& list = idle_[c->server];
  auto it = std::find(list.begin(), list.end(), c);
  if (it != list.end()) list.erase(it);
  close(c);
}

size_t UpstreamPool::idle(upstream::Server* server) const {
  auto it = idle_.find(server);
  return it == idle_.end() ? 0 : it->second.size();
}

void UpstreamPool::forget(upstream::Server* server) {
  auto it = idle_.find(server);
  if (it == idle_.end()) return;
  std::vector<UpstreamConn*> list = std::move(it->second);
  idle_.erase(it);
  for (UpstreamConn* c : list) close(c);
}

void UpstreamPool::close(UpstreamConn* c) {
  if (c->closed) return;
  c->closed = true;
  c->owner = nullptr;
  c->in.release();  // now: the buffer pool may be gone by the time the loop deletes `c`
  c->idle_timer_.cancel();
  if (c->fd) {
    loop_.remove(c->fd.get());
    c->io.reset();  // before the socket it writes to
    c->fd.reset();
  }
  loop_.defer_delete(c);
}

}  // namespace fulcrum::http
