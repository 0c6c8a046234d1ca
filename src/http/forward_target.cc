// See forward_target.h. Any thread.
#include "http/forward_target.h"
#include "core/ascii.h"

#include <arpa/inet.h>

#include "config/config.h"

namespace fulcrum::http {
namespace {

using ascii::iequals;

using ascii::lower;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

// "80" -> 80; false for empty, non-digits, leading garbage, 0 or over 65535.
bool parse_port(std::string_view s, uint16_t* out) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// The port part after the host: "" or ":" (default) or ":N".
bool port_part(std::string_view rest, uint16_t default_port, uint16_t* port) {
  if (rest.empty() || rest == ":") {
    *port = default_port;
    return default_port != 0;
  }
  if (rest.front() != ':') return false;
  return parse_port(rest.substr(1), port);
}

std::string_view without_dot(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

}  // namespace

bool parse_authority(std::string_view text, uint16_t default_port, Authority* out) {
  if (text.empty() || text.find('@') != std::string_view::npos) return false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view v6 = text.substr(1, close - 1);
    char buf[64];
    in6_addr addr;
    if (v6.empty() || v6.size() >= sizeof(buf)) return false;
    // Checked before inet_pton, which would stop at a NUL and take "::\0junk" for "::".
    for (char c : v6)
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
            c == '.'))
        return false;
    v6.copy(buf, v6.size());
    buf[v6.size()] = '\0';
    if (inet_pton(AF_INET6, buf, &addr) != 1) return false;
    if (!port_part(text.substr(close + 1), default_port, &out->port)) return false;
    out->host = v6;
    out->kind = Authority::Kind::kIpv6;
    return true;
  }
  size_t colon = text.find(':');
  std::string_view host = text.substr(0, colon);
  if (!port_part(colon == std::string_view::npos ? std::string_view() : text.substr(colon), default_port,
                 &out->port))
    return false;
  if (without_dot(host).empty() || without_dot(host).size() > kMaxHostLength) return false;
  bool digits_and_dots = true;
  for (char c : host) {
    if (!name_char(c)) return false;
    if (c != '.' && (c < '0' || c > '9')) digits_and_dots = false;
  }
  out->host = host;
  out->kind = Authority::Kind::kName;
  if (digits_and_dots) {
    // All digits and dots: an IPv4 literal, or nothing (RFC 3986 3.2.2 reads "1.2.3" as a name,
    // but no DNS name is all digits and getaddrinfo would take it as a number anyway).
    char buf[16];
    in_addr addr;
    if (host.size() >= sizeof(buf)) return false;
    host.copy(buf, host.size());
    buf[host.size()] = '\0';
    if (inet_pton(AF_INET, buf, &addr) != 1) return false;
    out->kind = Authority::Kind::kIpv4;
  }
  return true;
}

TargetError absolute_authority(std::string_view target, std::string_view* authority) {
  size_t sep = target.find("://");
  if (sep == std::string_view::npos || sep == 0) return TargetError::kNotAbsolute;
  if (!iequals(target.substr(0, sep), "http")) return TargetError::kScheme;
  std::string_view rest = target.substr(sep + 3);
  *authority = rest.substr(0, rest.find_first_of("/?"));
  return authority->empty() ? TargetError::kBadAuthority : TargetError::kNone;
}

HostAcl::HostAcl(const config::Acl& acl) : ports_(acl.allow_ports) {
  for (const std::string& p : acl.deny) {
    std::string s;
    for (char c : p) s.push_back(lower(c));
    if (s.starts_with("*."))
      suffixes_.push_back(s.substr(1));  // keep the dot: ".blocked.example"
    else
      exact_.push_back(std::string(without_dot(s)));
  }
}

bool HostAcl::denied(std::string_view host) const {
  host = without_dot(host);
  for (const std::string& e : exact_)
    if (iequals(host, e)) return true;
  for (const std::string& s : suffixes_)
    if (host.size() > s.size() && iequals(host.substr(host.size() - s.size()), s)) return true;
  return false;
}

bool HostAcl::port_allowed(uint16_t port) const {
  if (ports_.empty()) return true;
  for (uint16_t p : ports_)
    if (p == port) return true;
  return false;
}

}  // namespace fulcrum::http
