// Compiling and matching protect rules (see rules.h). Any thread once built.
#include "protect/rules.h"

namespace fulcrum::protect {

std::unique_ptr<Rules> Rules::build(const std::vector<config::Rule>& rules,
                                    std::optional<BuildError>* error) {
  auto out = std::unique_ptr<Rules>(new Rules());
  RE2::Options opts;
  opts.set_log_errors(false);
  // Targets and header values are bytes, not necessarily UTF-8: match them as such.
  opts.set_encoding(RE2::Options::EncodingLatin1);
  for (const config::Rule& r : rules) {
    Compiled c;
    std::string pattern;
    if (!r.path_regex.empty()) {
      c.kind = Kind::kPath;
      pattern = r.path_regex;
      c.text = "path_regex '" + pattern + "'";
    } else if (!r.header.empty()) {
      c.kind = Kind::kHeader;
      c.name = r.header;
      pattern = r.regex;
      c.text = "header " + r.header + " regex '" + pattern + "'";
    } else {
      c.kind = Kind::kQuery;
      c.name = r.query;
      pattern = r.regex;
      c.text = "query " + r.query + " regex '" + pattern + "'";
    }
    c.text += " (line " + std::to_string(r.mark.line) + ")";
    c.re = std::make_unique<RE2>(pattern, opts);
    if (!c.re->ok()) {
      *error = BuildError{r.mark, "bad regex '" + pattern + "' in protect rule: " + c.re->error()};
      return nullptr;
    }
    c.deny = r.action != "allow";
    out->rules_.push_back(std::move(c));
  }
  return out;
}

// Parameters as sent: "a=1&b=%2e" gives (a, "1") and (b, "%2e"); a name without '=' has an empty
// value. Names compare exactly (no decoding), so a client spelling a name in %-escapes is not
// matched by name; a path_regex on the whole target catches that if it matters.
bool Rules::query_matches(std::string_view target, const Compiled& r) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view rest = target.substr(q + 1);
  auto hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (name == r.name && RE2::PartialMatch(value, *r.re)) return true;
  }
  return false;
}

}  // namespace fulcrum::protect
