// `fulcrum demo`: three in-process application servers, each on its own EventLoop thread with a
// load agent that reports the CPU its thread really uses (demo_agent.h), behind a balancer run
// from an embedded config. The owner thread starts and stops them; each server's state belongs to
// its own thread.
#include "app/demo.h"

#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <thread>
#include <variant>

#include "app/demo_agent.h"
#include "app/runtime.h"
#include "app/validate.h"
#include "config/loader.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "http/simple_server.h"

namespace fulcrum::app {
namespace {

struct DemoApp {
  std::string name;
  uint16_t port;
  uint16_t agent_port;
  int delay_ms;
  std::string speed;
};

const DemoApp kApps[] = {
    {"app1", 9101, 9201, 5, "fast"},
    {"app2", 9102, 9202, 30, "medium"},
    {"app3", 9103, 9203, 150, "slow"},
};

// The longest /work?ms=N: enough to keep a server busy, short enough not to wedge it.
constexpr int kMaxWorkMs = 2000;

// One demo application server: it keeps login sessions in its own memory, as many real
// applications do, so a balancer that sends a user elsewhere "logs them out". Its load agent
// reports the CPU its thread uses; GET /work?ms=N burns N ms of CPU, as a batch job would.
class DemoServer {
 public:
  DemoServer(EventLoop& loop, const DemoApp& app)
      : loop_(loop),
        app_(app),
        server_(loop, [this](const http::SimpleRequest& r,
                             http::SimpleServer::Respond done) { handle(r, std::move(done)); }),
        meter_(loop),
        agent_(loop, meter_) {}

  const std::string& name() const { return app_.name; }
  // Makes the health endpoint answer 503 (or 200 again); this server's thread only.
  void set_failing(bool fail) { failing_ = fail; }

  Result<void> start() {
    if (auto r = server_.listen(*SocketAddress::parse("127.0.0.1:" + std::to_string(app_.port))); !r)
      return r;
    return agent_.listen(*SocketAddress::parse("127.0.0.1:" + std::to_string(app_.agent_port)));
  }

 private:
  static bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  void handle(const http::SimpleRequest& r, http::SimpleServer::Respond done) {
    if (r.path == "/work") {
      int ms = std::clamp(std::atoi(r.query_param("ms").c_str()), 0, kMaxWorkMs);
      return work(int64_t{ms} * 1000000, ms, std::move(done));
    }
    http::SimpleResponse resp = route(r);
    resp.headers.emplace_back("X-Served-By", app_.name);
    if (r.path == "/health" || app_.delay_ms == 0) return done(std::move(resp));
    // Answer after the server's "work" time, without blocking the loop.
    auto shared = std::make_shared<http::SimpleResponse>(std::move(resp));
    std::erase_if(pending_, [](const std::unique_ptr<Timer>& t) { return !t->armed(); });
    pending_.push_back(std::make_unique<Timer>(loop_, [done, shared] { done(std::move(*shared)); }));
    pending_.back()->arm(Millis(app_.delay_ms));
  }

  // GET /work?ms=N: N ms of real CPU on this server's own thread (the other servers run on
  // theirs), so its agent reports it. Burnt in 10ms slices with a turn of the loop between them,
  // so that the server's agent and health check still answer while it is busy, as they would on
  // a multi-threaded server.
  void work(int64_t left_ns, int ms, http::SimpleServer::Respond done) {
    int64_t slice = std::min<int64_t>(left_ns, 10000000);
    int64_t until = CpuMeter::thread_cpu_ns() + slice;
    volatile uint64_t spin = 0;
    while (CpuMeter::thread_cpu_ns() < until) spin = spin + 1;
    left_ns -= slice;
    if (left_ns > 0) {
      loop_.post(
          [this, left_ns, ms, done = std::move(done)]() mutable { work(left_ns, ms, std::move(done)); });
      return;
    }
    auto resp = http::SimpleResponse::text(200, app_.name + " worked " + std::to_string(ms) + "ms of CPU\n");
    resp.headers.emplace_back("X-Served-By", app_.name);
    done(std::move(resp));
  }

