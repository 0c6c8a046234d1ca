// The interned header-name table and its lookup: an open-addressing hash table of token indices,
// built at compile time from FULCRUM_HEADER_TOKENS. Constant; any thread.
#include "http/header_token.h"

#include <array>
#include <cstring>
#include <iterator>

#include "http/char_class.h"

namespace fulcrum::http {
namespace {

struct TokenInfo {
  std::string_view name;
  uint8_t flags;
};

constexpr TokenInfo kTokens[] = {{"", 0},
#define FULCRUM_TOKEN_INFO(e, name, flags) {name, flags},
                                 FULCRUM_HEADER_TOKENS(FULCRUM_TOKEN_INFO)
#undef FULCRUM_TOKEN_INFO
};
static_assert(std::size(kTokens) == kHeaderTokenCount);

// Longest interned name ("Strict-Transport-Security" is 25); longer names skip the hash.
constexpr size_t kMaxTokenLength = 32;
// 256 slots for ~60 names: a load under 1/4, so a lookup almost always probes once.
constexpr size_t kSlots = 256;

// A cheap hash of length and three lowercased bytes: enough to spread ~60 names, and a probe
// rejects a wrong slot on its length first.
constexpr size_t slot_of(std::string_view s) {
  size_t n = s.size();
  auto at = [&](size_t i) { return static_cast<size_t>(chars::to_lower(static_cast<unsigned char>(s[i]))); };
  return (n * 41 + at(0) * 7 + at(n - 1) * 3 + at(n / 2)) % kSlots;
}

// A name in lower case, and a mask with 0x20 where it has a letter: for a letter, input byte c
// matches iff (c | 0x20) is it (the upper-case letter differs only in that bit, and no other byte
// ORs to a lower-case letter); any other byte must be equal. So a whole 8-byte word compares at
// once: (word | mask) == lowered.
struct Lowered {
  std::array<char, kMaxTokenLength> bytes{};
  std::array<char, kMaxTokenLength> mask{};
  uint8_t size = 0;
};

constexpr std::array<Lowered, kHeaderTokenCount> make_lowered() {
  std::array<Lowered, kHeaderTokenCount> out{};
  for (size_t i = 0; i < kHeaderTokenCount; ++i) {
    out[i].size = static_cast<uint8_t>(kTokens[i].name.size());
    for (size_t k = 0; k < kTokens[i].name.size(); ++k) {
      auto c = chars::to_lower(static_cast<unsigned char>(kTokens[i].name[k]));
      out[i].bytes[k] = static_cast<char>(c);
      out[i].mask[k] = c >= 'a' && c <= 'z' ? 0x20 : 0;
    }
  }
  return out;
}

constexpr bool names_fit() {
  for (const TokenInfo& t : kTokens)
    if (t.name.size() > kMaxTokenLength) return false;
  return true;
}
static_assert(names_fit());
constexpr std::array<Lowered, kHeaderTokenCount> kLowered = make_lowered();

constexpr std::array<uint8_t, kSlots> make_slots() {
  std::array<uint8_t, kSlots> slots{};  // 0 = empty (kUnknown is never stored)
  for (size_t i = 1; i < kHeaderTokenCount; ++i) {
    size_t s = slot_of(kTokens[i].name);
    while (slots[s] != 0) s = (s + 1) % kSlots;
    slots[s] = static_cast<uint8_t>(i);
  }
  return slots;
}
constexpr std::array<uint8_t, kSlots> kSlotTable = make_slots();

// The longest probe sequence any interned name needs: a bound worth knowing (and testing).
constexpr size_t max_probe() {
  size_t worst = 0;
  for (size_t i = 1; i < kHeaderTokenCount; ++i) {
    size_t s = slot_of(kTokens[i].name), probes = 1;
    while (kSlotTable[s] != i) s = (s + 1) % kSlots, ++probes;
    worst = probes > worst ? probes : worst;
  }
  return worst;
}
static_assert(max_probe() <= 4, "header token hash clusters; change slot_of");

bool equals_lowered(const Lowered& l, std::string_view name) {
  size_t n = name.size();
  if (l.size != n) return false;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w, m, b;
    std::memcpy(&w, name.data() + i, 8);
    std::memcpy(&m, l.mask.data() + i, 8);
    std::memcpy(&b, l.bytes.data() + i, 8);
    if ((w | m) != b) return false;
  }
  for (; i < n; ++i)
    if ((static_cast<unsigned char>(name[i]) | static_cast<unsigned char>(l.mask[i])) !=
        static_cast<unsigned char>(l.bytes[i]))
      return false;
  return true;
}

}  // namespace

HeaderToken lookup_header_token(std::string_view name) {
  if (name.empty() || name.size() > kMaxTokenLength) return HeaderToken::kUnknown;
  for (size_t s = slot_of(name);; s = (s + 1) % kSlots) {
    uint8_t i = kSlotTable[s];
    if (i == 0) return HeaderToken::kUnknown;
    if (equals_lowered(kLowered[i], name)) return static_cast<HeaderToken>(i);
  }
}

std::string_view header_token_name(HeaderToken t) {
  size_t i = static_cast<size_t>(t);
  return i < kHeaderTokenCount ? kTokens[i].name : std::string_view();
}

std::string_view header_token_lower_name(HeaderToken t) {
  size_t i = static_cast<size_t>(t);
  return i < kHeaderTokenCount ? std::string_view(kLowered[i].bytes.data(), kLowered[i].size) : std::string_view();
}

uint8_t header_token_flags(HeaderToken t) {
  size_t i = static_cast<size_t>(t);
  return i < kHeaderTokenCount ? kTokens[i].flags : 0;
}

}  // namespace fulcrum::http
