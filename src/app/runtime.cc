#include "app/runtime.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

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
#include "metrics/access_log.h"
#include "metrics/metrics.h"
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

  size_t sessions() const {
    size_t n = 0;
    for (auto& l : tcp) n += l->sessions();
    for (auto& l : http) n += l->connections();
    return n;
  }
  void stop_accepting() {
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

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(std::shared_ptr<const config::Config> cfg)
      : cfg_(std::move(cfg)), drain_timer_(control_, [this] { drain_tick(); }) {}

  Result<void> build() {
    for (auto& b : cfg_->backends) backends_.push_back(std::make_unique<upstream::Backend>(b));
    // Routers are built once and shared read-only by every worker.
    std::vector<std::shared_ptr<const http::Router>> routers(cfg_->listeners.size());
    for (size_t i = 0; i < cfg_->listeners.size(); ++i) {
      auto& l = cfg_->listeners[i];
      if (l.protocol != config::Protocol::kHttp) continue;
      auto router = http::Router::build(l);
      if (!router) return Error{0, "listener '" + l.name + "': " + router.error().message};
      routers[i] = std::shared_ptr<const http::Router>(std::move(*router));
    }
    std::vector<upstream::Backend*> backend_ptrs;
    for (auto& b : backends_) backend_ptrs.push_back(b.get());
    // Built here, so a check kind that cannot work (tcp_half_open without CAP_NET_RAW) says so
    // at start; it runs on a thread of its own, so no check ever blocks a worker.
    health_ = std::make_unique<health::HealthService>(backend_ptrs);
    auto log = metrics::AccessLog::open(cfg_->access_log);
    if (!log) return log.error();
    access_log_ = std::move(*log);
    // Counter layouts: one per listener, shared by every worker's copy of its counters.
    std::vector<std::shared_ptr<const metrics::Layout>> layouts;
    for (size_t li = 0; li < cfg_->listeners.size(); ++li) layouts.push_back(metrics::Layout::build(*cfg_, li));
    size_t n = cfg_->workers ? cfg_->workers : std::max(1u, std::thread::hardware_concurrency());
    long fds = raise_fd_limit();
    FULCRUM_LOG(kDebug, "descriptor limit %ld", fds);
    for (size_t i = 0; i < n; ++i) {
      auto w = std::make_unique<Worker>(i);
      w->metrics = &metrics_.add_worker();
      if (access_log_) w->log_sink = std::make_unique<metrics::AccessLogSink>(*access_log_, w->loop);
      for (size_t b = 0; b < backends_.size(); ++b)
        w->pickers.push_back(std::make_unique<lb::Picker>(*backends_[b], 0x9E3779B97F4A7C15ull * (i + 1) + b));
      std::vector<lb::Picker*> picker_ptrs;
      for (auto& p : w->pickers) picker_ptrs.push_back(p.get());
      w->http_ctx = std::make_unique<http::HttpContext>(w->loop, backend_ptrs, picker_ptrs);
      for (size_t li = 0; li < cfg_->listeners.size(); ++li) {
        auto& l = cfg_->listeners[li];
        if (l.protocol == config::Protocol::kUdp || l.protocol == config::Protocol::kDns) {
          if (auto r = add_datagram_listener(*w, i, l); !r) return r;
          continue;
        }
        if (l.protocol != config::Protocol::kTcp && l.protocol != config::Protocol::kHttp) continue;
        auto fd = listen_socket(l.bind);
        if (!fd) return Error{0, "listener '" + l.name + "': " + fd.error().message + ": " + strerror(fd.error().code)};
        if (l.protocol == config::Protocol::kHttp) {
          w->http.push_back(std::make_unique<http::HttpListener>(*w->http_ctx, *cfg_, l, routers[li], std::move(*fd)));
          w->http.back()->set_metrics(w->metrics->add_listener(layouts[li], w->log_sink.get()));
          continue;
        }
        size_t bi = backend_index(l.backend);
        w->tcp.push_back(std::make_unique<l4::TcpListener>(w->loop, w->pipes, l, backends_[bi]->spec(),
                                                           *w->pickers[bi], std::move(*fd)));
        w->tcp.back()->set_metrics(w->metrics->add_listener(layouts[li], w->log_sink.get()));
      }
      workers_.push_back(std::move(w));
    }
    if (cfg_->admin) {  // bound now, so a port in use is reported at once; serves from run()
      admin_ = std::make_unique<admin::AdminServer>(
          control_, admin::Sources{&backends_, &metrics_, [this] { return access_log_.get(); }});
      if (auto r = admin_->configure(*cfg_->admin); !r) return r.error();
    }
    return {};
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
    for (auto& w : workers_) {
      Worker* wp = w.get();
      wp->thread = std::thread([wp] { wp->loop.run(); });
    }
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
    health_->stop();  // after the workers: they may still eject a server into it
    control_.remove(signals.fd.get());
    FULCRUM_LOG(kInfo, "stopped");
    return 0;
  }

 private:
  // A udp listener, or a dns listener with its UDP and TCP sockets on the same address.
  Result<void> add_datagram_listener(Worker& w, size_t worker_index, const config::Listener& l) {
    auto fail = [&l](const Error& e) {
      return Error{e.code, "listener '" + l.name + "': " + e.message + ": " + strerror(e.code)};
    };
    auto udp = listen_socket(l.bind, SocketType::kDatagram);
    if (!udp) return fail(udp.error());
    if (l.protocol == config::Protocol::kUdp) {
      size_t bi = backend_index(l.backend);
      w.udp.push_back(std::make_unique<l4::UdpListener>(w.loop, l, backends_[bi]->spec(), *w.pickers[bi],
                                                        std::move(*udp)));
      return {};
    }
    auto tcp = listen_socket(l.bind, SocketType::kStream);
    if (!tcp) return fail(tcp.error());
    std::vector<dns::ZoneConfig> zones;
    for (auto& z : l.zones) zones.push_back({z.name, backends_[backend_index(z.backend)].get(), z.ttl, z.answers});
    w.dns.push_back(std::make_unique<dns::DnsListener>(w.loop, l, zones, 0x2545F4914F6CDD1Dull * (worker_index + 1),
                                                       std::move(*udp), std::move(*tcp)));
    return {};
  }

  size_t backend_index(const std::string& name) const {
    for (size_t i = 0; i < backends_.size(); ++i)
      if (backends_[i]->name() == name) return i;
    return 0;  // the loader guarantees the name exists
  }

  void on_signal(int sig) {
    switch (sig) {
      case SIGTERM:
      case SIGINT:
        begin_stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
      case SIGHUP:
        FULCRUM_LOG(kWarn, "SIGHUP: reloading is not implemented in this build yet; the running config stays");
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
    drain_timer_.arm(Millis(20));
  }

  void drain_tick() {
    size_t left = 0;
    for (auto& w : workers_) left += w->sessions();
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
  EventLoop control_;
  Timer drain_timer_;
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
