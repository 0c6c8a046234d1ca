// The scheduler behind every check kind: when each server is checked (spread and jittered), the
// timeout, the rise/fall state machine, logs and counters; and the timers of passive ejection and
// slow start. Everything here runs on the service's own thread, except on_ejected (a worker) and
// start/stop (the owner).
#include "health/health_service.h"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <random>
#include <thread>
#include <unordered_map>

#include "config/config.h"
#include "core/log.h"
#include "health/rise_fall.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

using upstream::Health;

// The first checks go out at once, spread over this window so that 1,000 servers are not
// probed in one instant (SPEC: a server is checked at once and takes traffic after a pass).
constexpr Millis kFirstSpread{100};
// Slow start begins at a tenth of the weight and rises in ten steps.
constexpr uint32_t kRampFloor = 100;  // per mille
constexpr int kRampSteps = 9;
constexpr Millis kMinRampStep{100};

// State changes are what operators read the log for: a larger budget than the 5 lines a second
// of FULCRUM_LOG_LIMITED, still bounded when a whole rack flaps.
LogLimiter g_transition_limiter(50);

void log_transition(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_transition(LogLevel level, const char* fmt, ...) {
  if (level < log_level()) return;
  uint64_t dropped = 0;
  if (!g_transition_limiter.allow(&dropped)) return;
  if (dropped)
    log_line(level, "(%llu health state changes not logged)", static_cast<unsigned long long>(dropped));
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  log_line(level, "%s", line);
}

struct Slot;

// What a server's timers call; the service implements it.
class SlotEvents {
 public:
  virtual void start_check(Slot& s) = 0;
  virtual void timed_out(Slot& s) = 0;
  virtual void eject_over(Slot& s) = 0;
  virtual void ramp_step(Slot& s) = 0;

 protected:
  ~SlotEvents() = default;
};

struct BackendCtx {
  upstream::Backend* backend;
  const config::Health* cfg;
  std::unique_ptr<Check> check;  // null: no active checks
};

struct Slot {
  Slot(EventLoop& loop, SlotEvents& ev, BackendCtx& b, upstream::Server& s)
      : ctx(b),
        server(s),
        rise_fall(b.cfg->rise, b.cfg->fall),
        next(loop, [&ev, this] { ev.start_check(*this); }),
        deadline(loop, [&ev, this] { ev.timed_out(*this); }),
        eject(loop, [&ev, this] { ev.eject_over(*this); }),
        ramp(loop, [&ev, this] { ev.ramp_step(*this); }) {}
  BackendCtx& ctx;
  upstream::Server& server;
  RiseFall rise_fall;
  Timer next;      // the next check
  Timer deadline;  // the timeout of the check in flight
  Timer eject;     // the end of a passive ejection
  Timer ramp;      // the next slow-start step
  std::unique_ptr<Probe> probe;
  bool in_flight = false;
  uint64_t serial = 0;  // of the check in flight: a late done from an older one is ignored
  uint64_t started_checks = 0;
  TimePoint started{};
  TimePoint next_due{};
  TimePoint ramp_start{};
};

}  // namespace

class HealthService::Impl final : public upstream::EjectionListener, public SlotEvents {
 public:
  Impl(std::vector<upstream::Backend*> backends, ServiceOptions options)
      : rng_(options.seed ? options.seed : std::random_device{}()) {
    for (upstream::Backend* b : backends) {
      auto ctx = std::make_unique<BackendCtx>();
      ctx->backend = b;
      ctx->cfg = &b->spec().health;
      if (options.make_check) {
        ctx->check = options.make_check(*b, loop_);
      } else if (const Kind* kind = find_kind(ctx->cfg->check)) {
        if (kind->make) ctx->check = kind->make(*b, loop_);
      } else {
        // The loader refuses unknown words; should one get here, serve rather than hold traffic.
        FULCRUM_LOG(kError, "backend %s: unknown health check '%s': servers taken as up", b->name().c_str(),
                    ctx->cfg->check.c_str());
        for (auto& s : b->servers()) s->set_health(Health::kUp);
      }
      if (ctx->check || ctx->cfg->passive || ctx->cfg->slow_start.count() > 0) has_work_ = true;
      for (auto& s : b->servers()) {
        auto slot = std::make_unique<Slot>(loop_, *this, *ctx, *s);
        by_server_[s.get()] = slot.get();
        s->set_ejection_listener(this);
        slots_.push_back(std::move(slot));
      }
      backends_.push_back(std::move(ctx));
    }
  }

