// Weight arithmetic (weight.h). Pure; any thread.
#include "upstream/weight.h"

#include <algorithm>

namespace fulcrum::upstream {

uint32_t effective_weight(const WeightFactors& f) {
  if (f.base == 0 || f.percent == 0) return 0;
  // 256 x 1000 x 1000 x 256 x 1000 = 6.6e13: the product fits in 64 bits with room to spare.
  constexpr uint64_t kDen = 1000ull * 100 * 1000;  // ramp per mille, percent, load per mille
  uint64_t num = uint64_t{f.base} * kWeightScale * std::min<uint32_t>(f.ramp_permille, 1000) *
                 std::min(f.percent, kMaxAgentPercent) * std::min<uint32_t>(f.load_permille, 1000);
  uint64_t w = (num + kDen / 2) / kDen;
  return w == 0 ? 1 : static_cast<uint32_t>(w);
}

uint32_t load_permille(uint32_t cpu_ppm, uint32_t mem_ppm) {
  uint32_t used = std::min<uint32_t>(std::max(cpu_ppm, mem_ppm), 1000000);
  uint32_t left = 1000 - (used + 500) / 1000;
  return std::max(left, kLoadFloorPermille);
}

bool load_moved(uint32_t in_use, uint32_t reported) {
  if (reported == in_use) return false;
  if (reported >= 1000 || reported <= kLoadFloorPermille) return true;
  uint32_t diff = reported > in_use ? reported - in_use : in_use - reported;
  uint32_t band = std::min(kLoadDeadbandPermille, std::max(in_use, reported) / 8);
  return diff >= std::max<uint32_t>(band, 1);
}

}  // namespace fulcrum::upstream
