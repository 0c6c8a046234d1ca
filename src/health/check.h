// The shape of an active health check (STYLE 14): a Check kind starts non-blocking I/O for one
// server and reports one Outcome with a reason code; scheduling, timeouts, jitter, rise/fall, logs
// and counters live once, in HealthService. Checks and their probes run on the health thread only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/event_loop.h"

namespace fulcrum::upstream {
class Backend;
class Server;
}  // namespace fulcrum::upstream

namespace fulcrum::health {

// Why a check passed or failed. Each has a short code (HAProxy's check status style) for logs,
// the API and metric labels, and a text. The numbers index upstream::Server::checks().
enum class Reason : uint8_t {
  kPass,             // OK       the check passed
  kL4Timeout,        // L4TOUT   no connection within the timeout
  kL4Refused,        // L4CON    connection refused (RST)
  kL4Error,          // L4ERR    another connect error (unreachable, reset)
  kL7Timeout,        // L7TOUT   connected, no (complete) response within the timeout
  kL7Status,         // L7STS    a status outside expect_status
  kL7Body,           // L7BODY   the body lacks expect_body
  kL7Bad,            // L7RSP    not an HTTP response, or closed before one
  kIcmpTimeout,      // ICMPTOUT no echo reply within the timeout
  kIcmpUnreachable,  // ICMPUNR  destination or host unreachable
  kLocalError,       // SOCKERR  we could not run the check (descriptors, privileges, memory)
  kL6Timeout,        // L6TOUT   connected, TLS handshake not done within the timeout
  kL6Error,          // L6RSP    TLS handshake failed (refused, not TLS, certificate not verified)
  kCount
};
inline constexpr size_t kReasonCount = static_cast<size_t>(Reason::kCount);

const char* reason_code(Reason r);  // "L7STS"
const char* reason_text(Reason r);  // "unexpected status"

struct Outcome {
  Reason reason = Reason::kPass;
  std::string detail;  // "HTTP 503", "timeout after 1s", "connection refused", "body lacks \"UP\""
  bool passed() const { return reason == Reason::kPass; }
};

// Called exactly once per probe, on the health thread. It may be called from inside
// Check::probe() itself when the check fails at once (no descriptor, refused on the spot).
using Done = std::function<void(Outcome)>;

// One check in flight. The scheduler owns it and deletes it after the current event once done
// has been called (a probe is never deleted inside its own callback).
class Probe : public Deferred {
 public:
  // The timeout has passed: call done now, with the timeout outcome for the phase we are in
  // (still connecting: kL4Timeout; waiting for a response: kL7Timeout).
  virtual void expire(Millis timeout) = 0;
};

class Check {
 public:
  virtual ~Check() = default;
  // Starts checking `server` on the health loop. Returns the probe in flight.
  virtual std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) = 0;
  // The kind in use, which may differ from the configured word after a fallback.
  virtual std::string_view kind() const = 0;
};

// The registry (registry.cc): one row per kind. `make` runs at start-up on the thread that builds
// the service; a null `make` (the word `none`) means no active checks.
struct Kind {
  std::string_view word;  // the `health.check` value
  std::unique_ptr<Check> (*make)(const upstream::Backend& backend, EventLoop& loop);
  std::string_view about;
};
std::span<const Kind> kinds();
const Kind* find_kind(std::string_view word);

// "1s", "250ms", "1.5s": durations in details, written as the config writes them.
std::string format_millis(Millis ms);

}  // namespace fulcrum::health
