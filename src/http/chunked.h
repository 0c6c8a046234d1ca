// ChunkedDecoder: removes the chunked transfer coding (RFC 9112 7.1) from a body fed in pieces
// split anywhere. A byte-level state machine: it reports chunk data and trailer bytes as views
// into the input it was given, never copies, allocates or throws. One per message being read,
// used only by the worker thread that owns the connection.
//
//   ChunkedDecoder dec;
//   while (!in.empty()) {
//     ChunkStep s = dec.decode(in);
//     in.remove_prefix(s.consumed);
//     switch (s.event) {
//       case ChunkEvent::kData:    forward s.bytes; break;       // a piece of chunk-data
//       case ChunkEvent::kTrailer: keep or drop s.bytes; break;  // raw trailer field lines
//       case ChunkEvent::kNeedMore: read more (everything given was consumed); break;
//       case ChunkEvent::kDone:    the body ended; `in` now starts the next message; break;
//       case ChunkEvent::kError:   refuse (400 / 502) and close; break;
//     }
//   }
//
// Strictness: chunk-size is 1..16 HEXDIG (more would overflow 64 bits); chunk extensions follow
// RFC 9112 7.1.1 exactly (BWS ";" BWS token [BWS "=" BWS (token / quoted-string)]), so "1 \r\n"
// (whitespace not followed by ';') is refused; every line ends in CRLF (no bare CR or LF); the
// CRLF after chunk-data is required; trailer field lines are checked like header lines (token
// name, ':' right after it, no obs-fold, no CTL but HTAB). Trailer names are not interpreted.
// Like data, trailer bytes are reported as they pass, so a later byte of the section can still
// turn out invalid (kError): a proxy forwarding trailers must then abort the message.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/parse_error.h"

namespace fulcrum::http {

struct ChunkedLimits {
  // Bytes of one chunk line after the size: extensions carry no meaning to us, and an unbounded
  // line lets a peer make us spin on bytes that forward nothing.
  size_t max_chunk_line_bytes = 4096;
  size_t max_trailer_bytes = 32 * 1024;  // whole trailer section, like a head
};

enum class ChunkEvent : uint8_t { kNeedMore, kData, kTrailer, kDone, kError };

struct ChunkStep {
  ChunkEvent event = ChunkEvent::kNeedMore;
  size_t consumed = 0;     // bytes of the input used; kData/kTrailer bytes are its last bytes
  std::string_view bytes;  // kData: chunk data; kTrailer: trailer field lines with their CRLFs
  ParseError error = ParseError::kNone;
};

class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(ChunkedLimits limits = {}) : limits_(limits) {}

  // Decodes from the start of `in` up to the first event. kNeedMore means all of `in` was taken
  // in; kDone and kError repeat (with consumed 0) until reset().
  ChunkStep decode(std::string_view in);
  void reset() { *this = ChunkedDecoder(limits_); }

  bool done() const { return state_ == State::kDone; }
  uint64_t data_bytes() const { return data_bytes_; }  // chunk data decoded so far

 private:
  enum class State : uint8_t {
    kSizeStart,      // first HEXDIG of chunk-size
    kSize,           // more HEXDIG, BWS, ';' or CR
    kSizeWs,         // BWS after the size: must lead to ';'
    kExtNameStart,   // after ';': BWS then the extension name
    kExtName,        // in the name
    kExtNameWs,      // BWS after the name: '=' or ';' next
    kExtValueStart,  // after '=': BWS then token or quoted-string
    kExtToken,       // in a token value
    kExtQuoted,      // in a quoted-string
    kExtQuotedPair,  // after '\' in a quoted-string
    kExtValueEnd,    // after the closing quote
    kExtValueWs,     // BWS after a value: ';' next
    kSizeLf,         // after the CR ending the chunk line
    kData,           // chunk-data, remaining_ bytes to go
    kDataCr,         // CR after chunk-data
    kDataLf,         // LF after chunk-data
    kTrailerStart,   // start of a trailer line, or the final CRLF
    kTrailerName,    // in a trailer field name
    kTrailerValue,   // in its value
    kTrailerLf,      // after its CR
    kFinalLf,        // after the final CR
    kDone,
    kError,
  };

  ChunkStep fail(ParseError e, size_t consumed);

  ChunkedLimits limits_;
  State state_ = State::kSizeStart;
  ParseError error_ = ParseError::kNone;
  uint8_t size_digits_ = 0;
  uint64_t remaining_ = 0;    // chunk-size being read, then chunk-data still to come
  size_t line_bytes_ = 0;     // bytes of the chunk line after the size
  size_t trailer_bytes_ = 0;  // bytes of the trailer section so far
  uint64_t data_bytes_ = 0;
};

}  // namespace fulcrum::http
