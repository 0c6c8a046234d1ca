#include "app/runtime.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <variant>
#include <vector>

#include "app/validate.h"
#include "config/loader.h"

#include "admin/admin_server.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/pipe_pool.h"
#include "core/socket.h"
#include "health/health_service.h"
#include "http/proxy.h"
#include "http/router.h"
#include "dns/dns_listener.h"
#include "l4/tcp_proxy.h"
#include "l4/udp_proxy.h"
#include "lb/balancer.h"
#include "cache/store.h"
#include "protect/guard.h"
#include "metrics/access_log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"
#include "upstream/server.h"

namespace fulcrum::app {
namespace {

// Everything one worker thread owns. Members are destroyed in reverse order: listeners close
// their sessions, then the loop deletes them, then the pipes go.
struct Worker {
  explicit Worker(size_t i) : index(i) {}
  size_t index;
  PipePool pipes;
  EventLoop loop;
  metrics::WorkerMetrics* metrics = nullptr;         // in the runtime's registry
  std::unique_ptr<metrics::AccessLogSink> log_sink;  // null without an access log
  std::vector<std::unique_ptr<lb::Picker>> pickers;  // one per backend, in config order
  std::vector<std::unique_ptr<l4::TcpListener>> tcp;
  std::vector<std::unique_ptr<l4::UdpListener>> udp;  // not in sessions(): a flow has no end to wait for
  std::vector<std::unique_ptr<dns::DnsListener>> dns;  // nor has a DNS query worth delaying a stop
  std::unique_ptr<http::HttpContext> http_ctx;
  std::vector<std::unique_ptr<http::HttpListener>> http;
  std::thread thread;
  std::atomic<bool> stopped_accepting{false};  // set on the worker's thread by stop_accepting()

  size_t sessions() const {
    size_t n = 0;
    for (auto& l : tcp) n += l->sessions();
    for (auto& l : http) n += l->connections();
    return n;
  }
  void stop_accepting() {
    stopped_accepting.store(true, std::memory_order_release);
    for (auto& l : tcp) l->stop_accepting();
    for (auto& l : http) l->stop_accepting();
    for (auto& l : udp) l->stop_accepting();
    for (auto& l : dns) l->stop_accepting();
  }
  ~Worker() {
    http.clear();  // before the context their connections use
    tcp.clear();
    udp.clear();
    dns.clear();
  }
};

class SignalHandler final : public IoHandler {
 public:
  explicit SignalHandler(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {}
  Fd fd;
  void on_io(uint32_t) override {
    signalfd_siginfo si;
    while (::read(fd.get(), &si, sizeof(si)) == sizeof(si)) on_signal_(static_cast<int>(si.ssi_signo));
  }

 private:
  std::function<void(int)> on_signal_;
};

// A config the runtime has moved away from (SIGHUP, POST /api/v1/reload): its workers no longer
// accept, and it lives on until its last connection ends, so a reload drops nothing in flight.
struct Retired {
  std::shared_ptr<const config::Config> cfg;
  std::vector<std::unique_ptr<upstream::Backend>> backends;
  std::unique_ptr<health::HealthService> health;  // stopped; kept while its workers may post to it
  std::vector<std::unique_ptr<Worker>> workers;
  // Done once every worker has stopped accepting (a posted task) and its last connection ended.
  bool done() const {
    for (auto& w : workers)
      if (!w->stopped_accepting.load(std::memory_order_acquire) || w->sessions() != 0) return false;
    return true;
  }
  size_t sessions() const {
    size_t n = 0;
    for (auto& w : workers) n += w->sessions();
    return n;
  }
  ~Retired() {
    for (auto& w : workers) w->loop.stop();
    for (auto& w : workers)
      if (w->thread.joinable()) w->thread.join();
    workers.clear();
    health.reset();
  }
};

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(std::shared_ptr<const config::Config> cfg)
      : cfg_(std::move(cfg)),
        drain_timer_(control_, [this] { drain_tick(); }),
        retire_timer_(control_, [this] { retire_tick(); }) {}

