// What a server's agent reports (SPEC: Server-reported load), as plain data: health/agent_reply.h
// parses a reply line into an AgentReport, and Server::apply_agent_report() applies it. Any thread.
#pragma once
#include <cstdint>
#include <optional>

namespace fulcrum::upstream {

// What the server's own agent said last. Kept apart from the operator's Admin state, so that an
// agent's `up` never undoes an operator's drain: a server takes traffic only when the health
// check, the operator and the agent all let it. kNone: no state word reported yet.
enum class AgentState : uint8_t { kNone, kUp, kDrain, kDown };
const char* agent_state_name(AgentState s);  // "none", "up", "drain", "down"

// One well-formed agent reply. Each word present updates its own part; parts the reply leaves out
// keep their last value (an agent may send `cpu=0.3` alone, or `drain` alone).
struct AgentReport {
  std::optional<AgentState> state;  // up, drain, down
  std::optional<uint32_t> percent;  // N%: 0..kMaxAgentPercent (weight.h)
  std::optional<uint32_t> cpu_ppm;  // cpu=F, parts per million (0..1,000,000)
  std::optional<uint32_t> mem_ppm;  // mem=F, parts per million
};

}  // namespace fulcrum::upstream
