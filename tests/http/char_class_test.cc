// Tests for src/http/char_class.h: the byte classes match their RFC definitions, and the
// word-at-a-time CTL test agrees with a byte-by-byte one.
#include "http/char_class.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string_view>

namespace fulcrum::http::chars {
namespace {

TEST(CharClassTest, TokenCharacters) {
  std::string_view tchar =
      "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";  // RFC 9110 5.6.2
  for (int c = 0; c < 256; ++c)
    EXPECT_EQ(is_tchar(static_cast<unsigned char>(c)),
              tchar.find(static_cast<char>(c)) != std::string_view::npos)
        << c;
}

TEST(CharClassTest, HeadStopIsCtlButTabAndDel) {
  for (int c = 0; c < 256; ++c)
    EXPECT_EQ(is(static_cast<unsigned char>(c), kHeadStop), (c < 0x20 && c != '\t') || c == 0x7f) << c;
}

TEST(CharClassTest, LowerTouchesOnlyAsciiLetters) {
  for (int c = 0; c < 256; ++c) {
    unsigned char l = to_lower(static_cast<unsigned char>(c));
    if (c >= 'A' && c <= 'Z')
      EXPECT_EQ(l, c + 32);
    else
      EXPECT_EQ(l, c);
  }
}

bool reference_has_ctl(uint64_t w) {
  unsigned char b[8];
  std::memcpy(b, &w, 8);
  for (unsigned char c : b)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

TEST(CharClassTest, WordHasCtlMatchesBytewise) {
  std::mt19937_64 rng(5);
  // Every single byte value in every position of an otherwise printable word.
  for (int pos = 0; pos < 8; ++pos) {
    for (int c = 0; c < 256; ++c) {
      unsigned char b[8];
      std::memset(b, 'a', 8);
      b[pos] = static_cast<unsigned char>(c);
      uint64_t w;
      std::memcpy(&w, b, 8);
      EXPECT_EQ(word_has_ctl(w), reference_has_ctl(w)) << pos << " " << c;
    }
  }
  // Random words drawn from bytes around the edges (0x1f/0x20, 0x7e-0x80, 0xff) and anywhere.
  const unsigned char edges[] = {0x00, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x21,
                                 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff, 'A'};
  for (int i = 0; i < 200000; ++i) {
    uint64_t w = rng();
    if (i % 2) {
      unsigned char b[8];
      for (unsigned char& c : b) c = edges[rng() % std::size(edges)];
      std::memcpy(&w, b, 8);
    }
    ASSERT_EQ(word_has_ctl(w), reference_has_ctl(w)) << std::hex << w;
  }
}

}  // namespace
}  // namespace fulcrum::http::chars