  Result<void> build() {
    auto log = metrics::AccessLog::open(cfg_->access_log);
    if (!log) return log.error();
    access_log_ = std::move(*log);
    long fds = raise_fd_limit();
    FULCRUM_LOG(kDebug, "descriptor limit %ld", fds);
    if (auto r = build_generation(*cfg_, backends_, health_, workers_); !r) return r;
    if (cfg_->admin) {  // bound now, so a port in use is reported at once; serves from run()
      admin_ = std::make_unique<admin::AdminServer>(
          control_, admin::Sources{&backends_, &metrics_, [this] { return access_log_.get(); }},
          [this] { return reload(); });
      if (auto r = admin_->configure(*cfg_->admin); !r) return r.error();
    }
    return {};
  }

  // Builds everything a config needs that is not shared across reloads: backends (their servers'
  // states carried over from the running ones by backend, name and address), the health service,
  // and the workers with their listeners (on sockets reused from the running listeners where the
  // address is the same, so no connection waiting in an accept queue is lost).
  Result<void> build_generation(const config::Config& cfg, std::vector<std::unique_ptr<upstream::Backend>>& backends_out,
                                std::unique_ptr<health::HealthService>& health_out,
                                std::vector<std::unique_ptr<Worker>>& workers_out) {
    std::vector<std::unique_ptr<upstream::Backend>> backends;
    for (auto& b : cfg.backends) {
      backends.push_back(std::make_unique<upstream::Backend>(b));
      carry_over_state(*backends.back());
    }
    auto backend_index = [&backends](const std::string& name) -> size_t {
      for (size_t i = 0; i < backends.size(); ++i)
        if (backends[i]->name() == name) return i;
      return 0;  // the loader guarantees the name exists
    };
    // Routers are built once and shared read-only by every worker.
    std::vector<std::shared_ptr<const http::Router>> routers(cfg.listeners.size());
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      auto& l = cfg.listeners[i];
      if (l.protocol != config::Protocol::kHttp && l.protocol != config::Protocol::kHttps) continue;
      auto router = http::Router::build(l);
      if (!router) return Error{0, "listener '" + l.name + "': " + router.error().message};
      routers[i] = std::shared_ptr<const http::Router>(std::move(*router));
    }
    // TLS contexts, new for each generation: a reload reads the certificates again, and the
    // connections of the old generation keep the contexts they were accepted with.
    std::vector<std::shared_ptr<const tls::ServerContext>> server_tls(cfg.listeners.size());
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      auto& l = cfg.listeners[i];
      if (l.protocol != config::Protocol::kHttps) continue;
      auto ctx = tls::ServerContext::build(l.name, l.tls, true);
      if (!ctx) return ctx.error();
      server_tls[i] = std::move(*ctx);
    }
    std::vector<std::shared_ptr<const tls::ClientContext>> backend_tls(cfg.backends.size());
    for (size_t i = 0; i < cfg.backends.size(); ++i) {
      if (!cfg.backends[i].tls) continue;
      auto ctx = tls::ClientContext::build(*cfg.backends[i].tls);
      if (!ctx) return Error{0, "backend '" + cfg.backends[i].name + "': " + ctx.error().message};
      backend_tls[i] = std::move(*ctx);
    }
    std::vector<upstream::Backend*> backend_ptrs;
    for (auto& b : backends) backend_ptrs.push_back(b.get());
    // Built here, so a check kind that cannot work (tcp_half_open without CAP_NET_RAW) says so
    // at start; it runs on a thread of its own, so no check ever blocks a worker.
    auto health = std::make_unique<health::HealthService>(backend_ptrs);
    // Cache stores: one per `cache:` block, shared by every worker (src/cache/store.h). A new
    // generation (reload) starts with empty stores: entries are not carried over, so a changed
    // size or default_ttl takes effect at once; the old stores go with the old listeners.
    std::vector<std::vector<std::shared_ptr<cache::Store>>> caches(cfg.listeners.size());
    for (size_t li = 0; li < cfg.listeners.size(); ++li) {
      const auto& l = cfg.listeners[li];
      for (auto& r : l.routes) caches[li].push_back(r.cache ? cache::make_store(*r.cache) : nullptr);
      // A forward proxy has no routes: its own `cache:` is its only store, in slot 0.
      if (l.protocol == config::Protocol::kForwardProxy && l.cache) caches[li].push_back(cache::make_store(*l.cache));
    }
    // Counter layouts: one per listener, shared by every worker's copy of its counters.
    std::vector<std::shared_ptr<const metrics::Layout>> layouts;
    for (size_t li = 0; li < cfg.listeners.size(); ++li) layouts.push_back(metrics::Layout::build(cfg, li));
    // Protect limits and rules: one Guard per listener, shared by its copies on every worker, so a
    // client's limits hold across workers. A new generation starts with fresh counters.
    std::vector<std::shared_ptr<const protect::Guard>> guards(cfg.listeners.size());
    for (size_t li = 0; li < cfg.listeners.size(); ++li) {
      std::optional<protect::Rules::BuildError> err;
      guards[li] = protect::Guard::build(cfg.listeners[li], &err);
      if (err)
        return Error{0, cfg.error_at(err->mark, "listener '" + cfg.listeners[li].name + "': " + err->message)
                            .to_string()};
    }
    size_t n = cfg.workers ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
    // Each listener's connections are spread evenly over its copies (core/conn_spread.h).
    std::vector<std::shared_ptr<ConnSpread<http::HttpListener>>> http_spread(cfg.listeners.size());
    std::vector<std::shared_ptr<ConnSpread<l4::TcpListener>>> tcp_spread(cfg.listeners.size());
    for (size_t li = 0; li < cfg.listeners.size() && n > 1; ++li) {
      http_spread[li] = std::make_shared<ConnSpread<http::HttpListener>>(n);
      tcp_spread[li] = std::make_shared<ConnSpread<l4::TcpListener>>(n);
    }
    std::vector<std::unique_ptr<Worker>> workers;
    for (size_t i = 0; i < n; ++i) {
      auto w = std::make_unique<Worker>(i);
      w->metrics = &metrics_.add_worker();
      if (access_log_) w->log_sink = std::make_unique<metrics::AccessLogSink>(*access_log_, w->loop);
      for (size_t b = 0; b < backends.size(); ++b)
        w->pickers.push_back(std::make_unique<lb::Picker>(*backends[b], 0x9E3779B97F4A7C15ull * (i + 1) + b));
      std::vector<lb::Picker*> picker_ptrs;
      for (auto& p : w->pickers) picker_ptrs.push_back(p.get());
      w->http_ctx = std::make_unique<http::HttpContext>(w->loop, backend_ptrs, picker_ptrs);
      w->http_ctx->backend_tls = backend_tls;
      for (size_t li = 0; li < cfg.listeners.size(); ++li) {
        auto& l = cfg.listeners[li];
        if (l.protocol == config::Protocol::kUdp || l.protocol == config::Protocol::kDns) {
          if (auto r = add_datagram_listener(*w, i, l, backends, backend_index); !r) return r;
          continue;
        }
        bool http = l.protocol == config::Protocol::kHttp || l.protocol == config::Protocol::kHttps ||
                    l.protocol == config::Protocol::kForwardProxy;
        if (l.protocol != config::Protocol::kTcp && !http) continue;
        auto fd = socket_for(SocketType::kStream, l, i);
        if (!fd) return fd.error();
        if (http) {  // a forward proxy has no router (routers[li] is null): see http/forward_proxy.h
          w->http.push_back(std::make_unique<http::HttpListener>(*w->http_ctx, cfg, l, routers[li], std::move(*fd)));
          w->http.back()->set_tls(server_tls[li]);
          w->http.back()->set_metrics(w->metrics->add_listener(layouts[li], w->log_sink.get()));
          w->http.back()->set_caches(caches[li]);
          w->http.back()->set_guard(guards[li]);
          if (http_spread[li]) w->http.back()->set_spread(http_spread[li], i);
          continue;
        }
        size_t bi = backend_index(l.backend);
        w->tcp.push_back(std::make_unique<l4::TcpListener>(w->loop, w->pipes, l, backends[bi]->spec(),
                                                           *w->pickers[bi], std::move(*fd)));
        w->tcp.back()->set_metrics(w->metrics->add_listener(layouts[li], w->log_sink.get()));
        w->tcp.back()->set_guard(guards[li]);
        if (tcp_spread[li]) w->tcp.back()->set_spread(tcp_spread[li], i);
      }
      workers.push_back(std::move(w));
    }
    backends_out = std::move(backends);
    health_out = std::move(health);
    workers_out = std::move(workers);
    return {};
  }

