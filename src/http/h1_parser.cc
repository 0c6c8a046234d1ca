// HTTP/1.1 head parsing (RFC 9112 2-6): a line scanner that resumes where it stopped, a parser
// per line kind, and the framing rules applied once the empty line arrives. Used by the worker
// thread that owns the parser; see h1_parser.h for the strictness decisions.
#include "http/h1_parser.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "http/char_class.h"

namespace fulcrum::http {
namespace {

using chars::is;
using detail::HeadState;

bool equal_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (chars::to_lower(static_cast<unsigned char>(a[i])) !=
        chars::to_lower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && chars::is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && chars::is_ws(s.back())) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!chars::is_tchar(c)) return false;
  return true;
}

// Calls f(element) for each element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed,
// empty elements included (the caller decides); stops when f returns false. The fields this is
// used on (Content-Length, Transfer-Encoding, Connection, Expect) hold tokens and digits, so a
// comma is always a separator.
template <class F>
void for_each_element(std::string_view v, F&& f) {
  for (;;) {
    size_t comma = v.find(',');
    if (!f(trim_ows(v.substr(0, comma)))) return;
    if (comma == std::string_view::npos) return;
    v.remove_prefix(comma + 1);
  }
}

Method parse_method(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "HEAD") return Method::kHead;
      if (m == "POST") return Method::kPost;
      break;
    case 5:
      if (m == "PATCH") return Method::kPatch;
      if (m == "TRACE") return Method::kTrace;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "CONNECT") return Method::kConnect;
      if (m == "OPTIONS") return Method::kOptions;
      break;
  }
  return Method::kOther;
}

// HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3).
ParseError parse_version(std::string_view v, Version* out) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !chars::is_digit(v[5]) || v[6] != '.' ||
      !chars::is_digit(v[7]))
    return ParseError::kBadVersion;
  if (v[5] == '1' && v[7] == '1')
    *out = Version::kHttp11;
  else if (v[5] == '1' && v[7] == '0')
    *out = Version::kHttp10;
  else
    return ParseError::kUnsupportedVersion;
  return ParseError::kNone;
}

// uri-host [ ":" port ] (RFC 3986 3.2.2-3.2.3). The host is an IP-literal in brackets or a
// reg-name/IPv4address (unreserved, sub-delims, pct-encoded). Empty input is valid only when
// `allow_empty` (a Host for a URI without authority, RFC 9112 3.2).
bool valid_host_port(std::string_view s, bool port_required, bool allow_empty) {
  if (s.empty()) return allow_empty;
  size_t i = 0;
  if (s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (size_t k = 1; k < close; ++k)
      if (!is(s[k], chars::kHost) && s[k] != ':') return false;
    i = close + 1;
  } else {
    while (i < s.size() && is(s[i], chars::kHost)) {
      if (s[i] == '%' && (i + 2 >= s.size() || !chars::is_hex(s[i + 1]) || !chars::is_hex(s[i + 2])))
        return false;
      ++i;
    }
    if (i == 0) return false;  // ":80"
  }
  if (i == s.size()) return !port_required;
  if (s[i] != ':') return false;
  std::string_view port = s.substr(i + 1);
  if (port.empty()) return !port_required;  // "host:" is grammatical (port = *DIGIT)
  if (port.size() > 5) return false;
  uint32_t n = 0;
  for (unsigned char c : port) {
    if (!chars::is_digit(c)) return false;
    n = n * 10 + (c - '0');
  }
  return n <= 65535;
}

