#include "health/health_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>

#include "health/probe_util.h"
#include "health/rise_fall.h"

namespace fulcrum::health {
namespace {

using testing::backend_spec;
using upstream::Health;

// A scripted check: each server's next outcome is whatever its mode says when the probe starts.
// Probes finish on a timer (so done never comes from inside probe(), as with real I/O), or at
// once, or never (then the service's timeout makes them expire).
enum class Mode { kPass, kFail, kHang, kPassAtOnce };

struct ProbeRecord {
  std::string server;
  TimePoint at;
  Health seen;  // the server's health when the probe started
  Mode mode;
};

struct Script {
  std::mutex mu;
  std::map<std::string, Mode> modes;
  std::vector<ProbeRecord> probes;
  Millis delay{2};

  void set(const std::string& server, Mode m) {
    std::lock_guard lock(mu);
    modes[server] = m;
  }
  std::vector<ProbeRecord> of(const std::string& server) {
    std::lock_guard lock(mu);
    std::vector<ProbeRecord> out;
    for (auto& p : probes)
      if (p.server == server) out.push_back(p);
    return out;
  }
};

class FakeProbe final : public Probe {
 public:
  FakeProbe(EventLoop& loop, Done done) : done_(std::move(done)), timer_(loop, [this] { fire(); }) {}
  void finish_in(Millis d, Outcome o) {
    pending_ = std::move(o);
    timer_.arm(d);
  }
  void finish_now(Outcome o) {
    pending_ = std::move(o);
    fire();
  }
  void expire(Millis timeout) override {
    if (!done_) return;
    pending_ = Outcome{Reason::kL7Timeout, "timeout after " + format_millis(timeout)};
    fire();
  }

 private:
  void fire() {
    if (!done_) return;
    Done d = std::move(done_);
    done_ = nullptr;
    d(std::move(pending_));
  }
  Done done_;
  Outcome pending_;
  Timer timer_;
};

class FakeCheck final : public Check {
 public:
  FakeCheck(Script& script, EventLoop& loop) : script_(script), loop_(loop) {}
  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    Mode m;
    {
      std::lock_guard lock(script_.mu);
      m = script_.modes.count(server.name()) ? script_.modes[server.name()] : Mode::kPass;
      script_.probes.push_back({server.name(), Clock::now(), server.health(), m});
    }
    auto p = std::make_unique<FakeProbe>(loop_, std::move(done));
    switch (m) {
      case Mode::kPass:
        p->finish_in(script_.delay, {Reason::kPass, "HTTP 200"});
        break;
      case Mode::kFail:
        p->finish_in(script_.delay, {Reason::kL7Status, "HTTP 503"});
        break;
      case Mode::kPassAtOnce:
        p->finish_now({Reason::kPass, "HTTP 200"});
        break;
      case Mode::kHang:
        break;
    }
    return p;
  }
  std::string_view kind() const override { return "fake"; }

 private:
  Script& script_;
  EventLoop& loop_;
};

ServiceOptions scripted(Script& script) {
  ServiceOptions o;
  o.make_check = [&script](const upstream::Backend& b, EventLoop& loop) -> std::unique_ptr<Check> {
    if (b.spec().health.check == "none") return nullptr;
    return std::make_unique<FakeCheck>(script, loop);
  };
  o.seed = 42;
  return o;
}

config::Backend spec(int servers, Millis interval, uint32_t rise, uint32_t fall,
                     const std::string& check = "http") {
  std::vector<std::string> addrs;
  for (int i = 0; i < servers; ++i) addrs.push_back("127.0.0.1:" + std::to_string(10000 + i));
  auto b = backend_spec(check, addrs);
  b.health.interval = interval;
  b.health.timeout = Millis(interval.count() / 2);
  b.health.rise = rise;
  b.health.fall = fall;
  return b;
}

template <typename Pred>
bool eventually(Pred pred, Millis within = Millis(3000)) {
  auto until = Clock::now() + within;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(Millis(2));
  }
  return pred();
}

