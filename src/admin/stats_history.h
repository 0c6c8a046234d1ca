// StatsHistory: the dashboard's short memory. Once a second the admin server sums the workers'
// counters (metrics::Registry::collect) and hands the snapshot here; differences between
// snapshots give requests/s, errors/s and p50/p99 latency (from histogram bucket deltas, the way
// Prometheus' histogram_quantile does), per second for the charts and over a 10 s window for the
// per-server table. Control thread only.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "metrics/metrics.h"

namespace fulcrum::admin {

class StatsHistory {
 public:
  static constexpr size_t kKeepPoints = 600;  // ten minutes of one-second points
  static constexpr size_t kWindow = 10;       // seconds behind the per-server rates

  struct Point {
    int64_t t_ms = 0;               // wall clock, for the chart's axis
    double rps = 0;                 // http requests and tcp connections finished per second
    double err_rps = 0;             // 5xx per second
    double p50_ms = 0, p99_ms = 0;  // http only
    uint64_t active = 0;            // open client connections
    std::vector<std::pair<std::string, double>> backend_rps;  // requests/s by backend
  };
  struct Rate {
    double rps = 0, err_rps = 0, p50_ms = 0, p99_ms = 0;
    bool has_latency = false;
  };

  // `mono_s`: a steady clock in seconds (rates), `wall_ms`: the wall clock (labels).
  void sample(const metrics::Snapshot& snap, double mono_s, int64_t wall_ms);
  const std::deque<Point>& points() const { return points_; }
  // Over the last kWindow seconds (or what there is); a zero Rate before two samples.
  Rate server(const std::string& backend, const std::string& server) const;
  Rate backend(const std::string& backend) const;
  Rate total() const;

 private:
  struct Cum {
    uint64_t count = 0, errors = 0, http = 0;
    std::array<uint64_t, metrics::kBuckets> buckets{};
    void add(const metrics::SlotTotals& s);
  };
  struct Sample {
    double mono_s = 0;
    Cum total;
    std::map<std::string, Cum> backends;
    std::map<std::pair<std::string, std::string>, Cum> servers;
  };
  static Rate rate(const Cum* newer, const Cum* older, double seconds);

  std::deque<Sample> samples_;  // the last kWindow + 1
  std::deque<Point> points_;
};

}  // namespace fulcrum::admin
