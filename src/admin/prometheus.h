// GET /metrics: the Prometheus text exposition format, version 0.0.4 (# HELP / # TYPE, one
// sample per line, label values escaped, histograms as cumulative _bucket{le} plus _sum and
// _count). Control thread only; built from a summed snapshot and the servers' shared atomics.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metrics.h"

namespace fulcrum::upstream {
class Backend;
}
namespace fulcrum::metrics {
class AccessLog;
}

namespace fulcrum::admin {

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_prometheus(const metrics::Snapshot& snap,
                              const std::vector<std::unique_ptr<upstream::Backend>>& backends,
                              const metrics::AccessLog* access_log, double uptime_seconds);

// A label value with \, " and newline escaped (exposition format rules).
void append_label_value(std::string& out, std::string_view v);

}  // namespace fulcrum::admin
