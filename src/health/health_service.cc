// The scheduler behind every check kind: when each server is checked (spread and jittered), the
// timeout, the rise/fall state machine, logs and counters; the agent probes of server-reported
// load, on a schedule of their own; and the timers of passive ejection and slow start. Everything
// here runs on the service's own thread, except on_ejected (a worker) and start/stop (the owner).
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
#include "health/agent_reply.h"
#include "health/kinds.h"
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

// The two periodic probes of a server: the active check (`health.check`) and the agent
// (`health.agent`). Each has its own interval, timeout and timers, so neither delays the other.
enum class Track : uint8_t { kCheck, kAgent };

// What a server's timers call; the service implements it.
class SlotEvents {
 public:
  virtual void start_probe(Slot& s, Track t) = 0;
  virtual void timed_out(Slot& s, Track t) = 0;
  virtual void eject_over(Slot& s) = 0;
  virtual void ramp_step(Slot& s) = 0;

 protected:
  ~SlotEvents() = default;
};

struct BackendCtx {
  upstream::Backend* backend;
  const config::Health* cfg;
  std::unique_ptr<Check> check;  // null: no active checks
  std::unique_ptr<Check> agent;  // null: no health.agent
  Millis agent_timeout{0};
};

// One periodic probe of one server and its schedule.
struct Cycle {
  Cycle(EventLoop& loop, SlotEvents& ev, Slot& slot, Track track)
      : next(loop, [&ev, &slot, track] { ev.start_probe(slot, track); }),
        deadline(loop, [&ev, &slot, track] { ev.timed_out(slot, track); }) {}
  Timer next;      // the next probe
  Timer deadline;  // the timeout of the probe in flight
  std::unique_ptr<Probe> probe;
  bool in_flight = false;
  uint64_t serial = 0;  // of the probe in flight: a late done from an older one is ignored
  uint64_t started_count = 0;
  TimePoint started{};
  TimePoint next_due{};
};

struct Slot {
  Slot(EventLoop& loop, SlotEvents& ev, BackendCtx& b, upstream::Server& s)
      : ctx(b),
        server(s),
        rise_fall(b.cfg->rise, b.cfg->fall),
        check(loop, ev, *this, Track::kCheck),
        agent(loop, ev, *this, Track::kAgent),
        eject(loop, [&ev, this] { ev.eject_over(*this); }),
        ramp(loop, [&ev, this] { ev.ramp_step(*this); }) {}
  Cycle& cycle(Track t) { return t == Track::kCheck ? check : agent; }
  BackendCtx& ctx;
  upstream::Server& server;
  RiseFall rise_fall;
  Cycle check;
  Cycle agent;
  Timer eject;  // the end of a passive ejection
  Timer ramp;   // the next slow-start step
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
      if (ctx->cfg->agent) {
        ctx->agent = make_agent_check(*b, loop_);
        // A reply is one short line: waiting past the next probe (or the check timeout) for it
        // would only let probes overlap.
        ctx->agent_timeout = std::min(ctx->cfg->agent->interval, ctx->cfg->timeout);
      }
      if (ctx->check || ctx->agent || ctx->cfg->passive || ctx->cfg->slow_start.count() > 0) has_work_ = true;
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
      for (Track t : {Track::kCheck, Track::kAgent}) {
        if (!checker(*slot, t)) continue;
        Millis window = std::min<Millis>(kFirstSpread, interval(*slot, t));
        slot->cycle(t).next.arm(Millis(std::uniform_int_distribution<int64_t>(0, window.count())(rng_)));
      }
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

  static Check* checker(const Slot& s, Track t) {
    return t == Track::kCheck ? s.ctx.check.get() : s.ctx.agent.get();
  }
  static Millis interval(const Slot& s, Track t) {
    return t == Track::kCheck ? s.ctx.cfg->interval : s.ctx.cfg->agent->interval;
  }
  static Millis timeout(const Slot& s, Track t) {
    return t == Track::kCheck ? s.ctx.cfg->timeout : s.ctx.agent_timeout;
  }

  void start_probe(Slot& s, Track t) override {
    Cycle& c = s.cycle(t);
    c.started = Clock::now();
    // The second probe lands anywhere in the second half of the interval after the first, so
    // servers that all started together spread over the interval at once; later ones keep a
    // -10%..+0 jitter.
    c.next_due = c.started + jittered(interval(s, t), c.started_count == 0 ? 0.5 : 0.9);
    ++c.started_count;
    uint64_t serial = ++c.serial;
    c.in_flight = true;
    auto probe = checker(s, t)->probe(
        s.server, [this, sp = &s, t, serial](Outcome o) { finish(*sp, t, serial, std::move(o)); });
    if (c.in_flight && c.serial == serial) {
      c.probe = std::move(probe);
      c.deadline.arm(timeout(s, t));
    } else if (probe) {
      loop_.defer_delete(probe.release());  // it finished inside probe(): delete after this turn
    }
  }

