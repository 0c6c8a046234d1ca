// HTTP/1.1 message-head parser, requests and responses, strict per RFC 9112: parses in place from
// the read buffer into a header array the caller sizes (picohttpparser's shape), incrementally,
// and works out body framing, keep-alive and what a proxy must strip. Never allocates, never
// throws, never touches a socket. One parser per connection direction, used only by the worker
// thread that owns the connection.
//
// Usage (request side; the response side is the same with ResponseParser/ResponseHead):
//
//   RequestParser parser;                      // per connection, reused with reset()
//   std::array<Header, 100> fields;            // more field lines than this -> 431
//   RequestHead head;
//   ParseResult r = parser.parse(buffered_bytes, fields, &head);
//   if (r.need_more()) { read more; call again with all bytes of the message so far }
//   if (r.failed())    { answer r.http_status() and close }
//   if (r.done())      { head is valid; the body (head.body) starts at buffered_bytes[r.consumed] }
//
// Strictness decisions (each is the stricter reading of RFC 9112 where it offers a choice):
//  - Lines end in CRLF. A bare LF or bare CR anywhere in the head is a 400 (we do not take the
//    2.2 bare-LF leniency: a front end that accepts what its backends reject is a smuggling gap).
//  - One empty line (CRLF) before a request line is skipped (2.2 "SHOULD ignore at least one");
//    a second is a 400. Responses get no such leniency.
//  - Exactly one SP between request-line parts (3: "MAY parse on whitespace" not taken).
//  - request-target: VCHAR only, no '#' (3.2 has no fragment); bytes >= 0x80 are refused, not
//    passed as obs-text. Percent-encoding is not checked here (the router normalises).
//    origin-form for any method but CONNECT; CONNECT must use authority-form host:port (3.2.3);
//    "*" only with OPTIONS (3.2.4); otherwise absolute-form with a valid scheme (3.2.2).
//  - Versions: HTTP/1.0 and HTTP/1.1. Another well-formed HTTP/x.y is 505; anything else 400.
//  - Status line: "HTTP/1.1 200" with neither SP nor reason is tolerated (many servers send it;
//    it cannot change framing). Status codes outside 100..599 are refused (RFC 9110 15).
//  - Field lines: token name, ':' right after it, values of VCHAR/obs-text/SP/HTAB with the
//    surrounding OWS trimmed. obs-fold is refused in requests and responses (5.2), as is
//    whitespace before the colon (5.1) and any CTL other than HTAB.
//  - Framing (6.1, 6.3): refused are Content-Length with Transfer-Encoding (in responses too,
//    where 6.3 would let TE win), differing CLs (identical repeats and lists like "5, 5"
//    collapse), a CL not 1*DIGIT or over 2^64-1, TE in HTTP/1.0, a request TE whose final coding
//    is not chunked (400), chunked twice (400), and a request coding besides chunked (501).
//    Codings must be plain tokens (no parameters). An empty Transfer-Encoding counts as present.
//  - Host: exactly one in 1.1 requests, at most one in 1.0, each uri-host [":" port] (3.2).
//    Connection must be a list of tokens.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "http/header_token.h"
#include "http/parse_error.h"

namespace fulcrum::http {

// Common methods get an enumerator; methods are case-sensitive (RFC 9110 9.1), so "get" is kOther.
enum class Method : uint8_t { kGet, kHead, kPost, kPut, kDelete, kConnect, kOptions, kTrace, kPatch, kOther };
std::string_view method_name(Method m);  // "GET"...; "" for kOther (use RequestHead::method_text)

enum class Version : uint8_t { kHttp10, kHttp11 };

// RFC 9112 3.2.
enum class TargetForm : uint8_t { kOrigin, kAbsolute, kAuthority, kAsterisk };

// How the body that follows the head is delimited (RFC 9112 6.3).
enum class BodyKind : uint8_t {
  kNone,           // no body: request without CL/TE; HEAD/1xx/204/304 response
  kContentLength,  // exactly content_length bytes (may be 0)
  kChunked,        // feed ChunkedDecoder
  kUntilClose,     // response: everything until the backend closes
  kTunnel,         // response: 101, or 2xx to CONNECT: raw bytes both ways from here on
};

struct Header {
  std::string_view name;   // as received (case kept), a token
  std::string_view value;  // OWS trimmed; may be empty
  HeaderToken token = HeaderToken::kUnknown;
};

struct H1Limits {
  size_t max_head_bytes = 32 * 1024;  // head (incl. skipped CRLF and final CRLF) must fit, else 431
};

struct MessageHead {
  Version version = Version::kHttp11;
  std::span<const Header> headers;  // a prefix of the caller's array, in order received
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;  // for kContentLength; repeated identical values collapsed
  bool keep_alive = false;      // 1.1: unless "close"; 1.0: only with "keep-alive" (RFC 9112 9.3)
  bool upgrade = false;         // Upgrade field + "upgrade" Connection option (RFC 9110 7.8)
  // Response with codings other than chunked (gzip, ...) in Transfer-Encoding: a proxy must pass
  // those on (keep the field minus "chunked") or refuse with 502. Requests with them get 501.
  bool other_transfer_codings = false;
  // What Connection lists besides close/keep-alive/upgrade (RFC 9110 7.6.1): interned names as
  // a set; connection_lists_unknown says some listed name is not interned (then ask
  // connection_lists()).
  TokenSet connection_options;
  bool connection_lists_unknown = false;

