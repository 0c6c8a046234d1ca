// Protect rules: RE2 filters on a request as received, before any normalising, so that
// "/a/../b" or "%2e%2e" meets a rule in the form the client sent it. A rule looks at the whole
// target (path_regex), at each value of one header (name case-insensitive), or at the raw value
// of each query parameter with one name. First match wins; `allow` ends the search and lets the
// request through. Built once per config generation; matched by any worker (RE2 is thread-safe
// for matching and allocates nothing for a search without captures).
#pragma once
#include <re2/re2.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/ascii.h"

namespace fulcrum::protect {

class Rules {
 public:
  // Null and an error ("line:col: message" is left to the caller, with the rule's mark) when a
  // regex does not compile.
  struct BuildError {
    config::Mark mark;
    std::string message;
  };
  static std::unique_ptr<Rules> build(const std::vector<config::Rule>& rules,
                                      std::optional<BuildError>* error);

  bool empty() const { return rules_.empty(); }
  size_t size() const { return rules_.size(); }

  // The first rule that matches, or -1. `headers` is a range of objects with `name` and `value`.
  template <typename Headers>
  int match(std::string_view target, const Headers& headers) const {
    for (size_t i = 0; i < rules_.size(); ++i) {
      const Compiled& r = rules_[i];
      bool hit = false;
      switch (r.kind) {
        case Kind::kPath:
          hit = RE2::PartialMatch(target, *r.re);
          break;
        case Kind::kHeader:
          for (const auto& h : headers)
            if (ascii::iequals(h.name, r.name) && RE2::PartialMatch(h.value, *r.re)) {
              hit = true;
              break;
            }
          break;
        case Kind::kQuery:
          hit = query_matches(target, r);
          break;
      }
      if (hit) return static_cast<int>(i);
    }
    return -1;
  }
  bool denies(int rule) const { return rule >= 0 && rules_[static_cast<size_t>(rule)].deny; }
  // What a log line says about the rule: "path_regex '\.\./' (line 12)".
  const std::string& describe(int rule) const { return rules_[static_cast<size_t>(rule)].text; }

 private:
  enum class Kind { kPath, kHeader, kQuery };
  struct Compiled {
    Kind kind;
    std::string name;  // header or query parameter name
    std::unique_ptr<RE2> re;
    bool deny;
    std::string text;
  };
  static bool query_matches(std::string_view target, const Compiled& r);

  std::vector<Compiled> rules_;
};

}  // namespace fulcrum::protect