  ~Impl() {
    stop();
    for (auto& slot : slots_) slot->server.set_ejection_listener(nullptr);
  }

  bool has_work() const { return has_work_; }

  void start() {
    if (!has_work_ || thread_.joinable()) return;
    loop_.refresh_now();
    for (auto& slot : slots_) {
      if (!slot->ctx.check) continue;
      Millis window = std::min<Millis>(kFirstSpread, slot->ctx.cfg->interval);
      slot->next.arm(Millis(std::uniform_int_distribution<int64_t>(0, window.count())(rng_)));
    }
    thread_ = std::thread([this] { loop_.run(); });
  }

  void stop() {
    if (!thread_.joinable()) return;
    loop_.stop();
    thread_.join();
  }

  // A worker's report_outcome ejected `s`: hand the return timer to our thread.
  void on_ejected(upstream::Server& s) override {
    loop_.post([this, sp = &s] { ejected(*sp); });
  }

 private:
  Millis jittered(Millis interval, double lo) {
    // Jitter only shortens the interval: a change is still seen within interval x fall (+ the
    // timeout), the bound users are promised, while the servers' phases drift apart.
    double f = std::uniform_real_distribution<double>(lo, 1.0)(rng_);
    return Millis(std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(interval.count()) * f)));
  }

  void start_check(Slot& s) override {
    const config::Health& cfg = *s.ctx.cfg;
    s.started = Clock::now();
    // The second check lands anywhere in the second half of the interval after the first, so
    // servers that all started together spread over the interval at once; later ones keep a
    // -10%..+0 jitter.
    s.next_due = s.started + jittered(cfg.interval, s.started_checks == 0 ? 0.5 : 0.9);
    ++s.started_checks;
    uint64_t serial = ++s.serial;
    s.in_flight = true;
    auto probe = s.ctx.check->probe(
        s.server, [this, sp = &s, serial](Outcome o) { finish(*sp, serial, std::move(o)); });
    if (s.in_flight && s.serial == serial) {
      s.probe = std::move(probe);
      s.deadline.arm(cfg.timeout);
    } else if (probe) {
      loop_.defer_delete(probe.release());  // it finished inside probe(): delete after this turn
    }
  }

  void timed_out(Slot& s) override {
    if (!s.in_flight) return;
    uint64_t serial = s.serial;
    if (s.probe) s.probe->expire(s.ctx.cfg->timeout);
    // A probe must answer expire() with done; should one not, the check still ends here.
    finish(s, serial, {Reason::kL4Timeout, "timeout after " + format_millis(s.ctx.cfg->timeout)});
  }

  void finish(Slot& s, uint64_t serial, Outcome outcome) {
    if (!s.in_flight || serial != s.serial) return;
    s.in_flight = false;
    s.deadline.cancel();
    if (s.probe) loop_.defer_delete(s.probe.release());
    auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - s.started).count();
    observe(s, outcome, static_cast<uint32_t>(std::clamp<int64_t>(took, 0, UINT32_MAX)));
    s.next.arm_at(std::max(s.next_due, loop_.now()));
  }

  void observe(Slot& s, const Outcome& o, uint32_t took_us) {
    upstream::Server& srv = s.server;
    Health before = srv.health();
    auto to = s.rise_fall.observe(before, o.passed());

    upstream::CheckReport report;
    report.valid = true;
    report.passed = o.passed();
    report.result = static_cast<uint8_t>(o.reason);
    report.code = reason_code(o.reason);
    report.detail = o.detail;
    report.duration_us = took_us;
    report.at = std::chrono::system_clock::now();
    report.consecutive = o.passed() ? s.rise_fall.passes() : s.rise_fall.failures();
    srv.record_check(report);

    const char* backend = s.ctx.backend->name().c_str();
    const char* server = srv.name().c_str();
    if (!to) {
      // Progress toward a change, so an operator sees a server wobble before it flips.
      if (!o.passed() && before != Health::kDown)
        FULCRUM_LOG_LIMITED(
            kInfo, "backend %s server %s check failed: %s [%s] (%u of %u failures before down)", backend,
            server, o.detail.c_str(), reason_code(o.reason), s.rise_fall.failures(), s.rise_fall.fall());
      else if (o.passed() && before == Health::kDown)
        FULCRUM_LOG_LIMITED(kInfo, "backend %s server %s check passed: %s (%u of %u passes before up)",
                            backend, server, o.detail.c_str(), s.rise_fall.passes(), s.rise_fall.rise());
      return;
    }
    if (*to == Health::kUp) {
      bool ramp = before == Health::kDown && s.ctx.cfg->slow_start.count() > 0;
      if (ramp) begin_ramp(s);  // before set_health: the first balancer built with it sees the low weight
      srv.set_health(Health::kUp);
      srv.count_transition();
      std::string why = before == Health::kChecking
                            ? std::string("first check")
                            : std::to_string(s.rise_fall.passes()) +
                                  (s.rise_fall.passes() == 1 ? " consecutive pass" : " consecutive passes");
      if (ramp) why += ", slow start over " + format_millis(s.ctx.cfg->slow_start);
      log_transition(LogLevel::kInfo, "backend %s server %s is up: %s (%s) [%s]", backend, server,
                     o.detail.c_str(), why.c_str(), reason_code(o.reason));
    } else {
      end_ramp(s);
      srv.set_health(Health::kDown);
      srv.count_transition();
      log_transition(LogLevel::kWarn, "backend %s server %s is down: %s (%u consecutive failure%s) [%s]",
                     backend, server, o.detail.c_str(), s.rise_fall.failures(),
                     s.rise_fall.failures() == 1 ? "" : "s", reason_code(o.reason));
    }
  }

  // Slow start: a server back from down (or from ejection) gets a tenth of its weight, then more
  // in steps until all of it after `slow_start`, so a cold cache or JIT is not flooded at once.
  void begin_ramp(Slot& s) {
    s.ramp_start = loop_.now();
    s.server.set_ramp(kRampFloor);
    s.ramp.arm(ramp_step_length(s));
  }

  void end_ramp(Slot& s) {
    s.ramp.cancel();
    s.server.set_ramp(1000);
  }

  Millis ramp_step_length(const Slot& s) const {
    return std::max(kMinRampStep, Millis(s.ctx.cfg->slow_start.count() / kRampSteps));
  }

  void ramp_step(Slot& s) override {
    auto total = s.ctx.cfg->slow_start;
    auto elapsed = std::chrono::duration_cast<Millis>(loop_.now() - s.ramp_start);
    if (elapsed >= total) {
      s.server.set_ramp(1000);
      FULCRUM_LOG(kDebug, "backend %s server %s: slow start done, weight %u", s.ctx.backend->name().c_str(),
                  s.server.name().c_str(), s.server.weight());
      return;
    }
    auto permille = kRampFloor + static_cast<uint32_t>((1000 - kRampFloor) * elapsed.count() / total.count());
    s.server.set_ramp(permille);
    s.ramp.arm(ramp_step_length(s));
  }

  void ejected(upstream::Server& srv) {
    auto it = by_server_.find(&srv);
    if (it == by_server_.end()) return;
    Slot& s = *it->second;
    Millis eject = s.ctx.cfg->passive ? s.ctx.cfg->passive->eject : Millis(30000);
    end_ramp(s);
    s.eject.arm(eject);
  }

  void eject_over(Slot& s) override {
    bool ramp = s.ctx.cfg->slow_start.count() > 0 && s.server.health() == Health::kUp;
    if (ramp) begin_ramp(s);  // before un_eject, so the balancers rebuilt for it see the low weight
    if (!s.server.un_eject()) {
      if (ramp) end_ramp(s);
      return;
    }
    std::string extra = ramp ? ", slow start over " + format_millis(s.ctx.cfg->slow_start) : "";
    log_transition(LogLevel::kInfo, "backend %s server %s returns after ejection (%s)%s",
                   s.ctx.backend->name().c_str(), s.server.name().c_str(),
                   format_millis(s.ctx.cfg->passive ? s.ctx.cfg->passive->eject : Millis(0)).c_str(),
                   extra.c_str());
  }

  EventLoop loop_;  // first: destroyed last, after every timer and probe that refers to it
  std::mt19937_64 rng_;
  bool has_work_ = false;
  std::vector<std::unique_ptr<BackendCtx>> backends_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unordered_map<const upstream::Server*, Slot*> by_server_;
  std::thread thread_;
};

HealthService::HealthService(std::vector<upstream::Backend*> backends, ServiceOptions options)
    : impl_(std::make_unique<Impl>(std::move(backends), std::move(options))) {}
HealthService::~HealthService() = default;
void HealthService::start() { impl_->start(); }
void HealthService::stop() { impl_->stop(); }
bool HealthService::has_work() const { return impl_->has_work(); }

}  // namespace fulcrum::health