  bool has_body() const {
    return body == BodyKind::kChunked || body == BodyKind::kUntilClose ||
           (body == BodyKind::kContentLength && content_length > 0);
  }
  bool chunked() const { return body == BodyKind::kChunked; }
  // First field with this token, or nullptr.
  const Header* find(HeaderToken t) const;
};

struct RequestHead : MessageHead {
  Method method = Method::kOther;
  std::string_view method_text;  // always set, also for common methods
  std::string_view target;       // as received
  TargetForm target_form = TargetForm::kOrigin;
  std::string_view host;  // the Host value (validated); empty if none (1.0) or empty value
  bool has_host = false;
  bool expect_continue = false;  // "Expect: 100-continue" in a 1.1 request (RFC 9110 10.1.1)
  bool expect_other = false;     // another expectation: a server may answer 417
};

struct ResponseHead : MessageHead {
  int status = 0;
  std::string_view reason;  // may be empty
  bool informational() const { return status >= 100 && status < 200; }
};

// Whether a proxy must drop this field before forwarding: hop-by-hop by definition, or named in
// the message's Connection field (RFC 9110 7.6.1).
bool must_strip(const MessageHead& head, const Header& field);
// Whether the Connection field(s) list `name` (case-insensitive).
bool connection_lists(const MessageHead& head, std::string_view name);

enum class ParseStatus : uint8_t { kDone, kNeedMore, kError };

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  ParseError error = ParseError::kNone;
  size_t consumed = 0;  // kDone: length of the head, so the body starts at buf[consumed]

  bool done() const { return status == ParseStatus::kDone; }
  bool need_more() const { return status == ParseStatus::kNeedMore; }
  bool failed() const { return status == ParseStatus::kError; }
  int http_status() const { return parse_error_status(error); }  // requests; responses -> 502
};

namespace detail {
// Where a parse stopped and what it has seen; shared by both parsers.
struct HeadState {
  size_t line_start = 0;  // first byte of the line being read
  size_t scan = 0;        // where the search for that line's CRLF resumes
  size_t n_fields = 0;
  size_t done_at = 0;                    // length of the head once complete
  ParseError error = ParseError::kNone;  // sticky
  bool skipped_empty_line = false;
  bool start_line_done = false;
  bool cl_seen = false;
  bool te_seen = false;
  bool te_last_chunked = false;
  bool te_other_known = false;
  bool te_unknown = false;
  uint8_t te_chunked = 0;
  uint8_t host_count = 0;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool upgrade_field = false;
  bool expect_continue = false;
  bool expect_other = false;
};
}  // namespace detail

class RequestParser {
 public:
  explicit RequestParser(H1Limits limits = {}) : limits_(limits) {}

  // `buf` holds every byte received since the start of this message: the same bytes as last
  // time plus any new ones, though they may have moved (a compacted or regrown buffer). Each
  // call resumes where the last stopped, so a head fed in pieces costs O(length) in all. On
  // kDone, *out is filled and its views point into this call's `buf` and `fields`; `fields` may
  // be scratch shared with other parses between calls (the parser keeps offsets, not views).
  // Calls after kDone or kError return the same result (kDone re-sliced from the new `buf`)
  // until reset(). A shorter `buf` than last time restarts the parse from its first byte.
  ParseResult parse(std::string_view buf, std::span<Header> fields, RequestHead* out);
  // Ready for the next message (e.g. the next pipelined request, parsed from its own start).
  void reset() {
    st_ = {};
    head_ = {};
  }

 private:
  H1Limits limits_;
  detail::HeadState st_;
  RequestHead head_;
};

class ResponseParser {
 public:
  explicit ResponseParser(H1Limits limits = {}) : limits_(limits) {}

  // As RequestParser::parse. `request_method` is the method of the request this answers: a
  // response to HEAD has no body, a 2xx to CONNECT is a tunnel (RFC 9112 6.3 points 1-2).
  ParseResult parse(std::string_view buf, std::span<Header> fields, ResponseHead* out,
                    Method request_method = Method::kGet);
  void reset() {
    st_ = {};
    head_ = {};
  }

 private:
  H1Limits limits_;
  detail::HeadState st_;
  ResponseHead head_;
};

// One-shot helpers for tests and callers that hold a whole head: rescan from the start.
ParseResult parse_request(std::string_view buf, std::span<Header> fields, RequestHead* out,
                          H1Limits limits = {});
ParseResult parse_response(std::string_view buf, std::span<Header> fields, ResponseHead* out,
                           Method request_method = Method::kGet, H1Limits limits = {});

}  // namespace fulcrum::http
