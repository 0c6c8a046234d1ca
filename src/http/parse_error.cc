// Names and status codes of ParseError. Constant tables; any thread.
#include "http/parse_error.h"

namespace fulcrum::http {

std::string_view parse_error_name(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "none";
    case ParseError::kBadRequestLine:
      return "bad_request_line";
    case ParseError::kBadMethod:
      return "bad_method";
    case ParseError::kBadTarget:
      return "bad_target";
    case ParseError::kBadVersion:
      return "bad_version";
    case ParseError::kUnsupportedVersion:
      return "unsupported_version";
    case ParseError::kHttp2Preface:
      return "http2_preface";
    case ParseError::kBadStatusLine:
      return "bad_status_line";
    case ParseError::kBadStatusCode:
      return "bad_status_code";
    case ParseError::kBareCr:
      return "bare_cr";
    case ParseError::kBareLf:
      return "bare_lf";
    case ParseError::kControlChar:
      return "control_char";
    case ParseError::kObsFold:
      return "obs_fold";
    case ParseError::kSpaceBeforeColon:
      return "space_before_colon";
    case ParseError::kEmptyFieldName:
      return "empty_field_name";
    case ParseError::kBadFieldName:
      return "bad_field_name";
    case ParseError::kHeadTooLarge:
      return "head_too_large";
    case ParseError::kTooManyFields:
      return "too_many_fields";
    case ParseError::kBadContentLength:
      return "bad_content_length";
    case ParseError::kConflictingContentLength:
      return "conflicting_content_length";
    case ParseError::kContentLengthWithTransferEncoding:
      return "cl_te_conflict";
    case ParseError::kBadTransferEncoding:
      return "bad_transfer_encoding";
    case ParseError::kTransferEncodingNotChunked:
      return "te_not_chunked";
    case ParseError::kChunkedTwice:
      return "chunked_twice";
    case ParseError::kTransferEncodingInHttp10:
      return "te_in_http10";
    case ParseError::kUnsupportedTransferCoding:
      return "unsupported_transfer_coding";
    case ParseError::kMissingHost:
      return "missing_host";
    case ParseError::kDuplicateHost:
      return "duplicate_host";
    case ParseError::kBadHost:
      return "bad_host";
    case ParseError::kBadConnection:
      return "bad_connection";
    case ParseError::kBadChunkSize:
      return "bad_chunk_size";
    case ParseError::kChunkSizeTooLong:
      return "chunk_size_too_long";
    case ParseError::kBadChunkExtension:
      return "bad_chunk_extension";
    case ParseError::kChunkExtensionTooLong:
      return "chunk_extension_too_long";
    case ParseError::kBadChunkEnd:
      return "bad_chunk_end";
    case ParseError::kBadTrailer:
      return "bad_trailer";
    case ParseError::kTrailerTooLarge:
      return "trailer_too_large";
  }
  return "unknown";
}

int parse_error_status(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return 0;
    case ParseError::kHeadTooLarge:
    case ParseError::kTooManyFields:
      return 431;  // RFC 6585 5
    case ParseError::kUnsupportedTransferCoding:
      return 501;  // RFC 9112 6.1
    case ParseError::kUnsupportedVersion:
    case ParseError::kHttp2Preface:
      return 505;  // RFC 9110 15.6.6
    default:
      return 400;
  }
}

}  // namespace fulcrum::http
