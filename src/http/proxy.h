// The HTTP/1.1 reverse proxy: a worker's listener for one `protocol: http` listener, and the
// client connections it accepts. A request is parsed in place, routed (first match wins),
// balanced over the route's backend, and streamed both ways with upstream connections from the
// worker's pool. Listener, connections and pool are touched only by their worker's thread, except
// connections(), which the control thread reads while draining. A `protocol: forward_proxy`
// listener is the same with a ForwardProxy (forward_proxy.h) in place of router and balancer.
#pragma once
#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "core/conn_spread.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/transport.h"
#include "http/h1_parser.h"
#include "http/router.h"
#include "http/upstream_pool.h"
#include "lb/balancer.h"
#include "metrics/metrics.h"
#include "static/open_file_cache.h"

namespace fulcrum::tls {
class ServerContext;
class ClientContext;
}
namespace fulcrum::staticfiles {
class StaticSite;
}
namespace fulcrum::cache {
class Store;
}

namespace fulcrum::protect {
class Guard;
class ConnHold;
struct Accepted;
}

namespace fulcrum::http {

constexpr size_t kMaxFields = 100;

// What one worker's HTTP listeners share: buffers, the upstream pool, its pickers, and scratch
// space for parsing (parsers keep offsets, not views, between calls, and a parsed head is used
// before the next parse, so one array serves every connection).
struct HttpContext {
  HttpContext(EventLoop& l, std::vector<upstream::Backend*> b, std::vector<lb::Picker*> p);
  EventLoop& loop;
  BufferPool buffers;
  UpstreamPool pool;
  std::vector<upstream::Backend*> backends;  // config order
  std::vector<lb::Picker*> pickers;          // config order
  // Per backend (config order): TLS to its servers, or null. Set by the runtime after construction.
  std::vector<std::shared_ptr<const tls::ClientContext>> backend_tls;
  // Sticky-cookie ids per backend and server: a hash of the names, so every fulcrum host gives
  // the same id for the same server, and the id says nothing about its address.
  std::vector<std::vector<std::string>> sticky_ids;
  std::array<Header, kMaxFields> fields;
  std::array<Header, kMaxFields> response_fields;
  staticfiles::OpenFileCache files;  // static routes' recently served files (open_file_cache.h)
};

class ClientConn;
class ForwardProxy;
class H2Session;
struct H2Stream;

class HttpListener final : public IoHandler {
 public:
  HttpListener(HttpContext& ctx, const config::Config& cfg, const config::Listener& spec,
               std::shared_ptr<const Router> router, Fd fd);
  ~HttpListener();
  void on_io(uint32_t events) override;
  // Stops accepting; idle keep-alive connections close now, busy ones after their response.
  void stop_accepting();
  size_t connections() const { return connections_.load(std::memory_order_relaxed); }
  // Counters and access log of this listener on this worker (metrics::WorkerMetrics::add_listener
  // with a Layout built from the same config); null counts nothing. Set before the first accept.
  void set_metrics(metrics::ListenerMetrics* m) { metrics_ = m; }
  // The cache store of each route (null: none), shared by every worker's copy of this listener.
  // Set before the first accept.
  void set_caches(std::vector<std::shared_ptr<cache::Store>> by_route) { caches_ = std::move(by_route); }
  // `protocol: https`: the certificates (shared by the generation's workers). Before the first accept.
  void set_tls(std::shared_ptr<const tls::ServerContext> tls) { tls_ = std::move(tls); }
  // The listener's protect limits and rules (shared by its copies on every worker); null: none.
  void set_guard(std::shared_ptr<const protect::Guard> g) { guard_ = std::move(g); }
  // The copies of this listener on every worker, among which connections are spread evenly
  // (core/conn_spread.h); this one is worker `worker`'s. Before the first accept; none: each
  // keeps what its socket accepts.
  void set_spread(std::shared_ptr<ConnSpread<HttpListener>> spread, size_t worker) {
    spread_ = std::move(spread);
    worker_ = worker;
    spread_->join(worker, this, &ctx_.loop);
  }

 private:
  friend class ClientConn;
  friend class H2Session;
  friend IoHandler* start_stream_exchange(HttpListener&, H2Stream*, const SocketAddress&, std::string_view);
  friend void start_h2_session(HttpListener&, Fd, std::unique_ptr<Transport>, const SocketAddress&, std::string_view,
                               protect::ConnHold);
  // A client connection accepted here, or handed over by another worker's copy (spread_), which
  // counted it in connections_ already (`counted`).
  void adopt(protect::Accepted a, bool counted);
  friend class ConnSpread<HttpListener>;
  // A client connection (not a stream) has ended: one fewer in this copy's share.
  void connection_ended() {
    if (spread_) spread_->closed(worker_);
  }
  HttpContext& ctx_;
  const config::Config& cfg_;
  const config::Listener& spec_;
  std::shared_ptr<const Router> router_;
  std::vector<std::unique_ptr<staticfiles::StaticSite>> statics_;  // by route; null for backend routes
  std::vector<int> route_backend_;  // route index -> backend index, -1 for static routes
  std::vector<std::shared_ptr<cache::Store>> caches_;  // by route; may be shorter (no cache)
  Fd fd_;
  Millis header_timeout_{10000};
  Millis idle_timeout_{60000};
  uint64_t max_header_bytes_ = 32 * 1024;
  bool stopping_ = false;
  std::atomic<size_t> connections_{0};
  metrics::ListenerMetrics* metrics_ = nullptr;
  std::unique_ptr<ForwardProxy> forward_;  // protocol: forward_proxy (forward_proxy.h); else null
  std::shared_ptr<const tls::ServerContext> tls_;
  std::shared_ptr<const protect::Guard> guard_;
  ClientConn* first_ = nullptr;
  H2Session* h2_first_ = nullptr;
  std::shared_ptr<ConnSpread<HttpListener>> spread_;
  size_t worker_ = 0;
};

// An exchange for one HTTP/2 stream (h2_session.cc): the same state machine as an HTTP/1.1
// connection, reading and writing the stream through its transport (make_stream_transport).
// Returned to be told of the stream's events; it frees itself (and with it the transport) when
// done.
IoHandler* start_stream_exchange(HttpListener& l, H2Stream* s, const SocketAddress& peer, std::string_view peer_ip);

}  // namespace fulcrum::http