  http::SimpleResponse route(const http::SimpleRequest& r) {
    std::string who = app_.name + " (" + app_.speed + ", ~" + std::to_string(app_.delay_ms) + "ms)";
    if (r.path == "/health") {
      if (failing_) return http::SimpleResponse::json(503, R"({"status":"DOWN","server":")" + app_.name + "\"}\n");
      return http::SimpleResponse::json(200, R"({"status":"UP","server":")" + app_.name + "\"}\n");
    }
    if (r.path == "/fail" && r.method == "POST") {
      failing_ = true;
      return http::SimpleResponse::text(200, app_.name + " now fails its health check\n");
    }
    if (r.path == "/recover" && r.method == "POST") {
      failing_ = false;
      return http::SimpleResponse::text(200, app_.name + " passes its health check again\n");
    }
    if ((r.path == "/drain" || r.path == "/undrain") && r.method == "POST") {
      bool drain = r.path == "/drain";
      agent_.set_drain(drain);
      return http::SimpleResponse::text(
          200, app_.name + (drain ? "'s agent now says drain\n" : "'s agent now says up\n"));
    }
    if (ends_with(r.path, "/login")) {
      std::string user = r.query_param("user");
      if (user.empty()) user = "guest";
      char id[17];
      std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(rng_()));
      sessions_[id] = user;
      auto resp = http::SimpleResponse::text(200, "logged in as " + user + " on " + who + "\n");
      resp.headers.emplace_back("Set-Cookie", std::string("demo_session=") + id + "; Path=/; HttpOnly");
      return resp;
    }
    if (ends_with(r.path, "/profile")) {
      std::string sid = r.cookie("demo_session");
      auto it = sessions_.find(sid);
      if (it == sessions_.end())
        return http::SimpleResponse::text(
            401, "401 not logged in on " + app_.name +
                     ": sessions live in each server's memory, and this request reached another server\n");
      return http::SimpleResponse::text(200, "profile of " + it->second + ", served by " + who + "\n");
    }
    return http::SimpleResponse::text(200, "hello from " + who + "\n");
  }

  EventLoop& loop_;
  DemoApp app_;
  http::SimpleServer server_;
  std::map<std::string, std::string> sessions_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::vector<std::unique_ptr<Timer>> pending_;
  bool failing_ = false;
  CpuMeter meter_;
  LoadAgent agent_;
};

// A demo server with its loop and thread: per-thread CPU time is then per-server CPU time.
struct DemoHost {
  EventLoop loop;
  std::unique_ptr<DemoServer> server;
  std::thread thread;
};

}  // namespace

std::string demo_config() {
  return R"(# fulcrum demo: three application servers of different speeds behind one balancer.
workers: auto
shutdown_grace: 2s
admin: { listen: 127.0.0.1:9090 }          # the dashboard: http://127.0.0.1:9090/
listeners:
  - name: web
    bind: 127.0.0.1:8080
    protocol: http
    routes:
      - match: { path_prefix: /site/ }     # a static site, served by fulcrum itself
        static: { root: . }
      - match: { path_prefix: /rr/ }       # plain round robin: watch sessions get lost
        backend: apps_rr
      - match: { path_prefix: /hash/ }     # consistent hashing on ?user=: same user, same server
        backend: apps_hash
      - backend: apps                      # least_time + health checks + sticky cookie
  - name: dns                              # health-aware DNS: app.demo answers with the apps that are up
    bind: 127.0.0.1:8053
    protocol: dns
    zones:
      - { name: app.demo, backend: apps, ttl: 5, answers: 2 }
backends:
  - name: apps
    balance: least_time
    sticky: { cookie: FULCRUM_SERVER }
    health:
      check: http
      path: /health
      expect_body: '"status":"UP"'
      interval: 1s
      timeout: 500ms
      rise: 2
      fall: 2
      agent: { interval: 1s }              # each app reports its CPU use on its agent_port
    servers:
      - { name: app1, address: 127.0.0.1:9101, agent_port: 9201 }
      - { name: app2, address: 127.0.0.1:9102, agent_port: 9202 }
      - { name: app3, address: 127.0.0.1:9103, agent_port: 9203 }
  - name: apps_rr
    balance: round_robin
    health: { agent: { interval: 1s } }    # weights follow the CPU the agents report
    servers:
      - { name: app1, address: 127.0.0.1:9101, agent_port: 9201 }
      - { name: app2, address: 127.0.0.1:9102, agent_port: 9202 }
      - { name: app3, address: 127.0.0.1:9103, agent_port: 9203 }
  - name: apps_hash
    balance: hash
    hash_key: query:user
    servers:
      - { name: app1, address: 127.0.0.1:9101 }
      - { name: app2, address: 127.0.0.1:9102 }
      - { name: app3, address: 127.0.0.1:9103 }
)";
}

