// Interned header names (h2o's token.h idea): the parser maps each field name it sees to a
// HeaderToken once, so later checks ("is it hop-by-hop?", "is it Host?") are a compare or a bit
// test, never a string compare. Constant tables; any thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fulcrum::http {

// Flags of a token.
enum : uint8_t {
  kTokenHopByHop = 1 << 0,     // removed by a proxy before forwarding (RFC 9110 7.6.1, plus
                               // Proxy-Connection, Keep-Alive, TE, Trailer, Proxy-Auth* and
                               // HTTP2-Settings (RFC 7540 3.2.1) as every proxy treats them)
  kTokenFraming = 1 << 1,      // decides body framing: the proxy regenerates it, never copies it
  kTokenH2Forbidden = 1 << 2,  // connection-specific; malformed in HTTP/2 (RFC 9113 8.2.2)
};

// X(enumerator, canonical name, flags). Add a row to intern a new name; the order is the enum's.
#define FULCRUM_HEADER_TOKENS(X)                                                                \
  X(kConnection, "Connection", kTokenHopByHop | kTokenH2Forbidden)                              \
  X(kKeepAlive, "Keep-Alive", kTokenHopByHop | kTokenH2Forbidden)                               \
  X(kProxyConnection, "Proxy-Connection", kTokenHopByHop | kTokenH2Forbidden)                   \
  X(kTe, "TE", kTokenHopByHop)                                                                  \
  X(kTrailer, "Trailer", kTokenHopByHop)                                                        \
  X(kTransferEncoding, "Transfer-Encoding", kTokenHopByHop | kTokenFraming | kTokenH2Forbidden) \
  X(kUpgrade, "Upgrade", kTokenHopByHop | kTokenH2Forbidden)                                    \
  X(kProxyAuthorization, "Proxy-Authorization", kTokenHopByHop)                                 \
  X(kProxyAuthenticate, "Proxy-Authenticate", kTokenHopByHop)                                   \
  X(kHttp2Settings, "HTTP2-Settings", kTokenHopByHop | kTokenH2Forbidden)                       \
  X(kContentLength, "Content-Length", kTokenFraming)                                            \
  X(kHost, "Host", 0)                                                                           \
  X(kExpect, "Expect", 0)                                                                       \
  X(kCookie, "Cookie", 0)                                                                       \
  X(kSetCookie, "Set-Cookie", 0)                                                                \
  X(kAuthorization, "Authorization", 0)                                                         \
  X(kContentType, "Content-Type", 0)                                                            \
  X(kContentEncoding, "Content-Encoding", 0)                                                    \
  X(kContentLanguage, "Content-Language", 0)                                                    \
  X(kContentRange, "Content-Range", 0)                                                          \
  X(kContentDisposition, "Content-Disposition", 0)                                              \
  X(kAccept, "Accept", 0)                                                                       \
  X(kAcceptEncoding, "Accept-Encoding", 0)                                                      \
  X(kAcceptLanguage, "Accept-Language", 0)                                                      \
  X(kAcceptRanges, "Accept-Ranges", 0)                                                          \
  X(kUserAgent, "User-Agent", 0)                                                                \
  X(kReferer, "Referer", 0)                                                                     \
  X(kOrigin, "Origin", 0)                                                                       \
  X(kCacheControl, "Cache-Control", 0)                                                          \
  X(kPragma, "Pragma", 0)                                                                       \
  X(kExpires, "Expires", 0)                                                                     \
  X(kAge, "Age", 0)                                                                             \
  X(kDate, "Date", 0)                                                                           \
  X(kETag, "ETag", 0)                                                                           \
  X(kLastModified, "Last-Modified", 0)                                                          \
  X(kIfModifiedSince, "If-Modified-Since", 0)                                                   \
  X(kIfUnmodifiedSince, "If-Unmodified-Since", 0)                                               \
  X(kIfNoneMatch, "If-None-Match", 0)                                                           \
  X(kIfMatch, "If-Match", 0)                                                                    \
  X(kIfRange, "If-Range", 0)                                                                    \
  X(kRange, "Range", 0)                                                                         \
  X(kVary, "Vary", 0)                                                                           \
  X(kVia, "Via", 0)                                                                             \
  X(kLocation, "Location", 0)                                                                   \
  X(kServer, "Server", 0)                                                                       \
  X(kRetryAfter, "Retry-After", 0)                                                              \
  X(kWwwAuthenticate, "WWW-Authenticate", 0)                                                    \
  X(kStrictTransportSecurity, "Strict-Transport-Security", 0)                                   \
  X(kAltSvc, "Alt-Svc", 0)                                                                      \
  X(kForwarded, "Forwarded", 0)                                                                 \
  X(kXForwardedFor, "X-Forwarded-For", 0)                                                       \
  X(kXForwardedProto, "X-Forwarded-Proto", 0)                                                   \
  X(kXForwardedHost, "X-Forwarded-Host", 0)                                                     \
  X(kXRealIp, "X-Real-IP", 0)                                                                   \
  X(kXRequestId, "X-Request-ID", 0)                                                             \
  X(kXCache, "X-Cache", 0)                                                                      \
  X(kSecWebSocketKey, "Sec-WebSocket-Key", 0)                                                   \
  X(kSecWebSocketAccept, "Sec-WebSocket-Accept", 0)                                             \
  X(kSecWebSocketVersion, "Sec-WebSocket-Version", 0)                                           \
  X(kSecWebSocketProtocol, "Sec-WebSocket-Protocol", 0)

enum class HeaderToken : uint8_t {
  kUnknown = 0,
#define FULCRUM_TOKEN_ENUM(e, name, flags) e,
  FULCRUM_HEADER_TOKENS(FULCRUM_TOKEN_ENUM)
#undef FULCRUM_TOKEN_ENUM
      kCount
};

inline constexpr size_t kHeaderTokenCount = static_cast<size_t>(HeaderToken::kCount);

// The token for a field name, compared case-insensitively (RFC 9110 5.1); kUnknown when the name
// is not interned. No allocation: one hash of the name and usually one compare.
HeaderToken lookup_header_token(std::string_view name);

// Canonical spelling ("Content-Length"); empty for kUnknown.
std::string_view header_token_name(HeaderToken t);
// The name in lower case ("content-length"), as HTTP/2 sends it; empty for kUnknown.
std::string_view header_token_lower_name(HeaderToken t);
uint8_t header_token_flags(HeaderToken t);
inline bool is_hop_by_hop(HeaderToken t) { return header_token_flags(t) & kTokenHopByHop; }

// A set of tokens, e.g. the header names a Connection field lists. Fixed size, no allocation.
class TokenSet {
 public:
  constexpr void add(HeaderToken t) { bits_[index(t) / 64] |= uint64_t{1} << (index(t) % 64); }
  constexpr bool contains(HeaderToken t) const { return bits_[index(t) / 64] >> (index(t) % 64) & 1; }
  constexpr bool empty() const { return (bits_[0] | bits_[1]) == 0; }
  constexpr bool operator==(const TokenSet&) const = default;

 private:
  static constexpr size_t index(HeaderToken t) { return static_cast<size_t>(t); }
  static_assert(kHeaderTokenCount <= 128, "TokenSet holds 128 tokens; widen it");
  uint64_t bits_[2] = {0, 0};
};

}  // namespace fulcrum::http