TEST(RiseFallTest, CheckingUpOnFirstPassDownAfterFallUpAfterRise) {
  RiseFall rf(2, 3);
  EXPECT_EQ(rf.observe(Health::kChecking, true), Health::kUp);
  EXPECT_EQ(rf.observe(Health::kUp, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kUp, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kUp, true), std::nullopt);  // a pass breaks the run
  EXPECT_EQ(rf.observe(Health::kUp, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kUp, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kUp, false), Health::kDown);
  EXPECT_EQ(rf.failures(), 3u);
  EXPECT_EQ(rf.observe(Health::kDown, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kDown, true), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kDown, false), std::nullopt);  // a failure breaks it
  EXPECT_EQ(rf.observe(Health::kDown, true), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kDown, true), Health::kUp);
}

TEST(RiseFallTest, CheckingGoesDownAfterFallFailures) {
  RiseFall rf(2, 2);
  EXPECT_EQ(rf.observe(Health::kChecking, false), std::nullopt);
  EXPECT_EQ(rf.observe(Health::kChecking, false), Health::kDown);
  RiseFall zero(0, 0);  // 0 is taken as 1
  EXPECT_EQ(zero.observe(Health::kUp, false), Health::kDown);
  EXPECT_EQ(zero.observe(Health::kDown, true), Health::kUp);
}

TEST(HealthServiceTest, ServerIsCheckedAtOnceAndUpAfterItsFirstPass) {
  Script script;
  upstream::Backend b(spec(3, Millis(1000), 2, 3));
  for (auto& s : b.servers()) EXPECT_EQ(s->health(), Health::kChecking);
  HealthService svc({&b}, scripted(script));
  EXPECT_TRUE(svc.has_work());
  auto start = Clock::now();
  svc.start();
  ASSERT_TRUE(eventually([&] { return b.serving().size() == 3; }, Millis(1000)));
  // Interval 1s, but the first check is at once (within the 100ms spread).
  EXPECT_LT(Clock::now() - start, Millis(300));
  auto report = b.servers()[0]->last_check();
  EXPECT_TRUE(report.valid);
  EXPECT_TRUE(report.passed);
  EXPECT_EQ(report.code, "OK");
  EXPECT_EQ(report.detail, "HTTP 200");
  EXPECT_EQ(report.consecutive, 1u);
  EXPECT_GE(report.duration_us, 1000u);  // the fake answers after 2ms
  EXPECT_EQ(b.servers()[0]->checks(static_cast<size_t>(Reason::kPass)), 1u);
  EXPECT_EQ(b.servers()[0]->transitions(), 1u);
}

TEST(HealthServiceTest, DownAfterFallFailuresUpAfterRisePasses) {
  Script script;
  upstream::Backend b(spec(1, Millis(30), 2, 3));
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b}, scripted(script));
  svc.start();
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kUp; }));
  uint64_t gen = b.generation();
  script.set("s1", Mode::kFail);
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kDown; }));
  EXPECT_GT(b.generation(), gen);
  EXPECT_TRUE(b.serving().empty());
  script.set("s1", Mode::kPass);
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kUp; }));
  svc.stop();

  // Read the history: the state each probe saw tells when the flips happened.
  auto probes = script.of("s1");
  size_t first_fail = 0;
  while (first_fail < probes.size() && probes[first_fail].mode != Mode::kFail) ++first_fail;
  ASSERT_LT(first_fail + 3, probes.size());
  EXPECT_EQ(probes[first_fail + 1].seen, Health::kUp);    // after 1 failure
  EXPECT_EQ(probes[first_fail + 2].seen, Health::kUp);    // after 2
  EXPECT_EQ(probes[first_fail + 3].seen, Health::kDown);  // after 3 = fall
  size_t first_pass = first_fail;
  while (first_pass < probes.size() && probes[first_pass].mode != Mode::kPass) ++first_pass;
  ASSERT_LT(first_pass + 1, probes.size());
  EXPECT_EQ(probes[first_pass + 1].seen, Health::kDown);  // one pass is not enough (rise 2)
  EXPECT_EQ(s.checks(static_cast<size_t>(Reason::kL7Status)), first_pass - first_fail);
  EXPECT_EQ(s.transitions(), 3u);  // checking->up, up->down, down->up
  auto report = s.last_check();
  EXPECT_TRUE(report.passed);
  EXPECT_EQ(report.consecutive, 2u);
}

