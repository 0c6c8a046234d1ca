// Byte classes of the HTTP grammar (RFC 9110 5.6, RFC 9112, RFC 3986) as one 256-entry table, so
// each test in the parsers' inner loops is a load and a mask. Internal to src/http; constant, any
// thread.
#pragma once
#include <array>
#include <cstdint>

namespace fulcrum::http::chars {

enum : uint16_t {
  kTchar = 1 << 0,       // token character (RFC 9110 5.6.2)
  kDigit = 1 << 1,       // DIGIT
  kHex = 1 << 2,         // HEXDIG, either case
  kWs = 1 << 3,          // SP / HTAB
  kTarget = 1 << 4,      // allowed in a request-target: VCHAR but '#' (RFC 9112 3.2; see h1_parser.cc)
  kHost = 1 << 5,        // reg-name / IPv4 byte: unreserved, sub-delims, '%' (RFC 3986 3.2.2)
  kHeadStop = 1 << 6,    // stops the line scan: CR, LF, CTL other than HTAB, DEL
  kQdtext = 1 << 7,      // quoted-string text (RFC 9110 5.6.4): HTAB SP 0x21 0x23-5B 0x5D-7E obs-text
  kFieldByte = 1 << 8,   // field-vchar / SP / HTAB: VCHAR, obs-text, SP, HTAB (RFC 9110 5.5)
  kSchemeTail = 1 << 9,  // ALPHA / DIGIT / "+" / "-" / "." (RFC 3986 3.1)
};

constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> t{};
  auto is_alpha = [](int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto is_digit = [](int c) { return c >= '0' && c <= '9'; };
  constexpr const char* kTokenPunct = "!#$%&'*+-.^_`|~";
  constexpr const char* kSubDelims = "!$&'()*+,;=";
  auto in = [](const char* set, int c) {
    for (const char* p = set; *p; ++p)
      if (*p == c) return true;
    return false;
  };
  for (int c = 0; c < 256; ++c) {
    uint16_t f = 0;
    bool alpha = is_alpha(c), digit = is_digit(c);
    if (alpha || digit || in(kTokenPunct, c)) f |= kTchar;
    if (digit) f |= kDigit;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) f |= kHex;
    if (c == ' ' || c == '\t') f |= kWs;
    if (c > 0x20 && c < 0x7f && c != '#') f |= kTarget;
    if (alpha || digit || in("-._~%", c) || in(kSubDelims, c)) f |= kHost;
    if ((c < 0x20 && c != '\t') || c == 0x7f) f |= kHeadStop;
    if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) ||
        c >= 0x80)
      f |= kQdtext;
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) f |= kFieldByte;
    if (alpha || digit || c == '+' || c == '-' || c == '.') f |= kSchemeTail;
    t[c] = f;
  }
  return t;
}

inline constexpr std::array<uint16_t, 256> kTable = make_table();

constexpr bool is(unsigned char c, uint16_t cls) { return (kTable[c] & cls) != 0; }
constexpr bool is_tchar(unsigned char c) { return is(c, kTchar); }
constexpr bool is_digit(unsigned char c) { return is(c, kDigit); }
constexpr bool is_hex(unsigned char c) { return is(c, kHex); }
constexpr bool is_ws(unsigned char c) { return c == ' ' || c == '\t'; }
constexpr std::array<unsigned char, 256> make_lower() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<unsigned char>((c >= 'A' && c <= 'Z') ? c | 0x20 : c);
  return t;
}
inline constexpr std::array<unsigned char, 256> kLower = make_lower();
// ASCII lowercase only: '^' and '~' differ in bit 0x20 too, so no "| 0x20" shortcut.
constexpr unsigned char to_lower(unsigned char c) { return kLower[c]; }

// Whether any of the 8 bytes in `w` is a CTL (< 0x20) or DEL: the scanner's word-at-a-time fast
// path. The classic "has byte less than n" and "has byte equal to n" tricks; exact as a whole.
constexpr bool word_has_ctl(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  uint64_t below_space = (w - kOnes * 0x20) & ~w & kHigh;
  uint64_t x = w ^ (kOnes * 0x7f);
  uint64_t del = (x - kOnes) & ~x & kHigh;
  return (below_space | del) != 0;
}
constexpr int hex_value(unsigned char c) {
  return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;  // only for is_hex(c)
}

}  // namespace fulcrum::http::chars
