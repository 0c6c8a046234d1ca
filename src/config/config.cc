// Helpers of the plain Config value (loader.cc builds it): error text, lookups, and the small
// parsers for durations, sizes and CIDRs that the loader and other modules' checks share.
// Pure functions on values: any thread.
#include "config/config.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <limits>

namespace fulcrum::config {
namespace {

// Reads a whole unsigned decimal prefix of `text`; the rest (the unit) is left in `*rest`.
bool leading_number(std::string_view text, uint64_t* value, std::string_view* rest) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  if (ec != std::errc() || p == text.data()) return false;
  *rest = text.substr(static_cast<size_t>(p - text.data()));
  return true;
}

}  // namespace

std::string ConfigError::to_string() const {
  return file + ":" + std::to_string(mark.line) + ":" + std::to_string(mark.col) + ": " + message;
}

const Backend* Config::find_backend(std::string_view name) const {
  for (auto& b : backends)
    if (b.name == name) return &b;
  return nullptr;
}

const char* protocol_name(Protocol p) {
  switch (p) {
    case Protocol::kHttp:
      return "http";
    case Protocol::kHttps:
      return "https";
    case Protocol::kTcp:
      return "tcp";
    case Protocol::kUdp:
      return "udp";
    case Protocol::kDns:
      return "dns";
    case Protocol::kForwardProxy:
      return "forward_proxy";
  }
  return "?";
}

// Whole numbers only, as HAProxy and nginx take them: "1.5s" would raise the question of
// rounding, and every sensible value can be written in ms. A bare 0 needs no unit.
bool parse_duration(std::string_view text, Millis* out) {
  uint64_t n = 0;
  std::string_view unit;
  if (!leading_number(text, &n, &unit)) return false;
  uint64_t scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m")
    scale = 60 * 1000;
  else if (unit == "h")
    scale = 60 * 60 * 1000;
  else if (unit.empty() && n == 0)
    scale = 1;
  else
    return false;
  // Millis holds int64; refuse rather than wrap (a value this large is a typo anyway).
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / scale) return false;
  *out = Millis(static_cast<int64_t>(n * scale));
  return true;
}

// KiB/MiB/GiB are powers of 1024; KB/MB/GB are powers of 1000, as the SI and IEC prefixes say.
// A bare number is bytes.
bool parse_size(std::string_view text, uint64_t* out) {
  uint64_t n = 0;
  std::string_view unit;
  if (!leading_number(text, &n, &unit)) return false;
  struct Unit {
    std::string_view name;
    uint64_t scale;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1000ull},
      {"kB", 1000ull},
      {"MB", 1000ull * 1000},
      {"GB", 1000ull * 1000 * 1000},
      {"TB", 1000ull * 1000 * 1000 * 1000},
      {"KiB", 1ull << 10},
      {"MiB", 1ull << 20},
      {"GiB", 1ull << 30},
      {"TiB", 1ull << 40},
  };
  for (const Unit& u : kUnits) {
    if (u.name != unit) continue;
    if (n > std::numeric_limits<uint64_t>::max() / u.scale) return false;
    *out = n * u.scale;
    return true;
  }
  return false;
}

// Host bits are cleared rather than refused (as nginx does): "192.0.2.7/24" can only mean the
// /24 that holds it, and contains() then compares whole bytes without masking the network.
bool parse_cidr(std::string_view text, Cidr* out) {
  std::string_view ip = text;
  std::string_view prefix_text;
  auto slash = text.find('/');
  if (slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    prefix_text = text.substr(slash + 1);
    if (prefix_text.empty()) return false;
  }
  if (ip.empty() || ip.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN] = {0};
  std::memcpy(buf, ip.data(), ip.size());
  Cidr c;
  int max_prefix = 0;
  if (inet_pton(AF_INET, buf, c.bytes) == 1) {
    c.family = AF_INET;
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, buf, c.bytes) == 1) {
    c.family = AF_INET6;
    max_prefix = 128;
  } else {
    return false;
  }
  c.prefix = max_prefix;
  if (!prefix_text.empty()) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), p);
    if (ec != std::errc() || end != prefix_text.data() + prefix_text.size() || p > unsigned(max_prefix))
      return false;
    c.prefix = static_cast<int>(p);
  }
  int nbytes = max_prefix / 8;
  for (int i = 0; i < nbytes; ++i) {
    int bits = c.prefix - i * 8;  // network bits in this byte
    if (bits >= 8) continue;
    c.bytes[i] = bits <= 0 ? 0 : static_cast<unsigned char>(c.bytes[i] & (0xFF << (8 - bits)));
  }
  c.text = std::string(text);
  *out = c;
  return true;
}

// A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d, so an IPv4 CIDR must match those
// too, or `deny: [192.0.2.0/24]` would be bypassed by the same client over an [::] listener.
bool Cidr::contains(const SocketAddress& addr) const {
  static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  std::string_view ip = addr.ip_bytes();
  unsigned char mapped[16];
  if (family == AF_INET && ip.size() == 16) {
    if (std::memcmp(ip.data(), kMappedPrefix, 12) != 0) return false;
    ip = ip.substr(12);
  } else if (family == AF_INET6 && ip.size() == 4) {
    std::memcpy(mapped, kMappedPrefix, 12);
    std::memcpy(mapped + 12, ip.data(), 4);
    ip = std::string_view(reinterpret_cast<const char*>(mapped), 16);
  }
  size_t want = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
  if (want == 0 || ip.size() != want) return false;
  const auto* b = reinterpret_cast<const unsigned char*>(ip.data());
  int full = prefix / 8;
  if (std::memcmp(b, bytes, static_cast<size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xFF << (8 - rest));
  return (b[full] & mask) == bytes[full];
}

}  // namespace fulcrum::config