TEST(HealthServiceTest, ProbeThatNeverAnswersExpiresAtTheTimeout) {
  Script script;
  script.set("s1", Mode::kHang);
  auto sp = spec(1, Millis(60), 1, 2);
  sp.health.timeout = Millis(25);
  upstream::Backend b(sp);
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b}, scripted(script));
  svc.start();
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kDown; }));
  auto report = s.last_check();
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.code, "L7TOUT");
  EXPECT_EQ(report.detail, "timeout after 25ms");
  EXPECT_GE(report.duration_us, 24000u);
  EXPECT_LT(report.duration_us, 60000u);
  EXPECT_EQ(s.checks(static_cast<size_t>(Reason::kPass)), 0u);  // checking -> down, never up
}

TEST(HealthServiceTest, ChecksFinishingInsideProbeAreHandled) {
  Script script;
  script.set("s1", Mode::kPassAtOnce);
  upstream::Backend b(spec(1, Millis(20), 1, 1));
  HealthService svc({&b}, scripted(script));
  svc.start();
  ASSERT_TRUE(eventually([&] { return script.of("s1").size() >= 5; }));
  EXPECT_EQ(b.servers()[0]->health(), Health::kUp);
}

TEST(HealthServiceTest, ChecksAreSpreadOverTheInterval) {
  Script script;
  const int n = 200;
  const Millis interval(200);
  upstream::Backend b(spec(n, interval, 1, 1));
  HealthService svc({&b}, scripted(script));
  auto start = Clock::now();
  svc.start();
  std::this_thread::sleep_for(interval * 3 + Millis(50));
  svc.stop();
  std::vector<Millis> first, second;
  for (int i = 0; i < n; ++i) {
    auto probes = script.of("s" + std::to_string(i + 1));
    ASSERT_GE(probes.size(), 3u);
    first.push_back(std::chrono::duration_cast<Millis>(probes[0].at - start));
    second.push_back(std::chrono::duration_cast<Millis>(probes[1].at - start));
    for (size_t k = 1; k < probes.size(); ++k) {
      auto gap = std::chrono::duration_cast<Millis>(probes[k].at - probes[k - 1].at);
      EXPECT_LE(gap, interval + Millis(80))
          << "jitter never lengthens the interval (80ms: scheduling on a busy host)";
      EXPECT_GE(gap, k == 1 ? interval / 2 - Millis(2) : interval * 9 / 10 - Millis(2));
    }
  }
  auto [f_lo, f_hi] = std::minmax_element(first.begin(), first.end());
  auto [s_lo, s_hi] = std::minmax_element(second.begin(), second.end());
  EXPECT_LE(*f_hi, Millis(250)) << "first checks at once";
  EXPECT_GE(*f_hi - *f_lo, Millis(50)) << "but not all in one instant";
  EXPECT_GE(*s_hi - *s_lo, interval / 3) << "the second round spreads over the interval";
  // No 10ms window holds more than a fifth of the servers' second checks.
  std::vector<int> buckets(100, 0);
  for (auto t : second) ++buckets[std::min<size_t>(99, static_cast<size_t>(t.count() / 10))];
  EXPECT_LE(*std::max_element(buckets.begin(), buckets.end()), n / 5);
}