  // The listening socket for (type, address) and worker i, made once and kept across reloads;
  // each listener gets its own descriptor for it (dup), so retiring one closes nothing shared.
  Result<Fd> socket_for(SocketType type, const config::Listener& l, size_t worker) {
    std::string key = (type == SocketType::kStream ? "tcp " : "udp ") + l.bind.to_string();
    used_sockets_.insert(key);
    auto& list = sockets_[key];
    while (list.size() <= worker) {
      auto fd = listen_socket(l.bind, type);
      if (!fd)
        return Error{fd.error().code, "listener '" + l.name + "': " + fd.error().message + ": " + strerror(fd.error().code)};
      list.push_back(std::move(*fd));
    }
    int d = fcntl(list[worker].get(), F_DUPFD_CLOEXEC, 0);
    if (d < 0) return Error{errno, "listener '" + l.name + "': dup: " + strerror(errno)};
    return Fd(d);
  }

  // A reloaded server keeps what the running one knew (health, operator state, agent reports,
  // weight set by the API), so a reload neither re-checks the world nor forgets a drain.
  void carry_over_state(upstream::Backend& b) {
    for (auto& old : backends_) {
      if (old->name() != b.name()) continue;
      for (auto& s : b.servers()) {
        upstream::Server* prev = old->find(s->name());
        if (!prev || !(prev->address() == s->address())) continue;
        if (b.spec().health.check != "none") s->set_health(prev->health());
        s->set_admin(prev->admin());
        if (b.spec().health.agent) s->restore_reported_load(prev->reported_load());
      }
    }
  }

