// observe_request (observe.h). Worker thread only.
#include "http/observe.h"

#include <chrono>

namespace fulcrum::http {

void observe_request(metrics::ListenerMetrics* m, metrics::Exchange& x, const RequestHead& head,
                     std::chrono::steady_clock::time_point now) {
  if (m == nullptr) return;
  m->begin(x, now);
  if (!m->logging()) return;
  std::string_view referer, agent;
  for (const Header& h : head.headers) {
    if (h.token == HeaderToken::kReferer && referer.empty())
      referer = h.value;
    else if (h.token == HeaderToken::kUserAgent && agent.empty())
      agent = h.value;
  }
  m->capture(x, head.method_text, head.target, head.version == Version::kHttp10, referer, agent);
}

}  // namespace fulcrum::http
