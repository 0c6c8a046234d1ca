#include "http/forward.h"

#include <charconv>

namespace fulcrum::http {

Appender& Appender::operator<<(uint64_t v) {
  char buf[24];  // to_chars: no locale, no format parsing (snprintf was a visible cost per head)
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return *this << std::string_view(buf, static_cast<size_t>(r.ptr - buf));
}

namespace {

// Every value of the fields with token `t`, comma-joined, each followed by ", " (RFC 9110 5.3:
// several field lines of one name are one list).
void append_list(Appender& a, const MessageHead& head, HeaderToken t) {
  for (const Header& h : head.headers)
    if (h.token == t && !h.value.empty()) a << h.value << ", ";
}

}  // namespace

bool write_request_head(Buffer& out, const RequestHead& head, const RequestForward& f) {
  Appender a{out};
  a << head.method_text << " " << f.path;
  if (f.has_query) a << "?" << f.query;
  a << " HTTP/1.1\r\n";
  for (const Header& h : head.headers) {
    if (must_strip(head, h)) continue;
    switch (h.token) {
      // Ours replace what the client claims (X-Forwarded-For and Via are appended to below).
      case HeaderToken::kXForwardedFor:
      case HeaderToken::kVia:
      case HeaderToken::kXForwardedProto:
      case HeaderToken::kXForwardedHost:
        continue;
      case HeaderToken::kExpect:
        if (f.strip_expect) continue;
        break;
      case HeaderToken::kIfNoneMatch:
      case HeaderToken::kIfModifiedSince:
        if (f.strip_conditionals) continue;
        break;
      case HeaderToken::kContentLength:  // one field, from the value the parser checked
        continue;
      case HeaderToken::kHost:
        if (f.replace_host) continue;
        break;
      default:
        break;
    }
    a << h.name << ": " << h.value << "\r\n";
  }
  if (!head.has_host || f.replace_host)
    a << "Host: " << (f.host.empty() ? f.fallback_host : f.host) << "\r\n";
  if (head.body == BodyKind::kChunked) a << "Transfer-Encoding: chunked\r\n";
  if (head.body == BodyKind::kContentLength) a << "Content-Length: " << head.content_length << "\r\n";
  if (head.upgrade) {
    const Header* up = head.find(HeaderToken::kUpgrade);
    a << "Connection: Upgrade\r\nUpgrade: " << (up ? up->value : std::string_view("websocket")) << "\r\n";
  }
  a << f.extra_fields << "X-Forwarded-For: ";
  append_list(a, head, HeaderToken::kXForwardedFor);
  a << f.client_ip << "\r\nX-Forwarded-Proto: " << (f.https ? "https" : "http") << "\r\n";
  if (!f.host.empty()) a << "X-Forwarded-Host: " << f.host << "\r\n";
  a << "Via: ";
  append_list(a, head, HeaderToken::kVia);
  a << (head.version == Version::kHttp10 ? "1.0 fulcrum" : "1.1 fulcrum") << "\r\n\r\n";
  return a.ok;
}

bool write_response_head(Buffer& out, const ResponseHead& head, const ResponseForward& f) {
  Appender a{out};
  a << "HTTP/1.1 " << static_cast<uint64_t>(head.status) << " " << head.reason << "\r\n";
  // Codings besides chunked (gzip, ...) must reach the client as they are: their fields go on
  // verbatim. The caller refuses them for a 1.0 client (which cannot take Transfer-Encoding).
  bool keep_te = head.other_transfer_codings && !f.dechunk;
  bool length_sent = false;
  for (const Header& h : head.headers) {
    if (keep_te && h.token == HeaderToken::kTransferEncoding) {
      a << h.name << ": " << h.value << "\r\n";
      continue;
    }
    if (must_strip(head, h)) continue;
    // Copied, not regenerated (a response to HEAD has one but no body), but once: the parser
    // let several through only if they agree.
    if (h.token == HeaderToken::kContentLength) {
      if (length_sent) continue;
      length_sent = true;
    }
    a << h.name << ": " << h.value << "\r\n";
  }
  if (head.body == BodyKind::kChunked && !f.dechunk && !keep_te) a << "Transfer-Encoding: chunked\r\n";
  a << f.extra_fields;
  if (!f.cookie_name.empty())
    a << "Set-Cookie: " << f.cookie_name << "=" << f.cookie_value << "; Path=/; HttpOnly\r\n";
  if (head.status == 101) {
    const Header* up = head.find(HeaderToken::kUpgrade);
    a << "Connection: Upgrade\r\nUpgrade: " << (up ? up->value : std::string_view("websocket")) << "\r\n";
  } else if (!f.keep_alive) {
    a << "Connection: close\r\n";
  } else if (f.client_http10) {
    a << "Connection: keep-alive\r\n";
  }
  a << "\r\n";
  return a.ok;
}

bool write_interim_head(Buffer& out, const ResponseHead& head) {
  Appender a{out};
  a << "HTTP/1.1 " << static_cast<uint64_t>(head.status) << " " << head.reason << "\r\n";
  for (const Header& h : head.headers)
    if (!must_strip(head, h)) a << h.name << ": " << h.value << "\r\n";
  a << "\r\n";
  return a.ok;
}

}  // namespace fulcrum::http