  // SIGHUP and POST /api/v1/reload. A config that does not load, validate or bind is refused and
  // the running one keeps serving.
  std::pair<bool, std::string> reload() {
    if (stopping_) return {false, "stopping"};
    auto loaded = config::load_file(cfg_->file);
    if (auto* err = std::get_if<config::ConfigError>(&loaded)) return refuse_reload(err->to_string());
    auto cfg = std::get<std::shared_ptr<const config::Config>>(loaded);
    if (auto err = validate(*cfg)) return refuse_reload(err->to_string());
    if (auto err = check_runnable(*cfg)) return refuse_reload(err->to_string());
    std::vector<std::unique_ptr<upstream::Backend>> backends;
    std::unique_ptr<health::HealthService> health;
    std::vector<std::unique_ptr<Worker>> workers;
    std::set<std::string> running = std::move(used_sockets_);
    used_sockets_.clear();
    if (auto r = build_generation(*cfg, backends, health, workers); !r) {
      workers.clear();  // before the sockets they hold copies of
      for (auto it = sockets_.begin(); it != sockets_.end();)  // bound for nothing: let them go
        it = running.count(it->first) ? std::next(it) : sockets_.erase(it);
      used_sockets_ = std::move(running);
      return refuse_reload(r.error().message);
    }
    if (cfg->admin && admin_) {
      if (auto r = admin_->configure(*cfg->admin); !r) FULCRUM_LOG(kWarn, "reload: admin: %s", r.error().message.c_str());
    }
    if (!(cfg->access_log.path == cfg_->access_log.path && cfg->access_log.format == cfg_->access_log.format))
      FULCRUM_LOG(kWarn, "reload: access_log changes take effect at the next start");

    auto old = std::make_unique<Retired>();
    old->cfg = cfg_;
    old->backends = std::move(backends_);
    old->health = std::move(health_);
    old->workers = std::move(workers_);
    cfg_ = cfg;
    backends_ = std::move(backends);
    health_ = std::move(health);
    workers_ = std::move(workers);
    health_->start();
    start_workers(workers_);
    old->health->stop();
    for (auto& w : old->workers) {
      Worker* wp = w.get();
      wp->loop.post([wp] { wp->stop_accepting(); });
    }
    // Sockets no listener uses any more close now; the old workers close their own copies.
    for (auto it = sockets_.begin(); it != sockets_.end();)
      it = used_sockets_.count(it->first) ? std::next(it) : sockets_.erase(it);
    retired_.push_back(std::move(old));
    retire_timer_.arm(Millis(50));
    size_t servers = 0;
    for (auto& b : cfg_->backends) servers += b.servers.size();
    std::string summary = cfg_->file + ": reloaded: " + std::to_string(cfg_->listeners.size()) + " listeners, " +
                          std::to_string(cfg_->backends.size()) + " backends, " + std::to_string(servers) + " servers";
    FULCRUM_LOG(kInfo, "%s", summary.c_str());
    return {true, summary};
  }

