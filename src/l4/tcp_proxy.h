// The L4 TCP proxy: a worker's listener for one `protocol: tcp` listener, and the sessions it
// accepts. Bytes move between the two sockets with splice(2) through a borrowed pipe, never
// through user space. Each worker has its own listening socket (SO_REUSEPORT) and its own
// sessions; a TcpListener and its sessions are touched only by that worker's thread, except
// sessions(), which the control thread reads while draining.
#pragma once
#include <atomic>
#include <memory>

#include "config/config.h"
#include "core/conn_spread.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/pipe_pool.h"
#include "lb/balancer.h"
#include "metrics/metrics.h"

namespace fulcrum::protect {
class Guard;
struct Accepted;
}

namespace fulcrum::l4 {

class TcpSession;

class TcpListener final : public IoHandler {
 public:
  TcpListener(EventLoop& loop, PipePool& pipes, const config::Listener& spec, const config::Backend& backend,
              lb::Picker& picker, Fd fd);
  ~TcpListener();

  void on_io(uint32_t events) override;
  // Stops accepting (graceful stop); sessions go on until they end.
  void stop_accepting();
  size_t sessions() const { return sessions_.load(std::memory_order_relaxed); }
  // Counters and access log of this listener on this worker; null counts nothing. Set before the
  // first accept.
  void set_metrics(metrics::ListenerMetrics* m) { metrics_ = m; }
  // protect: allow/deny, rate and max_conns_per_client at accept (shared by every worker); null: none.
  void set_guard(std::shared_ptr<const protect::Guard> g) { guard_ = std::move(g); }
  // The copies of this listener on every worker, among which connections are spread evenly
  // (core/conn_spread.h); this one is worker `worker`'s. Before the first accept.
  void set_spread(std::shared_ptr<ConnSpread<TcpListener>> spread, size_t worker) {
    spread_ = std::move(spread);
    worker_ = worker;
    spread_->join(worker, this, &loop_);
  }

 private:
  friend class TcpSession;
  void resume_accepting();
  // A connection accepted here, or handed over by another worker's copy (spread_), which counted
  // it in sessions_ already (`counted`), so that a drain does not miss it on its way.
  void adopt(protect::Accepted a, bool counted);
  friend class ConnSpread<TcpListener>;

  EventLoop& loop_;
  PipePool& pipes_;
  const config::Listener& spec_;
  const config::Backend& backend_;
  lb::Picker& picker_;
  Fd fd_;
  Millis idle_timeout_{0};  // 0 = none
  Timer resume_timer_;      // accept paused after EMFILE/ENFILE
  std::atomic<size_t> sessions_{0};
  metrics::ListenerMetrics* metrics_ = nullptr;
  std::shared_ptr<const protect::Guard> guard_;
  TcpSession* first_ = nullptr;  // live sessions, closed when the listener goes
  std::shared_ptr<ConnSpread<TcpListener>> spread_;
  size_t worker_ = 0;
};

}  // namespace fulcrum::l4
