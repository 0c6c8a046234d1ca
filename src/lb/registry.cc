// The registry of balancing algorithms: one row per `balance:` word with its factory, the
// request inputs it needs (so `check` can refuse, say, a cookie hash on a tcp listener) and a
// line for `check` and the docs. A table rather than self-registering statics: the linker would
// drop an unreferenced algorithm's object file from the static library. Read-only; any thread.
#include "lb/algorithms.h"

namespace fulcrum::lb {
namespace {

constexpr Algorithm kAlgorithms[] = {
    {"round_robin", make_round_robin, kNeedsNothing,
     "in turn, honouring weights smoothly (5 and 2 give a b a a a b a)"},
    {"least_conn", make_least_conn, kNeedsNothing, "fewest active requests relative to weight, ties in turn"},
    {"least_time", make_least_time, kNeedsNothing,
     "lowest average response time × (active + 1) relative to weight; new servers are tried"},
    {"ip_hash", make_ip_hash, kNeedsClientAddress, "consistent hash of the client IP"},
    // hash_key may be `ip` (no L7 input then); the config check refines this from hash_key.
    {"hash", make_hash, kNeedsL7 | kNeedsClientAddress, "consistent hash of hash_key"},
    {"random", make_random, kNeedsNothing, "two random choices, the less loaded of the two"},
};

}  // namespace

std::span<const Algorithm> algorithms() { return kAlgorithms; }

const Algorithm* find_algorithm(std::string_view word) {
  for (const Algorithm& a : kAlgorithms)
    if (a.word == word) return &a;
  return nullptr;
}

}  // namespace fulcrum::lb
