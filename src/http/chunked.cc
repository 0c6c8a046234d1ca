// The chunked-coding state machine (RFC 9112 7.1): one switch per input byte outside chunk-data,
// one view per call inside it. Used by the worker thread that owns the connection.
#include "http/chunked.h"

#include <algorithm>

#include "http/char_class.h"

namespace fulcrum::http {

ChunkStep ChunkedDecoder::fail(ParseError e, size_t consumed) {
  state_ = State::kError;
  error_ = e;
  return ChunkStep{ChunkEvent::kError, consumed, {}, e};
}

ChunkStep ChunkedDecoder::decode(std::string_view in) {
  if (state_ == State::kError) return ChunkStep{ChunkEvent::kError, 0, {}, error_};
  if (state_ == State::kDone) return ChunkStep{ChunkEvent::kDone, 0, {}, ParseError::kNone};
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  constexpr size_t kNone = static_cast<size_t>(-1);
  // First trailer byte of this call: 0 when the call starts inside a trailer field line.
  size_t trailer_from = state_ >= State::kTrailerName && state_ <= State::kTrailerLf ? 0 : kNone;
  auto trailer = [&](size_t upto) {
    return ChunkStep{ChunkEvent::kTrailer, upto, in.substr(trailer_from, upto - trailer_from),
                     ParseError::kNone};
  };
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    // Bytes of the chunk line after the size, and of the trailer section, are bounded.
    if (state_ > State::kSizeStart && state_ <= State::kSizeLf && state_ != State::kSize &&
        ++line_bytes_ > limits_.max_chunk_line_bytes)
      return fail(ParseError::kChunkExtensionTooLong, i);
    if (state_ >= State::kTrailerStart && state_ <= State::kFinalLf &&
        ++trailer_bytes_ > limits_.max_trailer_bytes)
      return fail(ParseError::kTrailerTooLarge, i);
    switch (state_) {
      // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG (7.1).
      case State::kSizeStart:
        if (!chars::is_hex(c)) return fail(ParseError::kBadChunkSize, i);
        remaining_ = chars::hex_value(c);
        size_digits_ = 1;
        line_bytes_ = 0;
        state_ = State::kSize;
        break;
      case State::kSize:
        if (chars::is_hex(c)) {
          // 16 digits fill 64 bits; a 17th would overflow (7.1: "anticipate potentially large
          // hexadecimal numerals and prevent parsing errors due to integer conversion overflows").
          if (++size_digits_ > 16) return fail(ParseError::kChunkSizeTooLong, i);
          remaining_ = remaining_ << 4 | static_cast<uint64_t>(chars::hex_value(c));
          break;
        }
        if (++line_bytes_ > limits_.max_chunk_line_bytes) return fail(ParseError::kChunkExtensionTooLong, i);
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == ';')
          state_ = State::kExtNameStart;
        else if (chars::is_ws(c))
          state_ = State::kSizeWs;
        else
          return fail(ParseError::kBadChunkSize, i);
        break;
      // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (7.1.1). BWS
      // may only precede ';' or '=' or follow them, never end the line.
      case State::kSizeWs:
        if (c == ';')
          state_ = State::kExtNameStart;
        else if (!chars::is_ws(c))
          return fail(ParseError::kBadChunkSize, i);
        break;
      case State::kExtNameStart:
        if (chars::is_tchar(c))
          state_ = State::kExtName;
        else if (!chars::is_ws(c))
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtName:
        if (chars::is_tchar(c)) break;
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == '=')
          state_ = State::kExtValueStart;
        else if (c == ';')
          state_ = State::kExtNameStart;
        else if (chars::is_ws(c))
          state_ = State::kExtNameWs;
        else
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtNameWs:
        if (c == '=')
          state_ = State::kExtValueStart;
        else if (c == ';')
          state_ = State::kExtNameStart;
        else if (!chars::is_ws(c))
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtValueStart:
        if (chars::is_tchar(c))
          state_ = State::kExtToken;
        else if (c == '"')
          state_ = State::kExtQuoted;
        else if (!chars::is_ws(c))
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtToken:
        if (chars::is_tchar(c)) break;
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == ';')
          state_ = State::kExtNameStart;
        else if (chars::is_ws(c))
          state_ = State::kExtValueWs;
        else
          return fail(ParseError::kBadChunkExtension, i);
        break;
      // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 5.6.4).
      case State::kExtQuoted:
        if (c == '"')
          state_ = State::kExtValueEnd;
        else if (c == '\\')
          state_ = State::kExtQuotedPair;
        else if (!chars::is(c, chars::kQdtext))
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtQuotedPair:  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        if (!chars::is(c, chars::kFieldByte)) return fail(ParseError::kBadChunkExtension, i);
        state_ = State::kExtQuoted;
        break;
      case State::kExtValueEnd:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == ';')
          state_ = State::kExtNameStart;
        else if (chars::is_ws(c))
          state_ = State::kExtValueWs;
        else
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kExtValueWs:
        if (c == ';')
          state_ = State::kExtNameStart;
        else if (!chars::is_ws(c))
          return fail(ParseError::kBadChunkExtension, i);
        break;
      case State::kSizeLf:
        if (c != '\n') return fail(ParseError::kBadChunkSize, i);  // bare CR
        if (remaining_ == 0) {                                     // last-chunk = 1*("0") [ chunk-ext ] CRLF
          trailer_bytes_ = 0;
          state_ = State::kTrailerStart;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - i));
        remaining_ -= take;
        data_bytes_ += take;
        if (remaining_ == 0) state_ = State::kDataCr;
        return ChunkStep{ChunkEvent::kData, i + take, in.substr(i, take), ParseError::kNone};
      }
      case State::kDataCr:
        if (c != '\r') return fail(ParseError::kBadChunkEnd, i);
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail(ParseError::kBadChunkEnd, i);
        state_ = State::kSizeStart;
        break;
      // trailer-section = *( field-line CRLF ), then CRLF (7.1.2); field lines as in 5.
      case State::kTrailerStart:
        if (c == '\r') {
          if (trailer_from != kNone) {
            --trailer_bytes_;  // counted again on the next call
            return trailer(i);
          }
          state_ = State::kFinalLf;
        } else if (chars::is_tchar(c)) {
          if (trailer_from == kNone) trailer_from = i;
          state_ = State::kTrailerName;
        } else {
          return fail(ParseError::kBadTrailer, i);  // obs-fold, empty name, CTL, bare LF
        }
        break;
      case State::kTrailerName:
        if (c == ':')
          state_ = State::kTrailerValue;
        else if (!chars::is_tchar(c))
          return fail(ParseError::kBadTrailer, i);
        break;
      case State::kTrailerValue:
        if (c == '\r')
          state_ = State::kTrailerLf;
        else if (!chars::is(c, chars::kFieldByte))
          return fail(ParseError::kBadTrailer, i);
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail(ParseError::kBadTrailer, i);
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return fail(ParseError::kBadTrailer, i);
        state_ = State::kDone;
        return ChunkStep{ChunkEvent::kDone, i + 1, {}, ParseError::kNone};
      case State::kDone:
      case State::kError:
        break;  // handled above
    }
    ++i;
  }
  if (trailer_from != kNone) return trailer(n);
  return ChunkStep{ChunkEvent::kNeedMore, n, {}, ParseError::kNone};
}

}  // namespace fulcrum::http
