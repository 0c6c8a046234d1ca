// Reason codes and texts for check outcomes, and the duration format used in details. Plain
// functions; any thread.
#include "health/check.h"

#include "upstream/server.h"

namespace fulcrum::health {

// upstream::Server counts checks by result in a fixed array; it must have a slot for each reason.
static_assert(kReasonCount <= upstream::Server::kCheckResults);

namespace {
struct ReasonRow {
  const char* code;
  const char* text;
};
constexpr ReasonRow kReasons[] = {
    {"OK", "check passed"},
    {"L4TOUT", "layer 4 timeout"},
    {"L4CON", "connection refused"},
    {"L4ERR", "layer 4 connection problem"},
    {"L7TOUT", "layer 7 timeout"},
    {"L7STS", "unexpected HTTP status"},
    {"L7BODY", "expected text not in body"},
    {"L7RSP", "invalid HTTP response"},
    {"ICMPTOUT", "no ICMP echo reply"},
    {"ICMPUNR", "ICMP destination unreachable"},
    {"SOCKERR", "local error starting the check"},
    {"L6TOUT", "TLS handshake timeout"},
    {"L6RSP", "TLS handshake failed"},
};
static_assert(std::size(kReasons) == kReasonCount);
}  // namespace

const char* reason_code(Reason r) {
  auto i = static_cast<size_t>(r);
  return i < kReasonCount ? kReasons[i].code : "?";
}

const char* reason_text(Reason r) {
  auto i = static_cast<size_t>(r);
  return i < kReasonCount ? kReasons[i].text : "?";
}

std::string format_millis(Millis ms) {
  auto n = ms.count();
  if (n >= 1000 && n % 1000 == 0) return std::to_string(n / 1000) + "s";
  if (n >= 1000 && n % 100 == 0) return std::to_string(n / 1000) + "." + std::to_string(n % 1000 / 100) + "s";
  return std::to_string(n) + "ms";
}

}  // namespace fulcrum::health