TEST(HealthServiceTest, RealTcpCheckFromTheRegistry) {
  auto l = std::make_unique<testing::Listener>();
  auto sp = backend_spec("tcp", {l->address()});
  sp.health.interval = Millis(30);
  sp.health.timeout = Millis(100);
  sp.health.fall = 2;
  upstream::Backend b(sp);
  HealthService svc({&b});
  svc.start();
  ASSERT_TRUE(eventually([&] { return b.servers()[0]->health() == Health::kUp; }));
  l.reset();  // nothing listens there now
  ASSERT_TRUE(eventually([&] { return b.servers()[0]->health() == Health::kDown; }));
  EXPECT_EQ(b.servers()[0]->last_check().code, "L4CON");
  EXPECT_EQ(b.servers()[0]->last_check().detail, "connection refused");
}

TEST(HealthServiceTest, NothingToDoStartsNoThread) {
  upstream::Backend b(backend_spec("none", {"127.0.0.1:1"}));
  HealthService svc({&b});
  EXPECT_FALSE(svc.has_work());
  svc.start();
  svc.stop();
  EXPECT_EQ(b.servers()[0]->health(), Health::kUp);
}

TEST(HealthServiceTest, StoppingWithChecksInFlightIsClean) {
  Script script;
  upstream::Backend b(spec(20, Millis(1000), 1, 1));
  for (int i = 0; i < 20; ++i) script.set("s" + std::to_string(i + 1), Mode::kHang);
  {
    HealthService svc({&b}, scripted(script));
    svc.start();
    ASSERT_TRUE(eventually([&] { return script.of("s20").size() == 1 && script.of("s1").size() == 1; }));
  }  // destroyed with 20 probes in flight
  EXPECT_EQ(b.servers()[0]->health(), Health::kChecking);
}

// --- passive ejection ---------------------------------------------------------------------

config::Backend passive_spec(uint32_t errors, Millis eject) {
  auto sp = backend_spec("none", {"127.0.0.1:1", "127.0.0.1:2"});
  sp.health.passive = config::Passive{errors, eject};
  return sp;
}

TEST(PassiveEjectionTest, ConsecutiveErrorsEjectUntilTheEjectTimeEnds) {
  upstream::Backend b(passive_spec(3, Millis(150)));
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b});
  EXPECT_TRUE(svc.has_work());
  svc.start();
  s.report_outcome(false);
  s.report_outcome(false);
  s.report_outcome(true);  // a success breaks the run
  s.report_outcome(false);
  s.report_outcome(false);
  EXPECT_FALSE(s.ejected());
  uint64_t gen = b.generation();
  auto at = Clock::now();
  s.report_outcome(false);
  EXPECT_TRUE(s.ejected());
  EXPECT_FALSE(s.usable());
  EXPECT_GT(b.generation(), gen);
  EXPECT_EQ(b.serving().size(), 1u);
  EXPECT_EQ(b.state_of(s), upstream::State::kDown);
  s.report_outcome(false);  // errors of requests still in flight do not eject twice
  EXPECT_EQ(s.ejections(), 1u);
  ASSERT_TRUE(eventually([&] { return !s.ejected(); }, Millis(2000)));
  EXPECT_GE(Clock::now() - at, Millis(140));
  EXPECT_TRUE(s.usable());
  EXPECT_EQ(b.serving().size(), 2u);
  // The count starts again from zero after the return.
  s.report_outcome(false);
  s.report_outcome(false);
  EXPECT_FALSE(s.ejected());
  s.report_outcome(false);
  EXPECT_TRUE(s.ejected());
  EXPECT_EQ(s.ejections(), 2u);
}

TEST(PassiveEjectionTest, WithoutPassiveConfigReportsAreIgnored) {
  upstream::Backend b(backend_spec("none", {"127.0.0.1:1"}));
  for (int i = 0; i < 100; ++i) b.servers()[0]->report_outcome(false);
  EXPECT_FALSE(b.servers()[0]->ejected());
}

