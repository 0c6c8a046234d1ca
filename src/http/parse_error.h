// ParseError: why the HTTP/1 codec (head parser, chunked decoder) refused a message, with the
// status code a server answers and a short reason code for counters and logs. Plain values; any
// thread.
#pragma once
#include <cstdint>
#include <string_view>

namespace fulcrum::http {

enum class ParseError : uint8_t {
  kNone = 0,
  // Start line (RFC 9112 3, 4).
  kBadRequestLine,      // missing parts, extra SP, more than one leading empty line
  kBadMethod,           // method is not a token (RFC 9110 9.1)
  kBadTarget,           // CTL, SP, '#', 8-bit byte, or a form the method does not allow (RFC 9112 3.2)
  kBadVersion,          // not "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3)
  kUnsupportedVersion,  // well-formed but not HTTP/1.0 or HTTP/1.1: 505
  kHttp2Preface,        // "PRI * HTTP/2.0": an h2 prior-knowledge client on an h1 port: 505
  kBadStatusLine,       // response: missing parts, extra SP
  kBadStatusCode,       // response: not 3 digits in 100..599 (RFC 9110 15)
  // Bytes and lines (RFC 9112 2.2).
  kBareCr,       // CR not followed by LF
  kBareLf,       // LF not preceded by CR (we do not take the 2.2 bare-LF leniency)
  kControlChar,  // NUL or another CTL (not HTAB) or DEL anywhere in the head
  // Field lines (RFC 9112 5).
  kObsFold,           // a field line starting with SP/HTAB (RFC 9112 5.2)
  kSpaceBeforeColon,  // "Name :" (RFC 9112 5.1)
  kEmptyFieldName,    // ": value"
  kBadFieldName,      // a non-token byte in the name, or no colon
  // Limits: 431.
  kHeadTooLarge,   // the head did not end within H1Limits::max_head_bytes
  kTooManyFields,  // more field lines than the caller's header array holds
  // Framing (RFC 9112 6).
  kBadContentLength,                   // not 1*DIGIT, empty list element, or over 2^64-1
  kConflictingContentLength,           // several Content-Length values that differ (RFC 9110 8.6)
  kContentLengthWithTransferEncoding,  // both present: the request-smuggling vector (RFC 9112 6.1)
  kBadTransferEncoding,                // not a list of plain tokens
  kTransferEncodingNotChunked,         // request whose final coding is not chunked (RFC 9112 6.3 p4)
  kChunkedTwice,                       // chunked applied more than once (RFC 9112 6.1)
  kTransferEncodingInHttp10,           // faulty framing by definition (RFC 9112 6.1, last paragraph)
  kUnsupportedTransferCoding,          // request: a coding other than chunked: 501 (RFC 9112 6.1)
  // Request semantics.
  kMissingHost,    // HTTP/1.1 request without Host (RFC 9112 3.2)
  kDuplicateHost,  // more than one Host line (RFC 9112 3.2)
  kBadHost,        // Host value is not uri-host [":" port]
  kBadConnection,  // Connection is not a list of tokens (RFC 9110 7.6.1)
  // Chunked body (RFC 9112 7.1).
  kBadChunkSize,           // not 1*HEXDIG, or junk after it
  kChunkSizeTooLong,       // more than 16 hex digits: would overflow 64 bits
  kBadChunkExtension,      // chunk-ext grammar (RFC 9112 7.1.1)
  kChunkExtensionTooLong,  // chunk line longer than ChunkedLimits::max_chunk_line_bytes
  kBadChunkEnd,            // chunk-data not followed by CRLF
  kBadTrailer,             // trailer field line grammar (RFC 9112 7.1.2)
  kTrailerTooLarge,        // trailer section over ChunkedLimits::max_trailer_bytes
};

// Stable short name for counters and logs: "cl_te_conflict", "obs_fold", ...
std::string_view parse_error_name(ParseError e);

// The status a server sends for a refused request: 400, 431, 501 or 505 (0 for kNone). A refused
// response from a backend is answered to the client with 502 whatever this says.
int parse_error_status(ParseError e);

}  // namespace fulcrum::http
