// The agent's reply grammar (SPEC: Server-reported load), parsed strictly by a pure function so
// that it can be fuzzed (fuzz/agent_fuzz.cc) and tested by tables. Any thread.
//
//   reply     = word *( sep word ) [ sep ]     with optional leading separators
//   sep       = 1*( SP / HTAB / "," )
//   word      = "up" / "down" / "drain"        the agent's state (at most one per reply)
//             / 1*3DIGIT "%"                   the weight as a share of the configured weight,
//                                              0-256 (HAProxy allows a relative weight up to 256)
//             / "cpu=" frac / "mem=" frac      utilisation, 0.0-1.0 (each at most once)
//   frac      = 1*DIGIT [ "." 1*DIGIT ]        "0", "0.25", "1", "1.000"; no sign, no exponent
//
// Keywords are matched case-insensitively (HAProxy's agents write `UP` as often as `up`). Anything
// else makes the whole reply malformed, so a half-understood reply never half-applies: HAProxy's
// other words (`maint`, `ready`, `stopped`, `fail`, `#comment`) included. A reply is one line of
// at most kMaxAgentReply bytes with its line end; a trailing CR is dropped, other control bytes
// (NUL, a CR or LF inside the line) and bytes above 0x7E are malformed.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.h"
#include "upstream/agent_report.h"

namespace fulcrum::health {

// The longest reply line, its "\n" included (SPEC: up to 256 bytes).
inline constexpr size_t kMaxAgentReply = 256;

// `line` is the reply without its "\n" (a trailing "\r" is allowed). The error message says why
// it was refused, with the offending word quoted and escaped ("unknown word 'busy'").
Result<upstream::AgentReport> parse_agent_reply(std::string_view line);

// `text` quoted for a log line: printable ASCII as is, anything else as \xNN, at most `max`
// bytes of input (then "...").
std::string quote_for_log(std::string_view text, size_t max = 40);

}  // namespace fulcrum::health
