// Tests for src/http/chunked.cc: valid and refused chunked bodies, each fed whole, byte by byte
// and in random pieces (same data, trailers, end and error every time), extensions, trailers,
// size overflow and the line limits.
#include "http/chunked.h"

#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace fulcrum::http {
namespace {

using namespace std::string_view_literals;

struct Outcome {
  ChunkEvent end = ChunkEvent::kNeedMore;  // kDone, kError or kNeedMore (input ran out)
  ParseError error = ParseError::kNone;
  std::string data;
  std::string trailer;
  size_t consumed = 0;  // bytes of the input taken in total
  bool operator==(const Outcome&) const = default;
};

void PrintTo(const Outcome& o, std::ostream* os) {
  *os << "{end=" << static_cast<int>(o.end) << " error=" << parse_error_name(o.error)
      << " data=" << o.data.size() << "B trailer=\"" << o.trailer << "\" consumed=" << o.consumed << "}";
}

// Feeds `in` in pieces ending at `cuts`, each piece a fresh allocation so ASan sees over-reads.
Outcome decode_split(std::string_view in, const std::vector<size_t>& cuts, ChunkedLimits limits = {}) {
  ChunkedDecoder dec(limits);
  Outcome out;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  size_t from = 0;
  for (size_t end : ends) {
    if (end < from) continue;
    std::string piece(in.substr(from, end - from));
    std::string_view rest = piece;
    from = end;
    for (;;) {
      ChunkStep s = dec.decode(rest);
      EXPECT_LE(s.consumed, rest.size());
      rest.remove_prefix(s.consumed);
      out.consumed += s.consumed;
      if (s.event == ChunkEvent::kData) {
        EXPECT_FALSE(s.bytes.empty());
        out.data += s.bytes;
      } else if (s.event == ChunkEvent::kTrailer) {
        out.trailer += s.bytes;
      } else if (s.event == ChunkEvent::kNeedMore) {
        EXPECT_TRUE(rest.empty());
        break;
      } else {
        out.end = s.event;
        out.error = s.error;
        // Trailer bytes stream out as they pass, like data; how many went before an error depends
        // on the split, so only the error itself is compared.
        if (s.event == ChunkEvent::kError) out.trailer.clear();
        EXPECT_EQ(dec.decode(rest).event, s.event);  // sticky
        return out;
      }
      if (rest.empty()) break;
    }
  }
  out.end = ChunkEvent::kNeedMore;
  return out;
}

Outcome decode_whole(std::string_view in, ChunkedLimits limits = {}) { return decode_split(in, {}, limits); }

void expect_split_invariant(std::string_view in, const Outcome& whole, ChunkedLimits limits = {}) {
  std::vector<size_t> bytes;
  for (size_t i = 1; i < in.size(); ++i) bytes.push_back(i);
  EXPECT_EQ(whole, decode_split(in, bytes, limits)) << "byte by byte";
  std::mt19937 rng(99);
  for (int round = 0; round < 30; ++round) {
    std::vector<size_t> cuts;
    for (size_t at = 0;;) {
      at += std::uniform_int_distribution<size_t>(0, 9)(rng);
      if (at >= in.size()) break;
      cuts.push_back(at);
    }
    EXPECT_EQ(whole, decode_split(in, cuts, limits)) << "random";
  }
}

struct Good {
  const char* name;
  std::string_view input;
  std::string_view data;
  std::string_view trailer;
  size_t consumed = 0;  // 0: all of it
};

const Good kGood[] = {
    {"one_chunk", "5\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"two_chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"sv, "hello world", ""},
    {"upper_hex", "A\r\n0123456789\r\n0\r\n\r\n"sv, "0123456789", ""},
    {"lower_hex", "a\r\n0123456789\r\n0\r\n\r\n"sv, "0123456789", ""},
    {"leading_zeros", "0005\r\nhello\r\n000\r\n\r\n"sv, "hello", ""},
    {"sixteen_digits", "0000000000000005\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"empty_body", "0\r\n\r\n"sv, "", ""},
    {"data_with_crlf", "4\r\n\r\n\r\n\r\n0\r\n\r\n"sv, "\r\n\r\n", ""},
    {"binary_data", "3\r\n\0\xff\n\r\n0\r\n\r\n"sv, "\0\xff\n"sv, ""},
    {"ext_token", "5;foo=bar\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_name_only", "5;foo\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_quoted", "5;foo=\"b a;r\\\"x\"\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_many", "5;a=1;b;c=\"x\";d=e\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_bws", "5 ; a = 1 ;\tb\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_quoted_bws", "5;a=\"q\" ;b\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"ext_quoted_obs_text", "5;a=\"\xc3\xa9\"\r\nhello\r\n0\r\n\r\n"sv, "hello", ""},
    {"last_chunk_ext", "5\r\nhello\r\n0;done=1\r\n\r\n"sv, "hello", ""},
    {"trailer", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"sv, "hello", "X-Checksum: abc\r\n"},
    {"trailers", "0\r\nA: 1\r\nB:\r\nC: x\t y \xc3\xa9\r\n\r\n"sv, "", "A: 1\r\nB:\r\nC: x\t y \xc3\xa9\r\n"},
    {"next_message_follows", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n"sv, "hello", "", 15},
    {"big_chunk", "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"sv, "abcdefghijklmnopqrstuvwxyz", ""},
};

TEST(ChunkedTest, DecodesValidBodies) {
  for (const Good& g : kGood) {
    SCOPED_TRACE(g.name);
    Outcome whole = decode_whole(g.input);
    EXPECT_EQ(whole.end, ChunkEvent::kDone) << parse_error_name(whole.error);
    EXPECT_EQ(whole.data, g.data);
    EXPECT_EQ(whole.trailer, g.trailer);
    EXPECT_EQ(whole.consumed, g.consumed ? g.consumed : g.input.size());
    expect_split_invariant(g.input, whole);
  }
}

struct Bad {
  const char* name;
  std::string_view input;
  ParseError error;
};

const Bad kBad[] = {
    {"empty_size", "\r\n"sv, ParseError::kBadChunkSize},
    {"not_hex", "x\r\n"sv, ParseError::kBadChunkSize},
    {"negative", "-1\r\n"sv, ParseError::kBadChunkSize},
    {"hex_prefix", "0x5\r\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkSize},
    {"leading_space", " 5\r\nhello\r\n"sv, ParseError::kBadChunkSize},
    {"trailing_space", "5 \r\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkSize},
    {"trailing_tab", "5\t\r\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkSize},
    {"junk_after_size", "5x\r\nhello\r\n"sv, ParseError::kBadChunkSize},
    {"size_bare_lf", "5\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkSize},
    {"size_bare_cr", "5\rhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkSize},
    {"plus_sign", "+5\r\nhello\r\n"sv, ParseError::kBadChunkSize},
    {"seventeen_digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"sv, ParseError::kChunkSizeTooLong},
    {"overflow", "10000000000000000\r\n"sv, ParseError::kChunkSizeTooLong},
    {"overflow_f", "fffffffffffffffff\r\n"sv, ParseError::kChunkSizeTooLong},
    {"ext_empty_name", "5;\r\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_no_name", "5;=x\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_empty_value", "5;a=\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_unterminated_quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n\"\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_space_in_name", "5;a b\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_space_in_value", "5;a=b c\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_trailing_ws", "5;a=1 \r\nhello\r\n0\r\n\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_name_trailing_ws", "5;a \r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_after_quote", "5;a=\"x\"y\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_nul", "5;a\0\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_bare_lf", "5;a=b\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_bad_quoted_pair", "5;a=\"\\\x01\"\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"ext_ctl_in_quote", "5;a=\"\x7f\"\r\nhello\r\n"sv, ParseError::kBadChunkExtension},
    {"data_too_long", "5\r\nhelloX\r\n0\r\n\r\n"sv, ParseError::kBadChunkEnd},
    {"data_too_short", "5\r\nhell\r\n0\r\n\r\n"sv, ParseError::kBadChunkEnd},
    {"data_bare_lf", "5\r\nhello\n0\r\n\r\n"sv, ParseError::kBadChunkEnd},
    {"data_bare_cr", "5\r\nhello\r0\r\n\r\n"sv, ParseError::kBadChunkEnd},
    {"trailer_obs_fold", "0\r\nX: y\r\n z\r\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_leading_ws", "0\r\n X: y\r\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_empty_name", "0\r\n: y\r\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_space_before_colon", "0\r\nX : y\r\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_no_colon", "5\r\nhello\r\n0\r\nNoColon\r\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_bare_lf", "0\r\nX: y\n\r\n"sv, ParseError::kBadTrailer},
    {"trailer_ctl", "0\r\nX: \x01\r\n\r\n"sv, ParseError::kBadTrailer},
    {"final_bare_cr", "0\r\n\rX"sv, ParseError::kBadTrailer},
    {"final_bare_lf", "0\r\n\n"sv, ParseError::kBadTrailer},
    {"last_chunk_no_crlf", "0\r\nGET / HTTP/1.1\r\n\r\n"sv, ParseError::kBadTrailer},
};

TEST(ChunkedTest, RefusesMalformedBodies) {
  for (const Bad& b : kBad) {
    SCOPED_TRACE(b.name);
    Outcome whole = decode_whole(b.input);
    EXPECT_EQ(whole.end, ChunkEvent::kError);
    EXPECT_EQ(parse_error_name(whole.error), parse_error_name(b.error));
    EXPECT_EQ(parse_error_status(whole.error), 400);
    expect_split_invariant(b.input, whole);
  }
}

TEST(ChunkedTest, LargestSizeDoesNotOverflow) {
  ChunkedDecoder dec;
  std::string_view in = "ffffffffffffffff\r\n0123456789"sv;
  ChunkStep s = dec.decode(in);
  ASSERT_EQ(s.event, ChunkEvent::kData);
  EXPECT_EQ(s.bytes, "0123456789");
  EXPECT_EQ(s.consumed, in.size());
  EXPECT_EQ(dec.data_bytes(), 10u);
  EXPECT_EQ(dec.decode("abc"sv).event, ChunkEvent::kData);
  EXPECT_FALSE(dec.done());
}

TEST(ChunkedTest, DataIsAViewIntoTheInput) {
  ChunkedDecoder dec;
  std::string in = "5\r\nhello\r\n0\r\n\r\n";
  ChunkStep s = dec.decode(in);
  ASSERT_EQ(s.event, ChunkEvent::kData);
  EXPECT_EQ(s.bytes.data(), in.data() + 3);
  EXPECT_EQ(s.consumed, 8u);
  s = dec.decode(std::string_view(in).substr(8));
  EXPECT_EQ(s.event, ChunkEvent::kDone);
  EXPECT_TRUE(dec.done());
  EXPECT_EQ(dec.data_bytes(), 5u);
  dec.reset();
  EXPECT_FALSE(dec.done());
  EXPECT_EQ(dec.decode(in).event, ChunkEvent::kData);
}

TEST(ChunkedTest, ChunkLineLimit) {
  ChunkedLimits limits;
  limits.max_chunk_line_bytes = 64;
  std::string ok = "5;" + std::string(60, 'a') + "\r\nhello\r\n0\r\n\r\n";  // 60 + ';' + CR = 62
  EXPECT_EQ(decode_whole(ok, limits).end, ChunkEvent::kDone);
  std::string bad = "5;" + std::string(70, 'a') + "\r\nhello\r\n0\r\n\r\n";
  Outcome o = decode_whole(bad, limits);
  EXPECT_EQ(o.error, ParseError::kChunkExtensionTooLong);
  expect_split_invariant(bad, o, limits);
  // The default stops an endless extension too.
  std::string endless = "5;" + std::string(10000, 'a');
  EXPECT_EQ(decode_whole(endless).error, ParseError::kChunkExtensionTooLong);
}

TEST(ChunkedTest, TrailerLimit) {
  ChunkedLimits limits;
  limits.max_trailer_bytes = 40;
  std::string ok = "0\r\nX: " + std::string(20, 'v') + "\r\n\r\n";
  Outcome o = decode_whole(ok, limits);
  EXPECT_EQ(o.end, ChunkEvent::kDone);
  expect_split_invariant(ok, o, limits);
  std::string bad = "0\r\nX: " + std::string(40, 'v') + "\r\n\r\n";
  o = decode_whole(bad, limits);
  EXPECT_EQ(o.error, ParseError::kTrailerTooLarge);
  expect_split_invariant(bad, o, limits);
}

TEST(ChunkedTest, ManySmallChunksRandomSplits) {
  std::mt19937 rng(7);
  std::string body, expect;
  for (int i = 0; i < 200; ++i) {
    size_t n = std::uniform_int_distribution<size_t>(1, 300)(rng);
    std::string data;
    for (size_t k = 0; k < n; ++k) data += static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    char size[32];
    snprintf(size, sizeof size, i % 2 ? "%zx" : "%zX", n);
    body += std::string(size) + (i % 3 ? "" : ";i=\"" + std::to_string(i) + "\"") + "\r\n" + data + "\r\n";
    expect += data;
  }
  body += "0\r\nTrailer-A: 1\r\n\r\n";
  Outcome whole = decode_whole(body);
  ASSERT_EQ(whole.end, ChunkEvent::kDone);
  EXPECT_EQ(whole.data, expect);
  EXPECT_EQ(whole.trailer, "Trailer-A: 1\r\n");
  expect_split_invariant(body, whole);
}

}  // namespace
}  // namespace fulcrum::http
