// libFuzzer target for the agent reply parser (src/health/agent_reply.cc): any bytes, taken as a
// reply line, give a report or an error, never a crash, hang or leak; a report it takes holds
// only in-range values, and parsing is deterministic. The agent probe hands the parser the bytes
// before the first "\n", so the input is cut there too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "health/agent_reply.h"
#include "upstream/weight.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  line = line.substr(0, line.find('\n'));
  auto r = fulcrum::health::parse_agent_reply(line);
  auto again = fulcrum::health::parse_agent_reply(line);
  if (r.ok() != again.ok()) std::abort();
  if (!r) {
    if (r.error().message.empty()) std::abort();
    return 0;
  }
  if (line.size() >= fulcrum::health::kMaxAgentReply + 1) std::abort();
  if (r->percent && *r->percent > fulcrum::upstream::kMaxAgentPercent) std::abort();
  if (r->cpu_ppm && *r->cpu_ppm > 1000000) std::abort();
  if (r->mem_ppm && *r->mem_ppm > 1000000) std::abort();
  if (!r->state && !r->percent && !r->cpu_ppm && !r->mem_ppm) std::abort();  // said nothing, yet taken
  // The weight it leads to is in range for every base weight.
  fulcrum::upstream::WeightFactors f;
  f.base = 256;
  f.percent = r->percent.value_or(100);
  f.load_permille = fulcrum::upstream::load_permille(r->cpu_ppm.value_or(0), r->mem_ppm.value_or(0));
  if (fulcrum::upstream::effective_weight(f) > 256u * fulcrum::upstream::kWeightScale * 256 / 100)
    std::abort();
  return 0;
}