  std::pair<bool, std::string> refuse_reload(std::string why) {
    FULCRUM_LOG(kError, "reload refused, the running config stays: %s", why.c_str());
    return {false, why};
  }

  // Frees retired configs whose last connection has ended (their threads are joined as they
  // go), then folds their workers' counters into the registry's totals.
  void retire_tick() {
    std::vector<const metrics::WorkerMetrics*> ended;
    std::erase_if(retired_, [&](const std::unique_ptr<Retired>& r) {
      if (!r->done()) return false;
      for (auto& w : r->workers) ended.push_back(w->metrics);
      return true;
    });
    for (const metrics::WorkerMetrics* m : ended) metrics_.retire(m);
    if (!retired_.empty()) retire_timer_.arm(Millis(100));
  }

  void start_workers(std::vector<std::unique_ptr<Worker>>& workers) {
    for (auto& w : workers) {
      Worker* wp = w.get();
      wp->thread = std::thread([wp] { wp->loop.run(); });
    }
  }

  void set_demo_hook(std::function<bool(const std::string&, bool)> hook) override {
    if (admin_) admin_->set_demo_hook(std::move(hook));
  }

  int run() override {
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, s);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);  // worker threads inherit this mask
    signal(SIGPIPE, SIG_IGN);
    SignalHandler signals([this](int s) { on_signal(s); });
    signals.fd = Fd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (auto r = control_.add(signals.fd.get(), &signals, EPOLLIN); !r) {
      FULCRUM_LOG(kError, "signalfd: %s", r.error().message.c_str());
      return 1;
    }
    health_->start();  // after the signal mask (its thread inherits it), before traffic
    start_workers(workers_);
    for (auto& l : cfg_->listeners)
      FULCRUM_LOG(kInfo, "listening: %s %s on %s", l.name.c_str(), config::protocol_name(l.protocol),
                  l.bind.to_string().c_str());
    FULCRUM_LOG(kInfo, "fulcrum %s running with %zu workers (config %s)", FULCRUM_VERSION, workers_.size(),
                cfg_->file.c_str());
    control_.run();
    for (auto& w : workers_) w->loop.stop();
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
    workers_.clear();
    retired_.clear();
    health_->stop();  // after the workers: they may still eject a server into it
    control_.remove(signals.fd.get());
    FULCRUM_LOG(kInfo, "stopped");
    return 0;
  }

 private:
  // A udp listener, or a dns listener with its UDP and TCP sockets on the same address.
  template <typename Index>
  Result<void> add_datagram_listener(Worker& w, size_t worker_index, const config::Listener& l,
                                     std::vector<std::unique_ptr<upstream::Backend>>& backends, Index backend_index) {
    auto udp = socket_for(SocketType::kDatagram, l, worker_index);
    if (!udp) return udp.error();
    if (l.protocol == config::Protocol::kUdp) {
      size_t bi = backend_index(l.backend);
      // Counters in the worker's metrics, as for a dns listener below.
      w.udp.push_back(std::make_unique<l4::UdpListener>(w.loop, l, backends[bi]->spec(), *w.pickers[bi],
                                                        *w.metrics->add_udp_listener(l.name),
                                                        std::move(*udp)));
      return {};
    }
    auto tcp = socket_for(SocketType::kStream, l, worker_index);
    if (!tcp) return tcp.error();
    std::vector<dns::ZoneConfig> zones;
    for (auto& z : l.zones) zones.push_back({z.name, backends[backend_index(z.backend)].get(), z.ttl, z.answers});
    // Counters in the worker's metrics, which the registry keeps past this listener's retirement.
    w.dns.push_back(std::make_unique<dns::DnsListener>(
        w.loop, l, zones, 0x2545F4914F6CDD1Dull * (worker_index + 1), *w.metrics->add_dns_listener(l.name),
        std::move(*udp), std::move(*tcp)));
    return {};
  }

  void on_signal(int sig) {
    switch (sig) {
      case SIGTERM:
      case SIGINT:
        begin_stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
      case SIGHUP:
        FULCRUM_LOG(kInfo, "SIGHUP: reloading %s", cfg_->file.c_str());
        reload();
        break;
      case SIGUSR1:
        if (!access_log_) {
          FULCRUM_LOG(kInfo, "SIGUSR1: no log files to reopen");
          break;
        }
        FULCRUM_LOG(kInfo, "SIGUSR1: reopening the access log");
        access_log_->reopen();
        break;
    }
  }

  // Graceful stop: every worker stops accepting; established connections go on until they end
  // or shutdown_grace runs out.
  void begin_stop(const char* why) {
    if (stopping_) {
      FULCRUM_LOG(kWarn, "%s again: stopping now", why);
      control_.stop();
      return;
    }
    stopping_ = true;
    if (admin_) admin_->set_stopping();  // /healthz says 503 from now on
    stop_deadline_ = Clock::now() + cfg_->shutdown_grace;
    FULCRUM_LOG(kInfo, "%s: no longer accepting; finishing in-flight work (grace %lldms)", why,
                static_cast<long long>(cfg_->shutdown_grace.count()));
    for (auto& w : workers_) {
      Worker* wp = w.get();
      wp->loop.post([wp] { wp->stop_accepting(); });
    }
    sockets_.clear();  // with every copy closed, the kernel stops completing handshakes for us
    drain_timer_.arm(Millis(20));
  }

  void drain_tick() {
    size_t left = 0;
    for (auto& w : workers_) left += w->sessions();
    for (auto& r : retired_) left += r->sessions();
    if (left == 0) return control_.stop();
    if (Clock::now() >= stop_deadline_) {
      FULCRUM_LOG(kWarn, "shutdown_grace over: closing %zu connections", left);
      return control_.stop();
    }
    drain_timer_.arm(Millis(20));
  }

  std::shared_ptr<const config::Config> cfg_;
  std::vector<std::unique_ptr<upstream::Backend>> backends_;
  std::unique_ptr<health::HealthService> health_;  // destroyed after the workers, before the backends
  metrics::Registry metrics_;                     // outlives the workers, whose counters it holds
  std::unique_ptr<metrics::AccessLog> access_log_;  // after the workers: their sinks flush into it
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Retired>> retired_;  // older configs still finishing their connections
  std::map<std::string, std::vector<Fd>> sockets_;  // "tcp ADDR" / "udp ADDR" -> one socket per worker
  std::set<std::string> used_sockets_;               // keys the config being built uses
  EventLoop control_;
  Timer drain_timer_;
  Timer retire_timer_;
  std::unique_ptr<admin::AdminServer> admin_;  // on control_; reads backends_ and metrics_
  bool stopping_ = false;
  TimePoint stop_deadline_{};
};

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::create(std::shared_ptr<const config::Config> cfg) {
  auto rt = std::make_unique<RuntimeImpl>(std::move(cfg));
  if (auto r = rt->build(); !r) return r.error();
  return std::unique_ptr<Runtime>(std::move(rt));
}

}  // namespace fulcrum::app
