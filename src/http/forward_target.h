// What a forward proxy reads from a request target, and whom it refuses (SPEC: Forward proxy):
// the authority of an absolute-form `http://` target (RFC 9112 3.2.2) or of a CONNECT's
// authority-form (3.2.3), split into host and port; and the listener's `acl` (deny names,
// allow_ports). Pure functions on views, no allocation after construction; any thread.
//
// ACL decisions (the SPEC is silent; Squid's `.example` differs, see below):
//  - Names compare case-insensitively, with one trailing dot ignored ("A.Example." = "a.example").
//  - "*.blocked.example" denies every name below blocked.example, at any depth
//    ("a.blocked.example", "x.y.blocked.example") but NOT "blocked.example" itself: list that
//    name too to deny it. (Squid's ".blocked.example" would match both; a wildcard that also
//    matches the bare name surprises people who expect DNS-style "*." semantics.)
//  - IP literals are matched as written ("10.0.0.1", "::1" without brackets); no CIDR.
//  - allow_ports limits CONNECT only, as the SPEC says: absolute-URI requests are plain HTTP
//    which fulcrum parses itself, so any port is allowed for them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fulcrum::config {
struct Acl;
}

namespace fulcrum::http {

constexpr size_t kMaxHostLength = 253;  // RFC 1035 2.3.4, in text form without the final dot

struct Authority {
  enum class Kind : uint8_t { kName, kIpv4, kIpv6 };
  std::string_view host;  // IPv6 literals without their brackets; a name as written
  uint16_t port = 0;
  Kind kind = Kind::kName;
};

// Parses "host[:port]" or "[v6addr][:port]" (RFC 3986 3.2.2-3.2.3). `default_port` is used when
// the port is absent or empty; 0 makes the port required (CONNECT: RFC 9110 9.3.6). Refused:
// userinfo ("user@host", RFC 9110 4.2.4), an empty host, a name with characters outside
// letters/digits/'-'/'.'/'_' or over kMaxHostLength, an IPv6 literal that inet_pton rejects (zone
// ids too), and ports that are not 1..65535 in decimal digits.
bool parse_authority(std::string_view text, uint16_t default_port, Authority* out);

enum class TargetError : uint8_t { kNone, kNotAbsolute, kScheme, kBadAuthority };

// The authority of an absolute-form target: "http://host:port/path?q" gives "host:port". The
// scheme is case-insensitive (RFC 3986 3.1); only "http" is served (kScheme for others: we do
// not originate TLS). kNotAbsolute when there is no "scheme://".
TargetError absolute_authority(std::string_view target, std::string_view* authority);

// The listener's `acl`. Built once per listener and worker.
class HostAcl {
 public:
  HostAcl() = default;
  explicit HostAcl(const config::Acl& acl);
  bool denied(std::string_view host) const;
  bool port_allowed(uint16_t port) const;

 private:
  std::vector<std::string> exact_;     // lower case, no trailing dot
  std::vector<std::string> suffixes_;  // ".blocked.example" for "*.blocked.example"
  std::vector<uint16_t> ports_;        // empty: any
};

}  // namespace fulcrum::http