  void timed_out(Slot& s, Track t) override {
    Cycle& c = s.cycle(t);
    if (!c.in_flight) return;
    uint64_t serial = c.serial;
    if (c.probe) c.probe->expire(timeout(s, t));
    // A probe must answer expire() with done; should one not, the check still ends here.
    finish(s, t, serial, {Reason::kL4Timeout, "timeout after " + format_millis(timeout(s, t))});
  }

  void finish(Slot& s, Track t, uint64_t serial, Outcome outcome) {
    Cycle& c = s.cycle(t);
    if (!c.in_flight || serial != c.serial) return;
    c.in_flight = false;
    c.deadline.cancel();
    if (c.probe) loop_.defer_delete(c.probe.release());
    auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.started).count();
    if (t == Track::kCheck)
      observe(s, outcome, static_cast<uint32_t>(std::clamp<int64_t>(took, 0, UINT32_MAX)));
    else
      observe_agent(s, outcome);
    c.next.arm_at(std::max(c.next_due, loop_.now()));
  }

  // An agent probe ended. A reply that parses is applied; anything else is counted, logged and
  // otherwise ignored: the server keeps its last reported state and load (SPEC).
  void observe_agent(Slot& s, const Outcome& o) {
    upstream::Server& srv = s.server;
    const char* backend = s.ctx.backend->name().c_str();
    const char* server = srv.name().c_str();
    if (!o.passed()) {
      // A line cut short or too long is a malformed reply (L7RSP); no line at all, a failure.
      auto result =
          o.reason == Reason::kL7Bad ? upstream::AgentResult::kMalformed : upstream::AgentResult::kFailed;
      srv.record_agent_problem(result, o.detail + " [" + reason_code(o.reason) + "]");
      FULCRUM_LOG_LIMITED(kInfo, "backend %s server %s: no agent report: %s [%s]; keeping the last one",
                          backend, server, o.detail.c_str(), reason_code(o.reason));
      return;
    }
    auto reply = parse_agent_reply(o.detail);
    if (!reply) {
      srv.record_agent_problem(upstream::AgentResult::kMalformed,
                               "malformed reply: " + reply.error().message);
      FULCRUM_LOG_LIMITED(kWarn, "backend %s server %s: agent reply ignored: %s [AGENTRSP]", backend, server,
                          reply.error().message.c_str());
      return;
    }
    upstream::AgentState before = srv.agent_state();
    const std::optional<upstream::AgentState>& to = reply->state;
    bool leaves_down = before == upstream::AgentState::kDown && to && *to != upstream::AgentState::kDown;
    bool enters_down = before != upstream::AgentState::kDown && to == upstream::AgentState::kDown;
    // As after a failed check: back from down, the weight ramps (set before the state, so the
    // first balancer built with the server sees the low weight); going down ends a ramp.
    bool ramp = leaves_down && s.ctx.cfg->slow_start.count() > 0 && srv.health() == Health::kUp;
    if (ramp) begin_ramp(s);
    if (enters_down) end_ramp(s);
    uint32_t weight_before = srv.scaled_weight();
    srv.apply_agent_report(*reply);
    upstream::AgentState after = srv.agent_state();
    if (after != before) {
      // An agent's first `up` changes nothing a user would notice: debug, not one line per server
      // at every start.
      bool worse = after == upstream::AgentState::kDown || after == upstream::AgentState::kDrain;
      bool first_up = before == upstream::AgentState::kNone && after == upstream::AgentState::kUp;
      log_transition(worse      ? LogLevel::kWarn
                     : first_up ? LogLevel::kDebug
                                : LogLevel::kInfo,
                     "backend %s server %s: agent says %s (was %s)%s [AGENT]", backend, server,
                     upstream::agent_state_name(after), upstream::agent_state_name(before),
                     ramp ? (", slow start over " + format_millis(s.ctx.cfg->slow_start)).c_str() : "");
    }
    if (srv.scaled_weight() != weight_before)
      FULCRUM_LOG(kDebug, "backend %s server %s: agent report '%s': effective weight %.3f -> %.3f", backend,
                  server, o.detail.c_str(), static_cast<double>(weight_before) / upstream::kWeightScale,
                  srv.effective_weight());
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
      FULCRUM_LOG(kDebug, "backend %s server %s: slow start done, weight %.3f", s.ctx.backend->name().c_str(),
                  s.server.name().c_str(), s.server.effective_weight());
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