int run_demo(bool print_config_only) {
  if (print_config_only) {
    std::fputs(demo_config().c_str(), stdout);
    return 0;
  }
  char dir_template[] = "/tmp/fulcrum-demo-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) {
    std::perror("fulcrum demo: mkdtemp");
    return 1;
  }
  std::string path = std::string(dir) + "/fulcrum-demo.yaml";
  std::ofstream(path) << demo_config();
  mkdir((std::string(dir) + "/site").c_str(), 0755);
  std::ofstream(std::string(dir) + "/site/index.html")
      << "<!doctype html><meta charset=utf-8><title>fulcrum demo site</title>"
         "<style>body{font-family:system-ui,sans-serif;margin:3rem;max-width:40rem;color:#222}</style>"
         "<h1>A static site, served by fulcrum</h1><p>This page comes from disk with sendfile; "
         "<a href=/>/</a> goes to the application servers, and the dashboard is on "
         "<a href=http://127.0.0.1:9090/>127.0.0.1:9090</a>.</p>\n";

  auto loaded = config::load_file(path);
  if (auto* err = std::get_if<config::ConfigError>(&loaded)) {
    std::fprintf(stderr, "%s\n", err->to_string().c_str());
    return 1;
  }
  auto cfg = std::get<std::shared_ptr<const config::Config>>(loaded);
  if (auto err = validate(*cfg)) {
    std::fprintf(stderr, "%s\n", err->to_string().c_str());
    return 1;
  }

  // Signals are handled by the runtime's signalfd; block them before any thread starts.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, s);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  // Each server is built and listening before its thread starts, so nothing here races it.
  std::vector<std::unique_ptr<DemoHost>> hosts;
  auto stop_apps = [&hosts] {
    for (auto& h : hosts) h->loop.stop();
    for (auto& h : hosts)
      if (h->thread.joinable()) h->thread.join();
  };
  for (auto& a : kApps) {
    auto& h = *hosts.emplace_back(std::make_unique<DemoHost>());
    h.server = std::make_unique<DemoServer>(h.loop, a);
    if (auto r = h.server->start(); !r) {
      std::fprintf(stderr, "fulcrum demo: cannot start %s on 127.0.0.1:%u (agent %u): %s\n", a.name.c_str(),
                   a.port, a.agent_port, strerror(r.error().code));
      stop_apps();
      return 1;
    }
  }
  for (auto& h : hosts) h->thread = std::thread([&loop = h->loop] { loop.run(); });

  auto rt = Runtime::create(cfg);
  if (!rt) {
    std::fprintf(stderr, "fulcrum demo: %s\n", rt.error().message.c_str());
    stop_apps();
    return 1;
  }
  // The dashboard's "Make it fail" buttons: the flag is the app's own, set on the app's thread.
  (*rt)->set_demo_hook([&hosts](const std::string& app, bool fail) {
    for (auto& h : hosts) {
      if (h->server->name() != app) continue;
      DemoServer* server = h->server.get();
      h->loop.post([server, fail] { server->set_failing(fail); });
      return true;
    }
    return false;
  });
  std::printf(
      "fulcrum demo is running (config: %s; print it with `fulcrum demo --print-config`)\n\n"
      "  three application servers: app1 fast (~5ms), app2 medium (~30ms), app3 slow (~150ms)\n"
      "  balancer: http://127.0.0.1:8080    static site: http://127.0.0.1:8080/site/\n"
      "  dashboard: http://127.0.0.1:9090/   DNS balancer: 127.0.0.1:8053 (zone app.demo)\n\n"
      "Try:\n"
      "  curl -s http://127.0.0.1:8080/                      # least_time: mostly the fast app1\n"
      "  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:8080/rr/; done   # round robin: all three\n\n"
      "The session problem of plain round robin (each server keeps logins in its own memory):\n"
      "  curl -s -c /tmp/rr.jar -X POST 'http://127.0.0.1:8080/rr/login?user=ada'\n"
      "  for i in 1 2 3; do curl -s -b /tmp/rr.jar http://127.0.0.1:8080/rr/profile; done   # 2 of 3 fail\n\n"
      "Solved by the sticky cookie (FULCRUM_SERVER) ...\n"
      "  curl -s -c /tmp/s.jar -b /tmp/s.jar -X POST 'http://127.0.0.1:8080/login?user=ada'\n"
      "  for i in 1 2 3; do curl -s -b /tmp/s.jar http://127.0.0.1:8080/profile; done      # always the same server\n"
      "... and by consistent hashing on the user:\n"
      "  curl -s -c /tmp/h.jar -X POST 'http://127.0.0.1:8080/hash/login?user=ada'\n"
      "  for i in 1 2 3; do curl -s -b /tmp/h.jar 'http://127.0.0.1:8080/hash/profile?user=ada'; done\n\n"
      "Health checks: make app1 fail its check (or click \"Make it fail\" on the dashboard), watch it\n"
      "leave, then bring it back:\n"
      "  curl -s -X POST http://127.0.0.1:9101/fail; sleep 3; for i in 1 2 3; do curl -s http://127.0.0.1:8080/; done\n"
      "  curl -s -X POST http://127.0.0.1:9101/recover\n\n"
      "Server-reported load: each app runs an agent (ports 9201-9203) that reports the CPU it really uses,\n"
      "and fulcrum scales its weight by 1 - cpu. Keep app3 busy for 20s and watch round robin send it less:\n"
      "  cat < /dev/tcp/127.0.0.1/9203                     # what app3's agent says: up cpu=0.00\n"
      "  for j in 1 2; do for i in $(seq 50); do curl -s 'http://127.0.0.1:9103/work?ms=200' >/dev/null; done & done\n"
      "  sleep 3; cat < /dev/tcp/127.0.0.1/9203            # up cpu=0.97 (less if the machine is busy elsewhere)\n"
      "  for i in $(seq 40); do curl -s http://127.0.0.1:8080/rr/; done | sort | uniq -c   # app3: few or none\n"
      "  curl -s http://127.0.0.1:9090/metrics | grep 'fulcrum_server_weight{backend=\"apps_rr\"'   # or the dashboard\n"
      "An app can also ask to be drained through its agent:\n"
      "  curl -s -X POST http://127.0.0.1:9102/drain; sleep 2; for i in 1 2 3; do curl -s http://127.0.0.1:8080/rr/; done\n"
      "  curl -s -X POST http://127.0.0.1:9102/undrain\n\n"
      "Health-aware DNS: the apps that are up, two per answer, rotated:\n"
      "  dig @127.0.0.1 -p 8053 app.demo +short; dig @127.0.0.1 -p 8053 app.demo +short\n\n"
      "Operations: the dashboard (drain a server with a click), metrics and the JSON API:\n"
      "  open http://127.0.0.1:9090/\n"
      "  curl -s http://127.0.0.1:9090/metrics | grep fulcrum_requests_total\n"
      "  curl -s -X PATCH -d '{\"state\":\"drain\"}' http://127.0.0.1:9090/api/v1/backends/apps/servers/app1\n\n"
      "Stop with Ctrl-C.\n",
      path.c_str());
  std::fflush(stdout);
  int rc = (*rt)->run();
  stop_apps();
  return rc;
}

}  // namespace fulcrum::app
