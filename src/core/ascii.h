// ASCII case folding for protocol text (header and host names, tokens, directives): no locale,
// and bytes outside A-Z left alone, so UTF-8 and odd bytes never compare equal by accident.
#pragma once
#include <string_view>

namespace fulcrum::ascii {

constexpr char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace fulcrum::ascii
