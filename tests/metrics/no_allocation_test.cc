// STYLE 8 for the metrics hot path: counting a thousand requests allocates nothing, and neither
// does formatting access log lines between two batches. Global operator new is replaced in this
// test binary by a counting pass-through to malloc (one binary can replace it only once).

#include <gtest/gtest.h>

#include "support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "metrics/access_log.h"
#include "metrics/metrics.h"


constexpr bool kCounting = fulcrum::test::kCountingAllocations;

namespace fulcrum::metrics {
namespace {

config::Config one_listener() {
  config::Config cfg;
  config::Backend b;
  b.name = "app";
  for (int i = 0; i < 3; ++i) {
    config::Server s;
    s.name = "s" + std::to_string(i);
    b.servers.push_back(s);
  }
  cfg.backends.push_back(b);
  config::Listener l;
  l.name = "web";
  config::Route r;
  r.backend = "app";
  l.routes.push_back(r);
  cfg.listeners.push_back(l);
  return cfg;
}

SteadyTime at(int64_t us) { return SteadyTime(std::chrono::microseconds(us)); }

TEST(MetricsAllocationTest, CountingRequestsAllocatesNothing) {
  if (!kCounting) GTEST_SKIP() << "allocation counting is off under ASan";
  auto cfg = one_listener();
  Registry reg;
  ListenerMetrics* m = reg.add_worker().add_listener(Layout::build(cfg, 0), nullptr);
  SocketAddress client = *SocketAddress::parse("127.0.0.1:1");
  Exchange x;
  long before = fulcrum::test::allocations_on_this_thread();
  for (int i = 0; i < 1000; ++i) {
    m->on_accept();
    m->begin(x, at(0));
    x.backend = 0;
    x.server = i % 3;
    x.status = i % 7 ? 200 : 503;
    x.bytes = 512;
    m->end_http(x, client, at(i * 37));
    m->local_response(x, 404, 100, client, at(5));
    m->on_close();
  }
  EXPECT_EQ(fulcrum::test::allocations_on_this_thread() - before, 0);
}

TEST(MetricsAllocationTest, FormattingLogLinesAllocatesNothingBetweenBatches) {
  if (!kCounting) GTEST_SKIP() << "allocation counting is off under ASan";
  config::AccessLog spec;
  spec.path = "/dev/null";
  auto log = AccessLog::open(spec);
  ASSERT_TRUE(log && *log);
  EventLoop loop;
  auto cfg = one_listener();
  Registry reg;
  AccessLogSink sink(**log, loop);
  ListenerMetrics* m = reg.add_worker().add_listener(Layout::build(cfg, 0), &sink);
  SocketAddress client = *SocketAddress::parse("127.0.0.1:1");
  Exchange x;
  auto one = [&](int i) {
    m->begin(x, at(0));
    m->capture(x, "GET", "/some/path?with=query", false, "", "curl/8.0");
    x.backend = 0;
    x.server = i % 3;
    x.status = 200;
    m->end_http(x, client, at(250));
  };
  one(0);  // the exchange's string takes its capacity once per connection
  sink.flush();
  long before = fulcrum::test::allocations_on_this_thread();
  for (int i = 0; i < 100; ++i) one(i);  // ~20 KiB: below one batch
  EXPECT_EQ(fulcrum::test::allocations_on_this_thread() - before, 0);
}

}  // namespace
}  // namespace fulcrum::metrics
