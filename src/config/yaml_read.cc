// The YAML readers of the loader (yaml_read.h). Start-up and reload only, on the loading thread.
#include "config/yaml_read.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>

namespace fulcrum::config::yaml {

[[noreturn]] void fail(Mark mark, std::string message) { throw Failure{mark, std::move(message)}; }

// yaml-cpp counts lines and columns from 0; editors and compilers count from 1.
Mark mark_of(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + n.Scalar() + "'";
    default:
      return "nothing";
  }
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string format_ms(Millis ms) {
  auto n = ms.count();
  if (n != 0 && n % 1000 == 0) return std::to_string(n / 1000) + "s";
  return std::to_string(n) + "ms";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// ---- scalar readers: each fails at the value's mark with what was expected and what was found

std::string str(const Field& f, bool allow_empty) {
  if (!f.node.IsScalar()) fail(f.mark(), "expected a string" + f.for_key() + ", got " + describe(f.node));
  if (!allow_empty && f.text().empty()) fail(f.mark(), f.label() + " must not be empty");
  return f.text();
}

uint64_t num(const Field& f, uint64_t lo, uint64_t hi) {
  if (!f.node.IsScalar()) fail(f.mark(), "expected a number" + f.for_key() + ", got " + describe(f.node));
  std::string_view s = f.text();
  bool negative = !s.empty() && s.front() == '-';
  std::string_view digits = negative ? s.substr(1) : s;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  bool all_digits = !digits.empty() && p == digits.data() + digits.size();
  if (ec == std::errc::invalid_argument || (ec == std::errc() && !all_digits))
    fail(f.mark(), "expected a number" + f.for_key() + ", got " + in_quotes(s));
  if (ec != std::errc() || (negative && v != 0) || v < lo || v > hi) {
    std::string range =
        hi >= kNoMax ? std::to_string(lo) + " or more" : std::to_string(lo) + "-" + std::to_string(hi);
    fail(f.mark(), f.label() + " must be " + range + ", got " + std::string(s));
  }
  return v;
}

uint32_t num32(const Field& f, uint64_t lo, uint64_t hi) {
  return static_cast<uint32_t>(num(f, lo, hi));
}

bool boolean(const Field& f) {
  if (f.node.IsScalar()) {
    std::string s = lower(f.text());
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  fail(f.mark(), "expected true or false" + f.for_key() + ", got " + describe(f.node));
}

Millis duration(const Field& f, bool zero_ok) {
  std::string s = str(f);
  Millis ms{0};
  if (!parse_duration(s, &ms))
    fail(f.mark(), "bad duration " + in_quotes(s) + ": expected e.g. 250ms, 2s, 1m");
  if (!zero_ok && ms.count() == 0) fail(f.mark(), f.label() + " must be more than 0");
  return ms;
}

uint64_t size(const Field& f, bool zero_ok) {
  std::string s = str(f);
  uint64_t n = 0;
  if (!parse_size(s, &n))
    fail(f.mark(), "bad size " + in_quotes(s) + ": expected e.g. 512KiB, 64MiB, 1GiB or bytes");
  if (!zero_ok && n == 0) fail(f.mark(), f.label() + " must be more than 0");
  return n;
}

std::vector<Field> list(const Field& f) {
  if (!f.node.IsSequence()) fail(f.mark(), "expected a list" + f.for_key() + ", got " + describe(f.node));
  std::vector<Field> items;
  for (const YAML::Node& item : f.node) items.push_back(Field{f.key, item, f.mark()});
  return items;
}

// Names show up in metrics labels, log lines and admin URLs (/api/v1/backends/{b}/servers/{s}),
// so they keep to characters that need no quoting or escaping in any of those.
std::string name(const Field& f) {
  std::string s = str(f);
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      fail(f.mark(), "bad name " + in_quotes(s) + ": use letters, digits, '-', '_' and '.'");
  return s;
}

// RFC 9110 section 5.6.2: header names, cookie names and methods are tokens.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && !std::strchr("!#$%&'*+-.^_`|~", c)) return false;
  return true;
}

std::string token(const Field& f, std::string_view what) {
  std::string s = str(f);
  if (!is_token(s)) fail(f.mark(), "bad " + std::string(what) + " " + in_quotes(s) + ": not an HTTP token");
  return s;
}

// Lower case, no trailing dot; labels of 1-63 letters, digits, '-' or '_', 253 in all
// (RFC 1035 section 2.3.4; '_' for service names like _sip._tcp).
bool normalise_dns_name(std::string* name) {
  *name = lower(*name);
  if (!name->empty() && name->back() == '.') name->pop_back();
  if (name->empty() || name->size() > 253) return false;
  size_t label = 0;
  for (char c : *name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

std::vector<KeyValue> key_values(const Field& f, std::string_view what, bool names_are_tokens) {
  if (!f.node.IsMap()) fail(f.mark(), "expected a map" + f.for_key() + ", got " + describe(f.node));
  std::vector<KeyValue> out;
  for (const auto& pair : f.node) {
    Field k{f.key, pair.first, f.mark()};
    std::string key = names_are_tokens ? token(k, what) : str(k);
    for (const KeyValue& kv : out)
      if (kv.key == key) fail(k.mark(), "duplicate " + std::string(what) + " " + in_quotes(key));
    out.push_back({key, str(Field{key, pair.second, k.mark()}, true)});
  }
  return out;
}

Cidr cidr(const Field& f) {
  std::string s = str(f);
  Cidr c;
  if (!parse_cidr(s, &c))
    fail(f.mark(), "bad CIDR " + in_quotes(s) + ": expected e.g. 10.0.0.0/8 or 2001:db8::/32");
  return c;
}

// "200/s" or "6000/m": the unit makes the reader's intent plain, so there is no bare number.
Rate rate(const Field& f) {
  std::string s = str(f);
  auto bad = [&]() { fail(f.mark(), "bad rate " + in_quotes(s) + ": expected e.g. 200/s or 6000/m"); };
  auto slash = s.find('/');
  if (slash == std::string::npos) bad();
  std::string_view n(s.data(), slash), unit(s.data() + slash + 1, s.size() - slash - 1);
  if (n.empty() || !std::isdigit(static_cast<unsigned char>(n.front()))) bad();
  double v = 0;
  auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || p != n.data() + n.size()) bad();
  if (unit == "m")
    v /= 60;
  else if (unit != "s")
    bad();
  if (!(v > 0)) fail(f.mark(), "rate must be more than 0");
  return Rate{v};
}

bool is_unspecified(const SocketAddress& a) {
  std::string_view ip = a.ip_bytes();
  return std::all_of(ip.begin(), ip.end(), [](char c) { return c == 0; });
}

bool is_loopback(const SocketAddress& a) {
  std::string_view ip = a.ip_bytes();
  if (a.family() == AF_INET) return ip.size() == 4 && static_cast<unsigned char>(ip[0]) == 127;
  static constexpr char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return ip == std::string_view(kV6Loopback, 16);
}

// Listener and admin addresses are numeric (or *:port): a bind address that needs DNS to mean
// something would change meaning between reloads.
SocketAddress bind_address(const Field& f) {
  auto r = SocketAddress::parse(str(f), false);
  if (!r) fail(f.mark(), r.error().message);
  return *r;
}

std::string file_path(const Field& f, const std::string& dir) {
  std::filesystem::path p(str(f));
  if (p.is_relative()) p = std::filesystem::path(dir) / p;
  return p.lexically_normal().string();
}

}  // namespace fulcrum::config::yaml
