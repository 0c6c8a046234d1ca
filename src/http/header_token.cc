// The interned header-name table and its lookup: an open-addressing hash table of token indices,
// built at compile time from FULCRUM_HEADER_TOKENS. Constant; any thread.
#include "http/header_token.h"

#include <array>
#include <iterator>

#include "http/char_class.h"

namespace fulcrum::http {
namespace {

struct TokenInfo {
  std::string_view name;
  uint8_t flags;
};

constexpr TokenInfo kTokens[] = {
    {"", 0},
#define FULCRUM_TOKEN_INFO(e, name, flags) {name, flags},
    FULCRUM_HEADER_TOKENS(FULCRUM_TOKEN_INFO)
#undef FULCRUM_TOKEN_INFO
};
static_assert(std::size(kTokens) == kHeaderTokenCount);

// Longest interned name ("Strict-Transport-Security" is 25); longer names skip the hash.
constexpr size_t kMaxTokenLength = 32;
// 256 slots for ~60 names: a load under 1/4, so a lookup almost always probes once.
constexpr size_t kSlots = 256;

constexpr uint32_t hash_lower(std::string_view s) {
  uint32_t h = 2166136261u;  // FNV-1a over the lowercased bytes
  for (char c : s) h = (h ^ chars::to_lower(static_cast<unsigned char>(c))) * 16777619u;
  return h;
}

constexpr std::array<uint8_t, kSlots> make_slots() {
  std::array<uint8_t, kSlots> slots{};  // 0 = empty (kUnknown is never stored)
  for (size_t i = 1; i < kHeaderTokenCount; ++i) {
    size_t s = hash_lower(kTokens[i].name) % kSlots;
    while (slots[s] != 0) s = (s + 1) % kSlots;
    slots[s] = static_cast<uint8_t>(i);
  }
  return slots;
}
constexpr std::array<uint8_t, kSlots> kSlotTable = make_slots();

constexpr bool equal_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (chars::to_lower(static_cast<unsigned char>(a[i])) != chars::to_lower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

constexpr bool names_fit() {
  for (const TokenInfo& t : kTokens)
    if (t.name.size() > kMaxTokenLength) return false;
  return true;
}
static_assert(names_fit());

}  // namespace

HeaderToken lookup_header_token(std::string_view name) {
  if (name.empty() || name.size() > kMaxTokenLength) return HeaderToken::kUnknown;
  for (size_t s = hash_lower(name) % kSlots;; s = (s + 1) % kSlots) {
    uint8_t i = kSlotTable[s];
    if (i == 0) return HeaderToken::kUnknown;
    if (equal_nocase(kTokens[i].name, name)) return static_cast<HeaderToken>(i);
  }
}

std::string_view header_token_name(HeaderToken t) {
  size_t i = static_cast<size_t>(t);
  return i < kHeaderTokenCount ? kTokens[i].name : std::string_view();
}

uint8_t header_token_flags(HeaderToken t) {
  size_t i = static_cast<size_t>(t);
  return i < kHeaderTokenCount ? kTokens[i].flags : 0;
}

}  // namespace fulcrum::http