// scheme ":" ... (RFC 3986 3.1); what follows the colon is left to the router.
bool has_scheme(std::string_view t) {
  if (t.empty() || !((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z')) return false;
  for (size_t i = 1; i < t.size(); ++i) {
    if (t[i] == ':') return true;
    if (!is(t[i], chars::kSchemeTail)) return false;
  }
  return false;
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 3). The scanner already
// refused CTLs (but HTAB), DEL, CR and LF.
ParseError parse_request_line(std::string_view line, RequestHead& h) {
  size_t n = line.size(), sp1 = 0;
  while (sp1 < n && chars::is_tchar(line[sp1])) ++sp1;
  if (sp1 == n) return ParseError::kBadRequestLine;  // a lone word
  if (line[sp1] != ' ') return ParseError::kBadMethod;
  if (sp1 == 0) return ParseError::kBadRequestLine;  // leading SP
  size_t t0 = sp1 + 1, sp2 = t0;
  while (sp2 < n && is(line[sp2], chars::kTarget)) ++sp2;
  if (sp2 == n) return ParseError::kBadRequestLine;  // no version: HTTP/0.9 is not served
  if (line[sp2] != ' ') return ParseError::kBadTarget;
  if (sp2 == t0) return ParseError::kBadRequestLine;  // two SPs
  h.method_text = line.substr(0, sp1);
  h.method = parse_method(h.method_text);
  h.target = line.substr(t0, sp2 - t0);
  std::string_view version = line.substr(sp2 + 1);
  if (ParseError e = parse_version(version, &h.version); e != ParseError::kNone) {
    // RFC 9113 3.4: the h2 connection preface starts like an h1 request line.
    if (e == ParseError::kUnsupportedVersion && h.method_text == "PRI" && h.target == "*" &&
        version == "HTTP/2.0")
      return ParseError::kHttp2Preface;
    return e;
  }
  if (h.method == Method::kConnect) {
    // authority-form only, and the port is mandatory (RFC 9112 3.2.3, RFC 9110 9.3.6).
    if (!valid_host_port(h.target, /*port_required=*/true, /*allow_empty=*/false))
      return ParseError::kBadTarget;
    h.target_form = TargetForm::kAuthority;
  } else if (h.target[0] == '/') {
    h.target_form = TargetForm::kOrigin;
  } else if (h.target == "*") {
    if (h.method != Method::kOptions) return ParseError::kBadTarget;  // RFC 9112 3.2.4
    h.target_form = TargetForm::kAsterisk;
  } else if (has_scheme(h.target)) {
    h.target_form = TargetForm::kAbsolute;
  } else {
    return ParseError::kBadTarget;
  }
  return ParseError::kNone;
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4). We also take
// "HTTP/1.1 200" with no SP after the code (see h1_parser.h).
ParseError parse_status_line(std::string_view line, ResponseHead& h) {
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return ParseError::kBadStatusLine;
  if (ParseError e = parse_version(line.substr(0, sp), &h.version); e != ParseError::kNone) return e;
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3 || !chars::is_digit(rest[0]) || !chars::is_digit(rest[1]) || !chars::is_digit(rest[2]))
    return ParseError::kBadStatusCode;
  int code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
  if (code < 100 || code > 599) return ParseError::kBadStatusCode;  // RFC 9110 15
  if (rest.size() > 3 && rest[3] != ' ') return ParseError::kBadStatusCode;
  h.status = code;
  // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ): exactly what the scanner lets through.
  h.reason = rest.size() > 3 ? rest.substr(4) : std::string_view();
  return ParseError::kNone;
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 5). The caller has refused a leading
// SP/HTAB (obs-fold); the scanner has refused every byte field-value may not hold.
ParseError parse_field_line(std::string_view line, Header* f) {
  size_t i = 0;
  while (i < line.size() && chars::is_tchar(line[i])) ++i;
  if (i == line.size()) return ParseError::kBadFieldName;  // no colon
  if (line[i] != ':')
    return chars::is_ws(line[i]) ? ParseError::kSpaceBeforeColon : ParseError::kBadFieldName;
  if (i == 0) return ParseError::kEmptyFieldName;
  f->name = line.substr(0, i);
  f->value = trim_ows(line.substr(i + 1));
  return ParseError::kNone;
}

// Content-Length = 1*DIGIT; a list of identical values (or repeated lines) collapses to one, and
// differing values are refused (RFC 9110 8.6, RFC 9112 6.3 point 5).
ParseError on_content_length(HeadState& st, MessageHead& h, std::string_view v) {
  ParseError err = ParseError::kNone;
  for_each_element(v, [&](std::string_view e) {
    if (e.empty()) return (err = ParseError::kBadContentLength), false;
    uint64_t n = 0;
    for (unsigned char c : e) {
      if (!chars::is_digit(c)) return (err = ParseError::kBadContentLength), false;
      uint64_t d = c - '0';
      if (n > (std::numeric_limits<uint64_t>::max() - d) / 10)
        return (err = ParseError::kBadContentLength), false;
      n = n * 10 + d;
    }
    if (st.cl_seen && n != h.content_length) return (err = ParseError::kConflictingContentLength), false;
    st.cl_seen = true;
    h.content_length = n;
    return true;
  });
  return err;
}

// Transfer-Encoding = #transfer-coding (RFC 9112 6.1); lines combine into one list in order.
// We accept plain tokens only: no registered coding takes parameters.
ParseError on_transfer_encoding(HeadState& st, std::string_view v) {
  ParseError err = ParseError::kNone;
  st.te_seen = true;  // even when empty: "Transfer-Encoding:" next to Content-Length is refused
  for_each_element(v, [&](std::string_view e) {
    if (e.empty()) return true;  // RFC 9110 5.6.1: empty elements do not count
    if (!is_token(e)) return (err = ParseError::kBadTransferEncoding), false;
    if (equal_nocase(e, "chunked")) {
      if (st.te_chunked < 2) ++st.te_chunked;
      st.te_last_chunked = true;
      return true;
    }
    st.te_last_chunked = false;
    // RFC 9112 7.2 registers compress/deflate/gzip and the x- aliases.
    if (equal_nocase(e, "gzip") || equal_nocase(e, "deflate") || equal_nocase(e, "compress") ||
        equal_nocase(e, "x-gzip") || equal_nocase(e, "x-compress"))
      st.te_other_known = true;
    else
      st.te_unknown = true;
    return true;
  });
  return err;
}

// Connection = #connection-option; connection-option = token (RFC 9110 7.6.1).
ParseError on_connection(HeadState& st, MessageHead& h, std::string_view v) {
  ParseError err = ParseError::kNone;
  for_each_element(v, [&](std::string_view e) {
    if (e.empty()) return true;
    if (!is_token(e)) return (err = ParseError::kBadConnection), false;
    bool close = equal_nocase(e, "close");
    st.conn_close |= close;
    st.conn_keep_alive |= equal_nocase(e, "keep-alive");
    st.conn_upgrade |= equal_nocase(e, "upgrade");
    HeaderToken t = lookup_header_token(e);
    if (t != HeaderToken::kUnknown)
      h.connection_options.add(t);
    else if (!close)
      h.connection_lists_unknown = true;
    return true;
  });
  return err;
}

// Expect = #expectation (RFC 9110 10.1.1); only 100-continue is defined.
void on_expect(HeadState& st, std::string_view v) {
  for_each_element(v, [&](std::string_view e) {
    if (e.empty()) return true;
    if (equal_nocase(e, "100-continue"))
      st.expect_continue = true;
    else
      st.expect_other = true;
    return true;
  });
}

template <class Head>
ParseError on_field(HeadState& st, Head& h, const Header& f) {
  constexpr bool kRequest = std::is_same_v<Head, RequestHead>;
  switch (f.token) {
    case HeaderToken::kContentLength:
      return on_content_length(st, h, f.value);
    case HeaderToken::kTransferEncoding:
      return on_transfer_encoding(st, f.value);
    case HeaderToken::kConnection:
      return on_connection(st, h, f.value);
    case HeaderToken::kUpgrade:
      st.upgrade_field = true;
      return ParseError::kNone;
    case HeaderToken::kHost:
      if constexpr (kRequest) {
        // Exactly one Host, with a valid value (RFC 9112 3.2).
        if (++st.host_count > 1) return ParseError::kDuplicateHost;
        if (!valid_host_port(f.value, /*port_required=*/false, /*allow_empty=*/true))
          return ParseError::kBadHost;
        h.host = f.value;
        h.has_host = true;
      }
      return ParseError::kNone;
    case HeaderToken::kExpect:
      if constexpr (kRequest) on_expect(st, f.value);
      return ParseError::kNone;
    default:
      return ParseError::kNone;
  }
}

// Body framing of a request (RFC 9112 6.1, 6.3 points 3-6) and its connection semantics.
ParseError finish(HeadState& st, RequestHead& h, Method) {
  bool v11 = h.version == Version::kHttp11;
  if (v11 && st.host_count == 0) return ParseError::kMissingHost;  // RFC 9112 3.2
  if (st.te_seen) {
    if (!v11) return ParseError::kTransferEncodingInHttp10;
    // A server MAY reject CL+TE; a front end must, or it and its backend may disagree on where
    // the request ends (6.1, 11.2).
    if (st.cl_seen) return ParseError::kContentLengthWithTransferEncoding;
    if (!st.te_last_chunked) return ParseError::kTransferEncodingNotChunked;  // 6.3 point 4
    if (st.te_chunked > 1) return ParseError::kChunkedTwice;
    if (st.te_other_known || st.te_unknown) return ParseError::kUnsupportedTransferCoding;
    h.body = BodyKind::kChunked;
  } else if (st.cl_seen) {
    h.body = BodyKind::kContentLength;
  } else {
    h.body = BodyKind::kNone;  // 6.3 point 6
  }
  h.keep_alive = !st.conn_close && (v11 || st.conn_keep_alive);  // RFC 9112 9.3
  h.upgrade = v11 && st.upgrade_field && st.conn_upgrade;        // RFC 9110 7.8: ignore Upgrade in 1.0
  h.expect_continue = v11 && st.expect_continue;                 // RFC 9110 10.1.1: likewise
  h.expect_other = st.expect_other;
  return ParseError::kNone;
}

// Body framing of a response (RFC 9112 6.3 points 1-7).
ParseError finish(HeadState& st, ResponseHead& h, Method request_method) {
  bool v11 = h.version == Version::kHttp11;
  if (st.te_seen) {
    if (!v11) return ParseError::kTransferEncodingInHttp10;  // 6.1: framing is faulty
    // 6.3 point 3 lets TE override CL but calls it a likely smuggling or splitting attempt; we
    // refuse rather than forward a message the next hop may read differently.
    if (st.cl_seen) return ParseError::kContentLengthWithTransferEncoding;
    if (st.te_unknown) return ParseError::kUnsupportedTransferCoding;
    if (st.te_chunked > 1) return ParseError::kChunkedTwice;
  }
  int s = h.status;
  if (s == 101) {
    h.body = BodyKind::kTunnel;  // RFC 9110 15.2.2: the connection now speaks the new protocol
  } else if (request_method == Method::kHead || s < 200 || s == 204 || s == 304) {
    h.body = BodyKind::kNone;  // point 1
  } else if (request_method == Method::kConnect && s < 300) {
    h.body = BodyKind::kTunnel;  // point 2: CL/TE are ignored
  } else if (st.te_seen) {
    h.body = st.te_last_chunked ? BodyKind::kChunked : BodyKind::kUntilClose;  // points 3-4
    h.other_transfer_codings = st.te_other_known;
  } else if (st.cl_seen) {
    h.body = BodyKind::kContentLength;  // point 5
  } else {
    h.body = BodyKind::kUntilClose;  // point 7
  }
  h.keep_alive = !st.conn_close && (v11 || st.conn_keep_alive) && h.body != BodyKind::kUntilClose &&
                 h.body != BodyKind::kTunnel;
  h.upgrade = v11 && st.upgrade_field && st.conn_upgrade;
  return ParseError::kNone;
}

ParseResult fail(HeadState& st, ParseError e) {
  st.error = e;
  return ParseResult{ParseStatus::kError, e, 0};
}

template <class Head>
ParseError parse_start_line(std::string_view line, Head& head) {
  if constexpr (std::is_same_v<Head, RequestHead>)
    return parse_request_line(line, head);
  else
    return parse_status_line(line, head);
}

// Earlier calls validated the lines in buf[0, upto) but their views may point at bytes that have
// since moved, and `fields` may have served another parse in between: slice them again. No
// checks are needed (and none can fail); this is a few memchr-like scans over bytes already seen.
template <class Head>
void refill(const HeadState& st, Head& head, std::string_view buf, std::span<Header> fields, size_t upto) {
  size_t pos = 0, k = 0;
  bool start_line = false;
  while (pos < upto) {
    size_t cr = buf.find('\r', pos);
    std::string_view line = buf.substr(pos, cr - pos);
    pos = cr + 2;
    if (!start_line) {
      if (line.empty()) continue;  // the one skipped CRLF
      (void)parse_start_line(line, head);
      start_line = true;
      continue;
    }
    if (line.empty()) break;  // the end of a complete head
    Header& f = fields[k++];
    (void)parse_field_line(line, &f);
    f.token = lookup_header_token(f.name);
    if constexpr (std::is_same_v<Head, RequestHead>) {
      if (f.token == HeaderToken::kHost) head.host = f.value;
    }
  }
  head.headers = std::span<const Header>(fields.data(), st.n_fields);
}

template <class Head>
ParseResult run(HeadState& st, Head& head, const H1Limits& limits, std::string_view buf,
                std::span<Header> fields, Head* out, Method request_method) {
  constexpr bool kRequest = std::is_same_v<Head, RequestHead>;
  if (st.error != ParseError::kNone) return ParseResult{ParseStatus::kError, st.error, 0};
  if (buf.size() < st.scan) {  // fewer bytes than last time: not the same message; start over
    st = HeadState{};
    head = Head{};
  }
  if (fields.size() < st.n_fields) return fail(st, ParseError::kTooManyFields);
  if (st.done_at != 0) {  // already complete: the same answer until reset()
    refill(st, head, buf, fields, st.done_at);
    *out = head;
    return ParseResult{ParseStatus::kDone, ParseError::kNone, st.done_at};
  }
  // Lines before this offset were parsed by earlier calls; those from here on by this one, and
  // their views (into this buf and this fields array) are current.
  const size_t call_start = st.line_start;
  const auto* p = reinterpret_cast<const unsigned char*>(buf.data());
  // The head must end within max_head_bytes: bytes past that are never looked at.
  const size_t end = std::min(buf.size(), limits.max_head_bytes);
  size_t i = st.scan;
  for (;;) {
    // Skip to the next CR, LF or other CTL: eight bytes at a time while none is in sight (most
    // of a head is printable), then byte by byte to find which one.
    while (i + 8 <= end) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (chars::word_has_ctl(w)) break;
      i += 8;
    }
    while (i < end && !is(p[i], chars::kHeadStop)) ++i;
    if (i >= end) break;
    // RFC 9112 2.2: lines end in CRLF; we refuse bare LF and bare CR alike.
    if (p[i] == '\n') return fail(st, ParseError::kBareLf);
    if (p[i] != '\r') return fail(st, ParseError::kControlChar);
    if (i + 1 >= end) break;  // CR is the last byte so far: look again when more come
    if (p[i + 1] != '\n') return fail(st, ParseError::kBareCr);

    std::string_view line(buf.data() + st.line_start, i - st.line_start);
    st.line_start = i = i + 2;
    if (!st.start_line_done) {
      if (line.empty()) {
        // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line.
        if (kRequest && !st.skipped_empty_line) {
          st.skipped_empty_line = true;
          continue;
        }
        return fail(st, kRequest ? ParseError::kBadRequestLine : ParseError::kBadStatusLine);
      }
      if (ParseError e = parse_start_line(line, head); e != ParseError::kNone) return fail(st, e);
      st.start_line_done = true;
      continue;
    }
    if (line.empty()) {  // end of the head
      if (ParseError e = finish(st, head, request_method); e != ParseError::kNone) return fail(st, e);
      if (call_start != 0) refill(st, head, buf, fields, call_start);
      head.headers = std::span<const Header>(fields.data(), st.n_fields);
      st.scan = st.done_at = i;
      *out = head;
      return ParseResult{ParseStatus::kDone, ParseError::kNone, i};
    }
    // RFC 9112 5.2 (obs-fold) and 2.2 (whitespace between start-line and first field): refused.
    if (chars::is_ws(line[0])) return fail(st, ParseError::kObsFold);
    if (st.n_fields >= fields.size()) return fail(st, ParseError::kTooManyFields);
    Header& f = fields[st.n_fields];
    if (ParseError e = parse_field_line(line, &f); e != ParseError::kNone) return fail(st, e);
    f.token = lookup_header_token(f.name);
    ++st.n_fields;
    if (ParseError e = on_field(st, head, f); e != ParseError::kNone) return fail(st, e);
  }
  st.scan = i;
  if (buf.size() >= limits.max_head_bytes) return fail(st, ParseError::kHeadTooLarge);
  return ParseResult{ParseStatus::kNeedMore, ParseError::kNone, 0};
}

}  // namespace

