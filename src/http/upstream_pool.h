// Upstream connections for HTTP and the worker's pool of idle keep-alive ones, per server. A
// connection belongs to one exchange while it carries a request and to the pool between requests;
// the pool watches idle ones and drops those the server closes or that idle too long. Worker
// thread only: a connection is reused only by the worker that opened it (no locks).
#pragma once
#include <unordered_map>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/transport.h"
#include "upstream/server.h"

namespace fulcrum::tls {
class ClientContext;
}

namespace fulcrum::http {

class UpstreamPool;

// Receives readiness of the upstream connection it holds.
class UpstreamOwner {
 public:
  virtual void on_upstream_io(uint32_t events) = 0;

 protected:
  ~UpstreamOwner() = default;
};

class UpstreamConn final : public IoHandler, public Deferred {
 public:
  UpstreamConn(UpstreamPool& pool, upstream::Server* server, Fd fd);
  ~UpstreamConn() override;
  void on_io(uint32_t events) override;

  Fd fd;
  std::unique_ptr<Transport> io;  // plain, or TLS for a backend with `tls:`
  upstream::Server* server;
  Buffer in;
  UpstreamOwner* owner = nullptr;
  bool readable = false;
  bool hup = false;  // the server's FIN (or an error) came with an edge
  bool writable = false;
  bool connected = false;
  bool reused = false;  // came from the pool: a failure before any byte may be a stale close
  bool closed = false;  // given to close(): events still queued in this loop turn are ignored
  bool pooled = false;  // idle in the pool (its idle timer counts only then)

 private:
  friend class UpstreamPool;
  UpstreamPool& pool_;
  Timer idle_timer_;
};

class UpstreamPool {
 public:
  UpstreamPool(EventLoop& loop, BufferPool& buffers, size_t max_idle_per_server = 256,
               Millis idle_timeout = Millis(30000))
      : loop_(loop), buffers_(buffers), max_idle_(max_idle_per_server), idle_timeout_(idle_timeout) {}
  ~UpstreamPool();

  EventLoop& loop() { return loop_; }
  BufferPool& buffers() { return buffers_; }
  // An idle connection to `server`, or nullptr.
  UpstreamConn* take(upstream::Server* server);
  // A new connection (connect in progress; with `tls`, its handshake still to do); nullptr with
  // *err set on failure.
  UpstreamConn* open(upstream::Server* server, const tls::ClientContext* tls, int* err);
  // Back to the pool after a complete exchange; closed instead if the pool for that server is
  // full, the server is down, or the server sent bytes or a close nobody has read yet.
  void put(UpstreamConn* conn);
  // Closes and deletes (after this turn). Idempotent.
  void close(UpstreamConn* conn);
  size_t idle(upstream::Server* server) const;
  // Closes the idle connections to `server` and forgets it: the server is about to go (a forward
  // proxy's origin, forward_proxy.h). Connections in use must have been closed or put back.
  void forget(upstream::Server* server);

 private:
  friend class UpstreamConn;
  void drop_idle(UpstreamConn* conn);
  // Whether the server sent bytes or closed (a peek; false clears conn->readable).
  bool unsafe_to_reuse(UpstreamConn* conn);
  EventLoop& loop_;
  BufferPool& buffers_;
  size_t max_idle_;
  Millis idle_timeout_;
  std::unordered_map<upstream::Server*, std::vector<UpstreamConn*>> idle_;
};

}  // namespace fulcrum::http
