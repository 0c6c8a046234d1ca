// Glue between the HTTP proxy and the metrics module: what a request head gives the access log.
// Kept out of the client connection (client_conn.h) so the proxy only makes one call per request. Worker thread only.
#pragma once
#include "http/h1_parser.h"
#include "metrics/metrics.h"

namespace fulcrum::http {

// Starts counting an exchange at a parsed request head; with an access log, also keeps the words
// the log line needs (method, target, version, Referer, User-Agent). No-op without metrics.
// `now`: the worker loop's time of this turn (durations in the log are turn-grained, as nginx's).
void observe_request(metrics::ListenerMetrics* m, metrics::Exchange& x, const RequestHead& head,
                     std::chrono::steady_clock::time_point now);

}  // namespace fulcrum::http
