// Weight arithmetic: how a server's configured weight becomes the effective weight balancers use.
// Pure functions on plain integers, so any thread may call them; Server applies them under its
// cold lock on the rare path (API, slow start, agent reports).
//
// Why a scale: the configured weight is a small integer (0-256, as HAProxy's `weight`), but the
// weight in use is that weight times fractions: slow start ramps from 10%, an agent reports `N%`
// and cpu/mem, never below 1% of the weight. In whole units a weight-1 server could not be at 1%
// (or at 90%) of itself. So, like HAProxy's BE_WEIGHT_SCALE, the effective weight is kept in
// units of 1/kWeightScale of a configured weight unit. 1000 makes the 1% floor of a weight-1
// server exactly 10 units and matches slow start's per-mille ramp. The largest effective weight is
// 256 (weight) x 1000 (scale) x 256% (agent) = 655,360 < 2^20, so `active x weight` in
// least_conn (31 + 20 bits) fits in 64 bits, and 256 such servers sum to less than 2^28.
// Balancers divide weights by their gcd, so plainly configured weights (5 and 2, now 5000 and
// 2000) give the same tables as before; round_robin's cycle stays capped at 4096 entries.
#pragma once
#include <cstdint>

namespace fulcrum::upstream {

// Effective-weight units per configured weight unit.
inline constexpr uint32_t kWeightScale = 1000;
// The largest `N%` an agent may report: up to 2.56x the configured share, as HAProxy allows a
// relative weight up to its maximum of 256.
inline constexpr uint32_t kMaxAgentPercent = 256;
// cpu/mem never take a server below 1% of its weight (SPEC: Server-reported load): a fully busy
// server is still picked now and then, so it keeps being measured by real traffic.
inline constexpr uint32_t kLoadFloorPermille = 10;
// Reported utilisation is noisy (a CPU sample moves a point or two each interval). A change of the
// load factor smaller than this (per mille, or an eighth of the factor where that is smaller) is
// not applied: otherwise every agent report would move the backend's generation and make every
// worker rebuild its balancer.
inline constexpr uint32_t kLoadDeadbandPermille = 20;

// What the effective weight is made of.
struct WeightFactors {
  uint32_t base = 1;              // configured weight, or what the admin API set (0-256)
  uint32_t ramp_permille = 1000;  // slow start (100..1000 while ramping)
  uint32_t percent = 100;         // the agent's `N%` (0..kMaxAgentPercent)
  uint32_t load_permille = 1000;  // the agent's cpu/mem: load_permille(cpu, mem)
};

// The effective weight in kWeightScale units: base x kWeightScale x ramp x percent x load,
// rounded to the nearest unit. 0 only when the base or the percent is 0 (no new traffic);
// otherwise at least 1, so a server never vanishes through rounding.
uint32_t effective_weight(const WeightFactors& f);

// The share of the weight a server's utilisation leaves: 1 - max(cpu, mem), in per mille,
// rounded, never below kLoadFloorPermille. cpu and mem in parts per million (0..1,000,000; more
// is taken as 1,000,000).
uint32_t load_permille(uint32_t cpu_ppm, uint32_t mem_ppm);

// Whether a newly reported load factor replaces the one in use: it moved by at least
// min(kLoadDeadbandPermille, max(in_use, reported) / 8) (at least 1), or it reached either end
// (idle: 1000, or the floor), which is always applied exactly so an idle server gets all its
// weight back.
bool load_moved(uint32_t in_use, uint32_t reported);

}  // namespace fulcrum::upstream