std::string_view method_name(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kConnect:
      return "CONNECT";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kTrace:
      return "TRACE";
    case Method::kPatch:
      return "PATCH";
    case Method::kOther:
      return "";
  }
  return "";
}

const Header* MessageHead::find(HeaderToken t) const {
  for (const Header& h : headers)
    if (h.token == t) return &h;
  return nullptr;
}

bool connection_lists(const MessageHead& head, std::string_view name) {
  bool found = false;
  for (const Header& h : head.headers) {
    if (h.token != HeaderToken::kConnection) continue;
    for_each_element(h.value, [&](std::string_view e) { return !(found = equal_nocase(e, name)); });
    if (found) return true;
  }
  return false;
}

bool must_strip(const MessageHead& head, const Header& field) {
  if (is_hop_by_hop(field.token)) return true;
  // Host is never stripped, whatever Connection says: the request would become invalid (RFC
  // 9110 7.6.1 forbids listing end-to-end fields anyway).
  if (field.token == HeaderToken::kHost) return false;
  if (field.token != HeaderToken::kUnknown) return head.connection_options.contains(field.token);
  return head.connection_lists_unknown && connection_lists(head, field.name);
}

ParseResult RequestParser::parse(std::string_view buf, std::span<Header> fields, RequestHead* out) {
  return run(st_, head_, limits_, buf, fields, out, Method::kGet);
}

ParseResult ResponseParser::parse(std::string_view buf, std::span<Header> fields, ResponseHead* out,
                                  Method request_method) {
  return run(st_, head_, limits_, buf, fields, out, request_method);
}

ParseResult parse_request(std::string_view buf, std::span<Header> fields, RequestHead* out, H1Limits limits) {
  RequestParser p(limits);
  return p.parse(buf, fields, out);
}

ParseResult parse_response(std::string_view buf, std::span<Header> fields, ResponseHead* out,
                           Method request_method, H1Limits limits) {
  ResponseParser p(limits);
  return p.parse(buf, fields, out, request_method);
}

}  // namespace fulcrum::http
