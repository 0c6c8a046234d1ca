// hash_bytes: the one key hash of the lb module (consistent-hash keys, client addresses, server
// names), 64-bit XXH3: fast on the short keys we hash, and well mixed in its low bits, which pick
// the consistent-hash slot. Pure function; any thread.
#include <xxhash.h>

#include "lb/balancer.h"

namespace fulcrum::lb {

uint64_t hash_bytes(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

}  // namespace fulcrum::lb
