// Tests for src/http/h1_parser.cc: tables of refused and accepted heads (every smuggling vector in
// SPEC "HTTP behaviour" among them), the same heads fed in every kind of piece, limits, and the
// keep-alive, upgrade and hop-by-hop rules.
#include "http/h1_parser.h"

#include <gtest/gtest.h>

#include <array>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace fulcrum::http {
namespace {

using namespace std::string_view_literals;

constexpr size_t kFields = 100;

// A head's content as owned strings, so results of parses over different buffers compare.
struct Snapshot {
  ParseStatus status = ParseStatus::kNeedMore;
  ParseError error = ParseError::kNone;
  size_t consumed = 0;
  std::string method_text, target, host, reason;
  Method method = Method::kOther;
  TargetForm form = TargetForm::kOrigin;
  Version version = Version::kHttp11;
  int status_code = 0;
  std::vector<std::tuple<std::string, std::string, HeaderToken>> fields;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = false, upgrade = false, expect_continue = false, expect_other = false, has_host = false;
  bool other_codings = false, conn_unknown = false;
  TokenSet conn_options;
  bool operator==(const Snapshot&) const = default;
};

void fill_common(Snapshot& s, const ParseResult& r, const MessageHead& h) {
  s.status = r.status;
  s.error = r.error;
  s.consumed = r.consumed;
  if (!r.done()) return;
  s.version = h.version;
  for (const Header& f : h.headers) s.fields.emplace_back(std::string(f.name), std::string(f.value), f.token);
  s.body = h.body;
  s.content_length = h.content_length;
  s.keep_alive = h.keep_alive;
  s.upgrade = h.upgrade;
  s.other_codings = h.other_transfer_codings;
  s.conn_unknown = h.connection_lists_unknown;
  s.conn_options = h.connection_options;
}

Snapshot snap(const ParseResult& r, const RequestHead& h) {
  Snapshot s;
  fill_common(s, r, h);
  if (!r.done()) return s;
  s.method_text = h.method_text;
  s.target = h.target;
  s.host = h.host;
  s.method = h.method;
  s.form = h.target_form;
  s.expect_continue = h.expect_continue;
  s.expect_other = h.expect_other;
  s.has_host = h.has_host;
  return s;
}

Snapshot snap(const ParseResult& r, const ResponseHead& h) {
  Snapshot s;
  fill_common(s, r, h);
  if (!r.done()) return s;
  s.status_code = h.status;
  s.reason = h.reason;
  return s;
}

Snapshot parse_whole(std::string_view in, H1Limits limits = {}) {
  std::array<Header, kFields> fields;
  RequestHead h;
  ParseResult r = parse_request(in, fields, &h, limits);
  return snap(r, h);
}

Snapshot parse_whole_response(std::string_view in, Method m = Method::kGet) {
  std::array<Header, kFields> fields;
  ResponseHead h;
  ParseResult r = parse_response(in, fields, &h, m);
  return snap(r, h);
}

enum class Feed { kStableBuffer, kMovingBuffer, kSharedScratch };

// Feeds `in` as growing prefixes ending at `cuts` (then the whole), the way a connection would.
// kMovingBuffer copies each prefix to a fresh allocation (a regrown read buffer);
// kSharedScratch also scribbles over the fields array between calls (another connection's parse).
template <class Parser, class Head>
Snapshot parse_split(std::string_view in, const std::vector<size_t>& cuts, Feed feed,
                     Method m = Method::kGet) {
  Parser parser;
  std::array<Header, kFields> fields;
  Head h;
  ParseResult r;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  std::string copy;
  for (size_t end : ends) {
    std::string_view part = in.substr(0, end);
    if (feed != Feed::kStableBuffer) {
      copy = std::string(part);
      copy.shrink_to_fit();
      part = copy;
    }
    if (feed == Feed::kSharedScratch) fields.fill(Header{"junk"sv, "junk"sv, HeaderToken::kCookie});
    if constexpr (std::is_same_v<Head, RequestHead>)
      r = parser.parse(part, fields, &h);
    else
      r = parser.parse(part, fields, &h, m);
    if (!r.need_more()) break;
  }
  return snap(r, h);
}

std::vector<size_t> every_byte(size_t n) {
  std::vector<size_t> cuts;
  for (size_t i = 0; i < n; ++i) cuts.push_back(i);
  return cuts;
}

std::vector<size_t> random_cuts(size_t n, std::mt19937& rng) {
  std::vector<size_t> cuts;
  size_t at = 0;
  while (n > 0 && at < n) {
    at += std::uniform_int_distribution<size_t>(0, 12)(rng);
    if (at < n) cuts.push_back(at);
  }
  return cuts;
}

// Every way of feeding `in` gives the answer of parsing it whole.
template <class Parser, class Head>
void expect_split_invariant(std::string_view in, const Snapshot& whole, Method m = Method::kGet) {
  std::mt19937 rng(1234);
  for (Feed feed : {Feed::kStableBuffer, Feed::kMovingBuffer, Feed::kSharedScratch}) {
    EXPECT_EQ(whole, (parse_split<Parser, Head>(in, every_byte(in.size()), feed, m))) << "byte by byte";
    for (int round = 0; round < 20; ++round)
      EXPECT_EQ(whole, (parse_split<Parser, Head>(in, random_cuts(in.size(), rng), feed, m))) << "random";
  }
}

// ---------------------------------------------------------------------------------------------
// Refused requests.

struct Bad {
  const char* name;
  std::string_view input;
  ParseError error;
  int status;
};

const Bad kBadRequests[] = {
    // Smuggling vectors (SPEC: HTTP behaviour; RFC 9112 6.1, 6.3).
    {"cl_then_te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     ParseError::kContentLengthWithTransferEncoding, 400},
    {"te_then_cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"sv,
     ParseError::kContentLengthWithTransferEncoding, 400},
    {"cl_and_empty_te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n\r\n"sv,
     ParseError::kContentLengthWithTransferEncoding, 400},
    {"cl_and_te_identity",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n"sv,
     ParseError::kContentLengthWithTransferEncoding, 400},
    {"two_differing_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"sv,
     ParseError::kConflictingContentLength, 400},
    {"cl_list_differs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"sv,
     ParseError::kConflictingContentLength, 400},
    {"cl_list_differs_no_ows", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,6\r\n\r\n"sv,
     ParseError::kConflictingContentLength, 400},
    {"cl_zero_then_other", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 10\r\n\r\n"sv,
     ParseError::kConflictingContentLength, 400},
    {"cl_negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"sv,
     ParseError::kBadContentLength, 400},
    {"cl_plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"sv, ParseError::kBadContentLength,
     400},
    {"cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"sv, ParseError::kBadContentLength,
     400},
    {"cl_inner_space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n"sv,
     ParseError::kBadContentLength, 400},
    {"cl_empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"sv, ParseError::kBadContentLength,
     400},
    {"cl_empty_element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n"sv,
     ParseError::kBadContentLength, 400},
    {"cl_overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n"sv,
     ParseError::kBadContentLength, 400},
    {"cl_huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"sv,
     ParseError::kBadContentLength, 400},
    {"te_not_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"sv,
     ParseError::kTransferEncodingNotChunked, 400},
    {"te_chunked_not_last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"sv,
     ParseError::kTransferEncodingNotChunked, 400},
    {"te_chunked_not_last_lines",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"sv,
     ParseError::kTransferEncodingNotChunked, 400},
    {"te_empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n"sv,
     ParseError::kTransferEncodingNotChunked, 400},
    {"te_lookalike", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"sv,
     ParseError::kTransferEncodingNotChunked, 400},
    {"te_chunked_twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"sv,
     ParseError::kChunkedTwice, 400},
    {"te_chunked_twice_lines",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     ParseError::kChunkedTwice, 400},
    {"te_gzip_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"sv,
     ParseError::kUnsupportedTransferCoding, 501},
    {"te_unknown_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n"sv,
     ParseError::kUnsupportedTransferCoding, 501},
    {"te_quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"sv,
     ParseError::kBadTransferEncoding, 400},
    {"te_params", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"sv,
     ParseError::kBadTransferEncoding, 400},
    {"te_inner_space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n"sv,
     ParseError::kBadTransferEncoding, 400},
    {"te_obs_text", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xff\r\n\r\n"sv,
     ParseError::kBadTransferEncoding, 400},
    {"te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     ParseError::kTransferEncodingInHttp10, 400},
    {"te_and_cl_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"sv,
     ParseError::kTransferEncodingInHttp10, 400},
    {"space_before_colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"sv,
     ParseError::kSpaceBeforeColon, 400},
    {"tab_before_colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"sv, ParseError::kSpaceBeforeColon, 400},
    {"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"sv, ParseError::kObsFold, 400},
    {"obs_fold_tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n"sv, ParseError::kObsFold, 400},
    {"ws_after_start_line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"sv, ParseError::kObsFold, 400},
    {"bare_cr_in_field", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"sv, ParseError::kBareCr, 400},
    {"bare_cr_in_request_line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBareCr, 400},
    {"bare_cr_end_of_head", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"sv, ParseError::kBareCr, 400},
    {"bare_lf_in_field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"sv, ParseError::kBareLf, 400},
    {"lf_only", "GET / HTTP/1.1\nHost: a\n\n"sv, ParseError::kBareLf, 400},
    {"lf_end_of_head", "GET / HTTP/1.1\r\nHost: a\r\n\n"sv, ParseError::kBareLf, 400},
    {"nul_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"sv, ParseError::kControlChar, 400},
    {"ctl_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\x62\r\n\r\n"sv, ParseError::kControlChar, 400},
    {"del_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"sv, ParseError::kControlChar, 400},
    {"nul_in_target", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kControlChar, 400},
    {"tls_client_hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"sv, ParseError::kControlChar, 400},
    {"empty_name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"sv, ParseError::kEmptyFieldName, 400},
    {"bad_name_char", "GET / HTTP/1.1\r\nHost: a\r\nX@Y: v\r\n\r\n"sv, ParseError::kBadFieldName, 400},
    {"name_obs_text", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: v\r\n\r\n"sv, ParseError::kBadFieldName, 400},
    {"no_colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"sv, ParseError::kBadFieldName, 400},
    {"missing_host", "GET / HTTP/1.1\r\nX: y\r\n\r\n"sv, ParseError::kMissingHost, 400},
    {"missing_host_absolute", "GET http://a/ HTTP/1.1\r\n\r\n"sv, ParseError::kMissingHost, 400},
    {"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"sv, ParseError::kDuplicateHost, 400},
    {"two_same_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"sv, ParseError::kDuplicateHost, 400},
    {"two_hosts_http10", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"sv, ParseError::kDuplicateHost, 400},
    {"host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"host_userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"host_bad_port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"host_open_bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"host_bad_pct", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"sv, ParseError::kBadHost, 400},
    {"connection_not_token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close;x\r\n\r\n"sv,
     ParseError::kBadConnection, 400},
    {"double_sp_after_method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadRequestLine, 400},
    {"double_sp_after_target", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"trailing_sp", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"leading_sp", " GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadRequestLine, 400},
    {"http09", "GET /\r\n\r\n"sv, ParseError::kBadRequestLine, 400},
    {"lone_word", "GET\r\n\r\n"sv, ParseError::kBadRequestLine, 400},
    {"tab_separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadMethod, 400},
    {"bad_method_char", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadMethod, 400},
    {"two_leading_crlf", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadRequestLine, 400},
    {"lowercase_version", "GET / http/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"long_version", "GET / HTTP/1.10\r\nHost: a\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"http2_version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"sv, ParseError::kUnsupportedVersion, 505},
    {"http12_version", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"sv, ParseError::kUnsupportedVersion, 505},
    {"http2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"sv, ParseError::kHttp2Preface, 505},
    {"target_tab", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
    {"target_8bit", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
    {"target_fragment", "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
    {"asterisk_not_options", "GET * HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
    {"connect_origin_form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
    {"connect_no_port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"sv, ParseError::kBadTarget,
     400},
    {"connect_userinfo", "CONNECT u@example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget,
     400},
    {"no_scheme", "GET example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, ParseError::kBadTarget, 400},
};

TEST(H1ParserTest, RefusesMalformedRequests) {
  ASSERT_GE(std::size(kBadRequests), 40u);
  for (const Bad& b : kBadRequests) {
    SCOPED_TRACE(b.name);
    std::array<Header, kFields> fields;
    RequestHead h;
    ParseResult r = parse_request(b.input, fields, &h);
    ASSERT_TRUE(r.failed()) << static_cast<int>(r.status);
    EXPECT_EQ(parse_error_name(r.error), parse_error_name(b.error));
    EXPECT_EQ(r.http_status(), b.status);
    expect_split_invariant<RequestParser, RequestHead>(b.input, parse_whole(b.input));
  }
}

const Bad kBadResponses[] = {
    {"short_code", "HTTP/1.1 20 OK\r\n\r\n"sv, ParseError::kBadStatusCode, 400},
    {"long_code", "HTTP/1.1 2000 OK\r\n\r\n"sv, ParseError::kBadStatusCode, 400},
    {"code_below_100", "HTTP/1.1 099 Odd\r\n\r\n"sv, ParseError::kBadStatusCode, 400},
    {"code_above_599", "HTTP/1.1 600 Odd\r\n\r\n"sv, ParseError::kBadStatusCode, 400},
    {"no_sp", "HTTP/1.1\r\n\r\n"sv, ParseError::kBadStatusLine, 400},
    {"glued_code", "HTTP/1.1200 OK\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"http2", "HTTP/2 200 OK\r\n\r\n"sv, ParseError::kBadVersion, 400},
    {"http20", "HTTP/2.0 200 OK\r\n\r\n"sv, ParseError::kUnsupportedVersion, 505},
    {"leading_crlf", "\r\nHTTP/1.1 200 OK\r\n\r\n"sv, ParseError::kBadStatusLine, 400},
    {"cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     ParseError::kContentLengthWithTransferEncoding, 400},
    {"te_in_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     ParseError::kTransferEncodingInHttp10, 400},
    {"te_unknown", "HTTP/1.1 200 OK\r\nTransfer-Encoding: foo, chunked\r\n\r\n"sv,
     ParseError::kUnsupportedTransferCoding, 501},
    {"differing_cl", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"sv,
     ParseError::kConflictingContentLength, 400},
    {"obs_fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"sv, ParseError::kObsFold, 400},
    {"bare_lf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"sv, ParseError::kBareLf, 400},
    {"space_before_colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"sv, ParseError::kSpaceBeforeColon,
     400},
};

TEST(H1ParserTest, RefusesMalformedResponses) {
  for (const Bad& b : kBadResponses) {
    SCOPED_TRACE(b.name);
    std::array<Header, kFields> fields;
    ResponseHead h;
    ParseResult r = parse_response(b.input, fields, &h);
    ASSERT_TRUE(r.failed());
    EXPECT_EQ(parse_error_name(r.error), parse_error_name(b.error));
    EXPECT_EQ(r.http_status(), b.status);
    expect_split_invariant<ResponseParser, ResponseHead>(b.input, parse_whole_response(b.input));
  }
}

// ---------------------------------------------------------------------------------------------
// Accepted requests.

struct Good {
  const char* name;
  std::string_view input;
  Method method;
  std::string_view target;
  TargetForm form;
  Version version;
  size_t n_fields;
  BodyKind body;
  uint64_t content_length;
  bool keep_alive;
  std::string_view host;
  size_t consumed = 0;  // 0: the whole input
  bool upgrade = false;
  bool expect_continue = false;
};

constexpr auto k11 = Version::kHttp11;
constexpr auto k10 = Version::kHttp10;
constexpr auto kOrigin = TargetForm::kOrigin;
constexpr auto kNoBody = BodyKind::kNone;
constexpr auto kCl = BodyKind::kContentLength;
constexpr auto kChunked = BodyKind::kChunked;

const Good kGoodRequests[] = {
    {"simple_get", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1,
     kNoBody, 0, true, "example.com"},
    {"query", "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kGet, "/a/b?x=1&y=%20z", kOrigin,
     k11, 1, kNoBody, 0, true, "a"},
    {"odd_but_visible_target", "GET /~u/!$&'()*+,;=:@|{}^`\"<> HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kGet,
     "/~u/!$&'()*+,;=:@|{}^`\"<>", kOrigin, k11, 1, kNoBody, 0, true, "a"},
    {"post_cl", "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"sv, Method::kPost, "/f",
     kOrigin, k11, 2, kCl, 5, true, "a", 48},
    {"post_chunked", "POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"sv, Method::kPost,
     "/f", kOrigin, k11, 2, kChunked, 0, true, "a"},
    {"chunked_case", "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: ChUnKeD\r\n\r\n"sv, Method::kPost, "/",
     kOrigin, k11, 2, kChunked, 0, true, "a"},
    {"chunked_empty_elements", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n"sv,
     Method::kPost, "/", kOrigin, k11, 2, kChunked, 0, true, "a"},
    {"same_cl_twice", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"sv,
     Method::kPut, "/", kOrigin, k11, 3, kCl, 5, true, "a"},
    {"same_cl_list", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"sv, Method::kPut, "/",
     kOrigin, k11, 2, kCl, 5, true, "a"},
    {"cl_zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"sv, Method::kPost, "/", kOrigin, k11,
     2, kCl, 0, true, "a"},
    {"cl_leading_zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"sv, Method::kPost, "/",
     kOrigin, k11, 2, kCl, 7, true, "a"},
    {"cl_max", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n"sv, Method::kPost,
     "/", kOrigin, k11, 2, kCl, 18446744073709551615ull, true, "a"},
    {"http10_no_host", "GET / HTTP/1.0\r\n\r\n"sv, Method::kGet, "/", kOrigin, k10, 0, kNoBody, 0, false, ""},
    {"http10_keep_alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"sv, Method::kGet, "/", kOrigin,
     k10, 1, kNoBody, 0, true, ""},
    {"http10_cl", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n"sv, Method::kPost, "/", kOrigin, k10, 1, kCl,
     2, false, ""},
    {"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 2,
     kNoBody, 0, false, "a"},
    {"close_wins", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: CLOSE\r\n\r\n"sv,
     Method::kGet, "/", kOrigin, k11, 3, kNoBody, 0, false, "a"},
    {"http10_close_wins", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"sv, Method::kGet, "/",
     kOrigin, k10, 1, kNoBody, 0, false, ""},
    {"websocket", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"sv,
     Method::kGet, "/ws", kOrigin, k11, 3, kNoBody, 0, true, "a", 0, true},
    {"upgrade_not_in_connection", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"sv, Method::kGet,
     "/", kOrigin, k11, 2, kNoBody, 0, true, "a", 0, false},
    {"upgrade_http10_ignored", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"sv,
     Method::kGet, "/", kOrigin, k10, 2, kNoBody, 0, false, "", 0, false},
    {"expect_continue", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"sv,
     Method::kPut, "/", kOrigin, k11, 3, kCl, 1, true, "a", 0, false, true},
    {"expect_http10_ignored", "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"sv,
     Method::kPut, "/", kOrigin, k10, 2, kCl, 1, false, "", 0, false, false},
    {"options_asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kOptions, "*",
     TargetForm::kAsterisk, k11, 1, kNoBody, 0, true, "a"},
    {"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"sv, Method::kConnect,
     "example.com:443", TargetForm::kAuthority, k11, 1, kNoBody, 0, true, "example.com:443"},
    {"connect_ipv6", "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"sv, Method::kConnect,
     "[::1]:8443", TargetForm::kAuthority, k11, 1, kNoBody, 0, true, "[::1]:8443"},
    {"absolute_form", "GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"sv, Method::kGet,
     "http://example.com/x?y", TargetForm::kAbsolute, k11, 1, kNoBody, 0, true, "example.com"},
    {"options_absolute", "OPTIONS https://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"sv, Method::kOptions,
     "https://a.example", TargetForm::kAbsolute, k11, 1, kNoBody, 0, true, "a.example"},
    {"leading_crlf", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1, kNoBody,
     0, true, "a"},
    {"empty_value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n"sv, Method::kGet, "/",
     kOrigin, k11, 3, kNoBody, 0, true, "a"},
    {"obs_text_value", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n"sv, Method::kGet, "/",
     kOrigin, k11, 2, kNoBody, 0, true, "a"},
    {"lowercase_method", "get / HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kOther, "/", kOrigin, k11, 1, kNoBody,
     0, true, "a"},
    {"extension_method", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kOther, "/d", kOrigin, k11, 1,
     kNoBody, 0, true, "a"},
    {"head", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kHead, "/", kOrigin, k11, 1, kNoBody, 0, true,
     "a"},
    {"delete", "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kDelete, "/x", kOrigin, k11, 1, kNoBody, 0,
     true, "a"},
    {"patch", "PATCH /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"sv, Method::kPatch, "/x", kOrigin,
     k11, 2, kCl, 2, true, "a"},
    {"trace", "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kTrace, "/", kOrigin, k11, 1, kNoBody, 0, true,
     "a"},
    {"host_port", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1,
     kNoBody, 0, true, "example.com:8080"},
    {"host_empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1, kNoBody, 0, true,
     ""},
    {"host_ipv6", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1,
     kNoBody, 0, true, "[2001:db8::1]:80"},
    {"host_pct", "GET / HTTP/1.1\r\nHost: ex%41mple.com\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1,
     kNoBody, 0, true, "ex%41mple.com"},
    {"host_ows", "GET / HTTP/1.1\r\nHost: \t a.example \t\r\n\r\n"sv, Method::kGet, "/", kOrigin, k11, 1,
     kNoBody, 0, true, "a.example"},
    {"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"sv, Method::kGet,
     "/1", kOrigin, k11, 1, kNoBody, 0, true, "a", 28},
    {"many_fields",
     "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t/1\r\nCookie: a=b; c=d\r\n"
     "X-Forwarded-For: 1.2.3.4\r\nAccept-Encoding: gzip, br\r\n\r\n"sv,
     Method::kGet, "/", kOrigin, k11, 6, kNoBody, 0, true, "a"},
};

TEST(H1ParserTest, AcceptsValidRequests) {
  ASSERT_GE(std::size(kGoodRequests), 40u);
  for (const Good& g : kGoodRequests) {
    SCOPED_TRACE(g.name);
    std::array<Header, kFields> fields;
    RequestHead h;
    ParseResult r = parse_request(g.input, fields, &h);
    ASSERT_TRUE(r.done()) << parse_error_name(r.error);
    EXPECT_EQ(r.consumed, g.consumed ? g.consumed : g.input.size());
    EXPECT_EQ(h.method, g.method);
    EXPECT_EQ(h.target, g.target);
    EXPECT_EQ(h.target_form, g.form);
    EXPECT_EQ(h.version, g.version);
    EXPECT_EQ(h.headers.size(), g.n_fields);
    EXPECT_EQ(h.body, g.body);
    EXPECT_EQ(h.content_length, g.content_length);
    EXPECT_EQ(h.keep_alive, g.keep_alive);
    EXPECT_EQ(h.host, g.host);
    EXPECT_EQ(h.upgrade, g.upgrade);
    EXPECT_EQ(h.expect_continue, g.expect_continue);
    if (g.method != Method::kOther) {
      EXPECT_EQ(h.method_text, method_name(g.method));
    }
    for (const Header& f : h.headers) {
      EXPECT_EQ(f.token, lookup_header_token(f.name));
      EXPECT_FALSE(f.value.starts_with(' ') || f.value.ends_with(' ') || f.value.ends_with('\t'));
    }
    expect_split_invariant<RequestParser, RequestHead>(g.input, parse_whole(g.input));
  }
}

TEST(H1ParserTest, FieldsKeepNameCaseAndOrder) {
  std::array<Header, kFields> fields;
  RequestHead h;
  auto in = "GET / HTTP/1.1\r\nhOsT: a\r\ncontent-LENGTH: 3\r\nX-Custom:  v 1 \r\nCookie: x=1\r\n\r\n"sv;
  ASSERT_TRUE(parse_request(in, fields, &h).done());
  ASSERT_EQ(h.headers.size(), 4u);
  EXPECT_EQ(h.headers[0].name, "hOsT");
  EXPECT_EQ(h.headers[0].token, HeaderToken::kHost);
  EXPECT_EQ(h.headers[1].token, HeaderToken::kContentLength);
  EXPECT_EQ(h.headers[2].name, "X-Custom");
  EXPECT_EQ(h.headers[2].value, "v 1");
  EXPECT_EQ(h.headers[2].token, HeaderToken::kUnknown);
  EXPECT_EQ(h.find(HeaderToken::kCookie)->value, "x=1");
  EXPECT_EQ(h.find(HeaderToken::kUpgrade), nullptr);
  // Views point into the input: zero-copy.
  EXPECT_GE(h.headers[2].value.data(), in.data());
  EXPECT_LT(h.headers[2].value.data(), in.data() + in.size());
  EXPECT_EQ(h.content_length, 3u);
}

// ---------------------------------------------------------------------------------------------
// Accepted responses.

struct GoodResponse {
  const char* name;
  std::string_view input;
  Method request_method;
  int status;
  std::string_view reason;
  BodyKind body;
  uint64_t content_length;
  bool keep_alive;
  bool other_codings = false;
};

const GoodResponse kGoodResponses[] = {
    {"ok_cl", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"sv, Method::kGet, 200, "OK", kCl, 3, true},
    {"no_reason_no_sp", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"sv, Method::kGet, 200, "", kCl, 0, true},
    {"empty_reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"sv, Method::kGet, 404, "", kCl, 0, true},
    {"reason_spaces_obs_text", "HTTP/1.1 500 Internal\tServer \xc3\xa9rror\r\nContent-Length: 0\r\n\r\n"sv,
     Method::kGet, 500, "Internal\tServer \xc3\xa9rror", kCl, 0, true},
    {"no_content_ignores_cl", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"sv, Method::kGet, 204,
     "No Content", kNoBody, 7, true},
    {"not_modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 70\r\n\r\n"sv, Method::kGet, 304,
     "Not Modified", kNoBody, 70, true},
    {"head_response", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"sv, Method::kHead, 200, "OK", kNoBody,
     100, true},
    {"head_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv, Method::kHead, 200, "OK",
     kNoBody, 0, true},
    {"continue", "HTTP/1.1 100 Continue\r\n\r\n"sv, Method::kPut, 100, "Continue", kNoBody, 0, true},
    {"switching", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"sv,
     Method::kGet, 101, "Switching Protocols", BodyKind::kTunnel, 0, false},
    {"connect_ok", "HTTP/1.1 200 Connection established\r\nContent-Length: 10\r\n\r\n"sv, Method::kConnect,
     200, "Connection established", BodyKind::kTunnel, 10, false},
    {"connect_refused", "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n"sv, Method::kConnect, 407, "Auth",
     kCl, 2, true},
    {"until_close", "HTTP/1.1 200 OK\r\n\r\n"sv, Method::kGet, 200, "OK", BodyKind::kUntilClose, 0, false},
    {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv, Method::kGet, 200, "OK", kChunked,
     0, true},
    {"gzip_until_close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"sv, Method::kGet, 200, "OK",
     BodyKind::kUntilClose, 0, false, true},
    {"gzip_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"sv, Method::kGet, 200, "OK",
     kChunked, 0, true, true},
    {"http10_keep_alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"sv,
     Method::kGet, 200, "OK", kCl, 1, true},
    {"http10_default_close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"sv, Method::kGet, 200, "OK", kCl,
     1, false},
    {"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"sv, Method::kGet, 200, "OK",
     kCl, 1, false},
};

TEST(H1ParserTest, AcceptsValidResponses) {
  for (const GoodResponse& g : kGoodResponses) {
    SCOPED_TRACE(g.name);
    std::array<Header, kFields> fields;
    ResponseHead h;
    ParseResult r = parse_response(g.input, fields, &h, g.request_method);
    ASSERT_TRUE(r.done()) << parse_error_name(r.error);
    EXPECT_EQ(r.consumed, g.input.size());
    EXPECT_EQ(h.status, g.status);
    EXPECT_EQ(h.reason, g.reason);
    EXPECT_EQ(h.body, g.body);
    if (g.body == kCl || g.body == kNoBody) {
      EXPECT_EQ(h.content_length, g.content_length);
    }
    EXPECT_EQ(h.keep_alive, g.keep_alive);
    EXPECT_EQ(h.other_transfer_codings, g.other_codings);
    expect_split_invariant<ResponseParser, ResponseHead>(
        g.input, parse_whole_response(g.input, g.request_method), g.request_method);
  }
}

TEST(H1ParserTest, ResponseUpgradeAndInformational) {
  std::array<Header, kFields> fields;
  ResponseHead h;
  ASSERT_TRUE(
      parse_response("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"sv,
                     fields, &h)
          .done());
  EXPECT_TRUE(h.upgrade);
  EXPECT_TRUE(h.informational());
  ASSERT_TRUE(
      parse_response("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"sv, fields, &h).done());
  EXPECT_TRUE(h.informational());
  EXPECT_EQ(h.body, BodyKind::kNone);
}

// ---------------------------------------------------------------------------------------------
// Incremental parsing and limits.

TEST(H1ParserTest, PartialHeadNeedsMore) {
  std::string_view in = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"sv;
  const size_t head_len = in.size() - 3;
  std::array<Header, kFields> fields;
  RequestHead h;
  for (size_t n = 0; n < head_len; ++n) {
    RequestParser p;
    EXPECT_TRUE(p.parse(in.substr(0, n), fields, &h).need_more()) << n;
  }
  RequestParser p;
  for (size_t n = 0; n < head_len; ++n) ASSERT_TRUE(p.parse(in.substr(0, n), fields, &h).need_more()) << n;
  ParseResult r = p.parse(in, fields, &h);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.consumed, head_len);
  EXPECT_EQ(h.target, "/x");
  // Done is sticky until reset(); a moved buffer is re-sliced.
  std::string moved(in);
  r = p.parse(moved, fields, &h);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(h.target.data(), moved.data() + 5);
  EXPECT_EQ(h.headers[0].value.data(), moved.data() + 24);
  // reset() then the next message.
  p.reset();
  EXPECT_TRUE(p.parse("GET /next HTTP/1.1\r\nHost: b\r\n\r\n"sv, fields, &h).done());
  EXPECT_EQ(h.target, "/next");
}

TEST(H1ParserTest, ErrorIsStickyAndEarly) {
  RequestParser p;
  std::array<Header, kFields> fields;
  RequestHead h;
  // A bare LF is refused as soon as it arrives, not when the head would have ended.
  ParseResult r = p.parse("GET / HTTP/1.1\n"sv, fields, &h);
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.error, ParseError::kBareLf);
  EXPECT_EQ(p.parse("GET / HTTP/1.1\nHost: a\r\n\r\n"sv, fields, &h).error, ParseError::kBareLf);
  // A bad method is refused once its line is complete.
  RequestParser q;
  EXPECT_EQ(q.parse("G@T / HTTP/1.1\r\n"sv, fields, &h).error, ParseError::kBadMethod);
}

TEST(H1ParserTest, HeadTooLargeIs431) {
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(40000, 'x') + "\r\n\r\n";
  std::array<Header, kFields> fields;
  RequestHead h;
  ParseResult r = parse_request(big, fields, &h);
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.error, ParseError::kHeadTooLarge);
  EXPECT_EQ(r.http_status(), 431);
  // Fed in pieces: NeedMore until the limit is crossed, then 431.
  RequestParser p;
  size_t n = 0;
  for (; n <= big.size(); n += 1000) {
    r = p.parse(std::string_view(big).substr(0, n), fields, &h);
    if (!r.need_more()) break;
  }
  EXPECT_EQ(r.error, ParseError::kHeadTooLarge);
  EXPECT_GE(n, 32u * 1024);
  // A request line with no end at all is also 431 (not a wait forever).
  std::string endless = "GET /" + std::string(40000, 'a');
  EXPECT_EQ(parse_request(endless, fields, &h).error, ParseError::kHeadTooLarge);
}

TEST(H1ParserTest, HeadLimitBoundary) {
  std::string_view in = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv;
  std::array<Header, kFields> fields;
  RequestHead h;
  EXPECT_TRUE(parse_request(in, fields, &h, H1Limits{in.size()}).done());
  EXPECT_EQ(parse_request(in, fields, &h, H1Limits{in.size() - 1}).error, ParseError::kHeadTooLarge);
  // Only the head counts: a body after it does not.
  std::string with_body = std::string(in) + std::string(1000, 'b');
  EXPECT_TRUE(parse_request(with_body, fields, &h, H1Limits{in.size()}).done());
}

TEST(H1ParserTest, FieldCountLimitIs431) {
  auto make = [](int n) {
    std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 1; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
    return s + "\r\n";
  };
  std::array<Header, kFields> fields;
  RequestHead h;
  ParseResult r = parse_request(make(100), fields, &h);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(h.headers.size(), 100u);
  r = parse_request(make(101), fields, &h);
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.error, ParseError::kTooManyFields);
  EXPECT_EQ(r.http_status(), 431);
  // The caller's array sets the limit.
  std::array<Header, 3> small;
  EXPECT_TRUE(parse_request(make(3), small, &h).done());
  EXPECT_EQ(parse_request(make(4), small, &h).error, ParseError::kTooManyFields);
}

TEST(H1ParserTest, LongHeadFedByteByByteStaysCorrect) {
  std::string in = "POST /upload HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 90; ++i)
    in += "X-Field-" + std::to_string(i) + ": value number " + std::to_string(i) + "\r\n";
  in += "Content-Length: 12\r\n\r\n";
  Snapshot whole = parse_whole(in);
  ASSERT_EQ(whole.status, ParseStatus::kDone);
  ASSERT_EQ(whole.fields.size(), 92u);
  expect_split_invariant<RequestParser, RequestHead>(in, whole);
}

// ---------------------------------------------------------------------------------------------
// Hop-by-hop.

TEST(H1ParserTest, MustStripHopByHopAndConnectionListed) {
  std::array<Header, kFields> fields;
  RequestHead h;
  auto in =
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, Cookie, Host\r\nKeep-Alive: 5\r\n"
      "Proxy-Connection: x\r\nTE: trailers\r\nX-Secret: 1\r\nCookie: c\r\nAccept: */*\r\n"
      "Proxy-Authorization: Basic x\r\nx-secret: 2\r\n\r\n"sv;
  ASSERT_TRUE(parse_request(in, fields, &h).done());
  EXPECT_TRUE(h.connection_lists_unknown);
  EXPECT_TRUE(h.connection_options.contains(HeaderToken::kCookie));
  EXPECT_TRUE(h.connection_options.contains(HeaderToken::kKeepAlive));
  EXPECT_FALSE(h.connection_options.contains(HeaderToken::kAccept));
  std::vector<std::string_view> kept;
  for (const Header& f : h.headers)
    if (!must_strip(h, f)) kept.push_back(f.name);
  EXPECT_EQ(kept, (std::vector<std::string_view>{"Host", "Accept"}));
  EXPECT_TRUE(connection_lists(h, "x-SECRET"));
  EXPECT_FALSE(connection_lists(h, "Accept"));
}

TEST(H1ParserTest, ConnectionCloseIsNotAFieldName) {
  std::array<Header, kFields> fields;
  RequestHead h;
  ASSERT_TRUE(parse_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"sv, fields, &h).done());
  EXPECT_FALSE(h.connection_lists_unknown);
  EXPECT_TRUE(h.connection_options.empty());
}

TEST(H1ParserTest, ErrorNamesAndStatuses) {
  EXPECT_EQ(parse_error_name(ParseError::kContentLengthWithTransferEncoding), "cl_te_conflict");
  EXPECT_EQ(parse_error_status(ParseError::kNone), 0);
  for (int e = 1; e <= static_cast<int>(ParseError::kTrailerTooLarge); ++e) {
    auto err = static_cast<ParseError>(e);
    EXPECT_NE(parse_error_name(err), "unknown") << e;
    int s = parse_error_status(err);
    EXPECT_TRUE(s == 400 || s == 431 || s == 501 || s == 505) << e;
  }
}

}  // namespace
}  // namespace fulcrum::http