TEST(PassiveEjectionTest, RacingWorkersEjectOnce) {
  upstream::Backend b(passive_spec(50, Millis(60000)));
  upstream::Server& s = *b.servers()[0];
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t)
    workers.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) s.report_outcome(false);
    });
  for (auto& w : workers) w.join();
  EXPECT_TRUE(s.ejected());
  EXPECT_EQ(s.ejections(), 1u);
}

// --- slow start ---------------------------------------------------------------------------

std::vector<uint32_t> watch_weights(upstream::Server& s, Millis for_how_long) {
  std::vector<uint32_t> seen;
  auto until = Clock::now() + for_how_long;
  while (Clock::now() < until) {
    uint32_t w = s.usable() ? s.scaled_weight() : 0;
    if (seen.empty() || seen.back() != w) seen.push_back(w);
    std::this_thread::sleep_for(Millis(1));
  }
  return seen;
}

TEST(SlowStartTest, ReturningServerRampsFromATenthToItsWeight) {
  Script script;
  auto sp = spec(1, Millis(20), 1, 1);
  sp.servers[0].weight = 20;
  sp.health.slow_start = Millis(900);
  upstream::Backend b(sp);
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b}, scripted(script));
  svc.start();
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kUp; }));
  EXPECT_EQ(s.effective_weight(), 20.0)
      << "the first pass after start does not ramp: every server starts together";
  script.set("s1", Mode::kFail);
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kDown; }));
  script.set("s1", Mode::kPass);
  ASSERT_TRUE(eventually([&] { return s.health() == Health::kUp; }));
  auto start = Clock::now();
  auto weights = watch_weights(s, Millis(1200));
  ASSERT_FALSE(weights.empty());
  EXPECT_LE(weights.front(), 4 * upstream::kWeightScale) << "starts near a tenth";
  EXPECT_EQ(weights.back(), 20 * upstream::kWeightScale);
  EXPECT_GE(weights.size(), 5u) << "in several steps";
  EXPECT_TRUE(std::is_sorted(weights.begin(), weights.end()));
  EXPECT_GT(Clock::now() - start, Millis(900));
  EXPECT_EQ(s.base_weight(), 20u);
  EXPECT_EQ(s.ramp(), 1000u);
}

TEST(SlowStartTest, AdminWeightDuringTheRampIsKept) {
  upstream::Backend b(backend_spec("none", {"127.0.0.1:1"}));
  upstream::Server& s = *b.servers()[0];
  s.set_weight(100);
  s.set_ramp(100);
  EXPECT_EQ(s.effective_weight(), 10.0);
  s.set_weight(50);  // the API changes the weight mid-ramp
  EXPECT_EQ(s.effective_weight(), 5.0);
  s.set_ramp(1000);
  EXPECT_EQ(s.effective_weight(), 50.0);
  s.set_weight(1);
  s.set_ramp(100);
  EXPECT_EQ(s.scaled_weight(), upstream::kWeightScale / 10) << "a weight-1 server ramps too: a tenth of it";
  s.set_ramp(0);
  EXPECT_EQ(s.scaled_weight(), 1u) << "never below one unit while the base is above 0";
  s.set_weight(0);
  EXPECT_EQ(s.scaled_weight(), 0u);
}

TEST(SlowStartTest, ReturnFromEjectionRamps) {
  auto sp = passive_spec(1, Millis(50));
  sp.servers[0].weight = 10;
  sp.health.slow_start = Millis(450);
  upstream::Backend b(sp);
  upstream::Server& s = *b.servers()[0];
  HealthService svc({&b});
  svc.start();
  s.report_outcome(false);
  ASSERT_TRUE(s.ejected());
  ASSERT_TRUE(eventually([&] { return !s.ejected(); }));
  EXPECT_LE(s.scaled_weight(), 3 * upstream::kWeightScale);
  ASSERT_TRUE(eventually([&] { return s.scaled_weight() == 10 * upstream::kWeightScale; }, Millis(1500)));
}

}  // namespace
}  // namespace fulcrum::health
