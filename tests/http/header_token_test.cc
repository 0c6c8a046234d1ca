// Tests for src/http/header_token.cc: every interned name is found in any case, near misses are
// not, and the hop-by-hop set is the one RFC 9110 7.6.1 and common practice give.
#include "http/header_token.h"

#include <gtest/gtest.h>

#include <string>

namespace fulcrum::http {
namespace {

std::string flip_case(std::string_view s, bool upper) {
  std::string out(s);
  for (char& c : out) c = upper ? static_cast<char>(toupper(c)) : static_cast<char>(tolower(c));
  return out;
}

TEST(HeaderTokenTest, EveryTokenRoundTripsInAnyCase) {
  for (size_t i = 1; i < kHeaderTokenCount; ++i) {
    auto t = static_cast<HeaderToken>(i);
    std::string_view name = header_token_name(t);
    ASSERT_FALSE(name.empty()) << i;
    EXPECT_EQ(lookup_header_token(name), t) << name;
    EXPECT_EQ(header_token_lower_name(t), flip_case(name, false)) << name;
    EXPECT_EQ(lookup_header_token(flip_case(name, true)), t) << name;
    EXPECT_EQ(lookup_header_token(flip_case(name, false)), t) << name;
    // Near misses: one byte more, one byte less, one byte changed.
    EXPECT_EQ(lookup_header_token(std::string(name) + "x"), HeaderToken::kUnknown) << name;
    EXPECT_EQ(lookup_header_token(name.substr(0, name.size() - 1)), HeaderToken::kUnknown) << name;
    std::string changed(name);
    changed[0] = changed[0] == 'Q' ? 'Z' : 'Q';
    EXPECT_EQ(lookup_header_token(changed), HeaderToken::kUnknown) << name;
  }
}

TEST(HeaderTokenTest, UnknownNames) {
  EXPECT_EQ(lookup_header_token(""), HeaderToken::kUnknown);
  EXPECT_EQ(lookup_header_token("X-Custom"), HeaderToken::kUnknown);
  EXPECT_EQ(lookup_header_token(std::string(200, 'a')), HeaderToken::kUnknown);
  // '^' and '~' differ only in bit 0x20: lowercasing must not fold them together.
  EXPECT_EQ(lookup_header_token("Content~Length"), HeaderToken::kUnknown);
  // Names compare 8 bytes at a time with bit 0x20 masked at letters only: a byte that differs
  // from '-' or a digit just in that bit (CR for '-', 0x12 for '2') is no match, in the first
  // word or the tail.
  EXPECT_EQ(lookup_header_token("Content\rLength"), HeaderToken::kUnknown);
  EXPECT_EQ(lookup_header_token("X-Forwarded\rFor"), HeaderToken::kUnknown);
  EXPECT_EQ(lookup_header_token(std::string("HTTP\x12-Settings")), HeaderToken::kUnknown);
  EXPECT_EQ(lookup_header_token("x-fORWARDED-fOR"), HeaderToken::kXForwardedFor);
  EXPECT_EQ(header_token_name(HeaderToken::kUnknown), "");
  EXPECT_EQ(header_token_lower_name(HeaderToken::kUnknown), "");
  EXPECT_EQ(header_token_flags(HeaderToken::kUnknown), 0);
}

TEST(HeaderTokenTest, HopByHopSet) {
  for (auto t :
       {HeaderToken::kConnection, HeaderToken::kKeepAlive, HeaderToken::kProxyConnection, HeaderToken::kTe,
        HeaderToken::kTrailer, HeaderToken::kTransferEncoding, HeaderToken::kUpgrade,
        HeaderToken::kProxyAuthorization, HeaderToken::kProxyAuthenticate, HeaderToken::kHttp2Settings})
    EXPECT_TRUE(is_hop_by_hop(t)) << header_token_name(t);
  for (auto t : {HeaderToken::kUnknown, HeaderToken::kHost, HeaderToken::kContentLength, HeaderToken::kCookie,
                 HeaderToken::kExpect, HeaderToken::kAuthorization, HeaderToken::kXForwardedFor})
    EXPECT_FALSE(is_hop_by_hop(t)) << header_token_name(t);
  EXPECT_TRUE(header_token_flags(HeaderToken::kContentLength) & kTokenFraming);
  EXPECT_TRUE(header_token_flags(HeaderToken::kTransferEncoding) & kTokenFraming);
  EXPECT_TRUE(header_token_flags(HeaderToken::kConnection) & kTokenH2Forbidden);
}

TEST(HeaderTokenTest, TokenSet) {
  TokenSet s;
  EXPECT_TRUE(s.empty());
  s.add(HeaderToken::kCookie);
  s.add(HeaderToken::kSecWebSocketProtocol);  // the last one
  EXPECT_TRUE(s.contains(HeaderToken::kCookie));
  EXPECT_TRUE(s.contains(HeaderToken::kSecWebSocketProtocol));
  EXPECT_FALSE(s.contains(HeaderToken::kHost));
  EXPECT_FALSE(s.empty());
}

}  // namespace
}  // namespace fulcrum::http
