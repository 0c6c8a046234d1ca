// What the proxy changes in the heads it forwards (SPEC: HTTP behaviour; RFC 9110 7.6): hop-by-hop
// fields out, framing regenerated, X-Forwarded-For/Proto/Host and Via added on requests, the
// sticky cookie and our Connection field added on responses. Writes into a Buffer from views of
// the parsed head; never allocates. Any thread.
#pragma once
#include <cstdint>
#include <string_view>

#include "core/buffer.h"
#include "http/h1_parser.h"

namespace fulcrum::http {

// Appends text and numbers to a Buffer, remembering whether everything fit.
struct Appender {
  Buffer& out;
  bool ok = true;
  Appender& operator<<(std::string_view s) {
    ok = ok && out.append(s);
    return *this;
  }
  Appender& operator<<(uint64_t v);
};

struct RequestForward {
  std::string_view path;           // origin-form path (absolute-form targets lose scheme and authority)
  std::string_view query;          // without '?'
  bool has_query = false;          // the target had a '?', even with nothing after it
  std::string_view host;           // Host and X-Forwarded-Host: the client's, or the authority
  std::string_view fallback_host;  // Host for a request that names none (HTTP/1.0)
  bool replace_host = false;       // absolute-form: `host` (the target's authority) replaces the
                                   // client's Host field (RFC 9112 3.2.2)
  std::string_view client_ip;      // appended to X-Forwarded-For
  bool https = false;              // X-Forwarded-Proto
  bool strip_expect = false;       // we answer "100-continue" ourselves (see exchange.cc)
  bool strip_conditionals = false; // the cache fetches whole responses: If-None-Match and
                                   // If-Modified-Since of the client are left out
  std::string_view extra_fields;   // complete field lines added (the cache's validators)
};

// The request head as it goes upstream: always HTTP/1.1, keep-alive (no Connection field but for
// Upgrade), chunked framing regenerated. False if `out` cannot hold it.
bool write_request_head(Buffer& out, const RequestHead& head, const RequestForward& f);

struct ResponseForward {
  bool keep_alive = true;        // false: "Connection: close"
  bool client_http10 = false;    // 1.0 keep-alive needs saying so
  bool dechunk = false;          // chunked body sent to a 1.0 client as bare data (close-delimited)
  std::string_view cookie_name;  // sticky cookie to set; empty for none
  std::string_view cookie_value;
  std::string_view extra_fields;  // complete field lines added ("X-Cache: MISS\r\n")
};

// A final response head for the client. False if `out` cannot hold it.
bool write_response_head(Buffer& out, const ResponseHead& head, const ResponseForward& f);
// A 1xx interim response (not 101) for an HTTP/1.1 client (RFC 9110 15.2).
bool write_interim_head(Buffer& out, const ResponseHead& head);

}  // namespace fulcrum::http
