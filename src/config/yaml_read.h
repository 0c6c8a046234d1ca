// Reading YAML for the loader (loader.cc): values found in maps and lists with their marks, maps
// checked against the keys their place allows, and typed scalar readers. Each reader fails with a
// Failure at the FILE:LINE:COL of the value at fault, saying what was expected and what was
// found; load_text turns the first into a ConfigError. Internal to src/config.
#pragma once
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace fulcrum::config::yaml {

inline constexpr uint64_t kNoMax = std::numeric_limits<uint32_t>::max();

struct Failure {
  Mark mark;
  std::string message;
};

[[noreturn]] void fail(Mark mark, std::string message);
// yaml-cpp counts lines and columns from 0; editors and compilers count from 1.
Mark mark_of(const YAML::Mark& m);
std::string describe(const YAML::Node& n);
std::string lower(std::string s);
std::string in_quotes(std::string_view s);
std::string format_ms(Millis ms);
size_t edit_distance(std::string_view a, std::string_view b);

// One value found in a map or a list. A null value (`key:` and nothing) has no useful mark in
// yaml-cpp (it points at whatever token follows), so it borrows its key's.
struct Field {
  std::string key;  // the map key, or the list's key for its items; for messages
  YAML::Node node;
  Mark key_mark;

  Mark mark() const {
    if (!node.IsDefined() || node.IsNull()) return key_mark;
    Mark m = mark_of(node.Mark());
    return m.line != 0 ? m : key_mark;
  }
  std::string label() const { return key.empty() ? "value" : in_quotes(key); }
  std::string for_key() const { return key.empty() ? "" : " for " + in_quotes(key); }
  const std::string& text() const { return node.Scalar(); }
};

// A YAML map checked against the keys its place in the schema allows. Unknown and repeated keys
// fail here, so the readers below only ever look up known words. (yaml-cpp keeps repeated keys
// and answers lookups with the first, which would silently drop the second.)
class Map {
 public:
  Map(const Field& f, std::string what, std::initializer_list<std::string_view> allowed)
      : what_(std::move(what)), mark_(f.mark()) {
    if (!f.node.IsMap()) fail(f.mark(), "expected a map" + f.for_key() + ", got " + describe(f.node));
    // Copies, not references: the iterator hands out a temporary pair.
    for (const auto& pair : f.node) {
      const YAML::Node k = pair.first;
      Mark km = mark_of(k.Mark());
      if (!k.IsScalar()) fail(km, "expected a plain key in " + what_ + ", got " + describe(k));
      const std::string& key = k.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        fail(km, "unknown key " + in_quotes(key) + " in " + what_ + suggest(key, allowed));
      for (const Field& seen : fields_)
        if (seen.key == key)
          fail(km, "duplicate key " + in_quotes(key) + " in " + what_ + " (first at line " +
                       std::to_string(seen.key_mark.line) + ")");
      fields_.push_back(Field{key, pair.second, km});
    }
  }

  const Field* get(std::string_view key) const {
    for (const Field& f : fields_)
      if (f.key == key) return &f;
    return nullptr;
  }
  const Field& need(std::string_view key) const {
    if (const Field* f = get(key)) return *f;
    fail(mark_, "missing " + in_quotes(key) + " in " + what_);
  }
  const std::vector<Field>& fields() const { return fields_; }
  Mark mark() const { return mark_; }

 private:
  static std::string suggest(std::string_view key, std::initializer_list<std::string_view> allowed) {
    std::string_view best;
    size_t best_d = 3;  // a typo is one or two edits away; beyond that it is another word
    for (std::string_view a : allowed) {
      size_t d = edit_distance(key, a);
      if (d < best_d && d < a.size()) best = a, best_d = d;
    }
    return best.empty() ? "" : " (did you mean " + in_quotes(best) + "?)";
  }

  std::string what_;
  Mark mark_;
  std::vector<Field> fields_;
};

// ---- scalar readers
std::string str(const Field& f, bool allow_empty = false);
uint64_t num(const Field& f, uint64_t lo, uint64_t hi);
uint32_t num32(const Field& f, uint64_t lo, uint64_t hi = kNoMax);
bool boolean(const Field& f);
Millis duration(const Field& f, bool zero_ok);
uint64_t size(const Field& f, bool zero_ok);
std::vector<Field> list(const Field& f);
std::string name(const Field& f);
bool is_token(std::string_view s);
std::string token(const Field& f, std::string_view what);
bool normalise_dns_name(std::string* name);
std::vector<KeyValue> key_values(const Field& f, std::string_view what, bool names_are_tokens);
Cidr cidr(const Field& f);
Rate rate(const Field& f);
bool is_unspecified(const SocketAddress& a);
bool is_loopback(const SocketAddress& a);
SocketAddress bind_address(const Field& f);
// Relative paths are taken from the config file's folder (`dir`), so a config moves with its
// files and does not depend on the directory fulcrum was started from.
std::string file_path(const Field& f, const std::string& dir);

}  // namespace fulcrum::config::yaml
