// The agent reply parser (agent_reply.h). Pure: no allocation but the error text, no state; any
// thread.
#include "health/agent_reply.h"
#include "core/ascii.h"

#include <algorithm>
#include <cstdint>

#include "upstream/weight.h"

namespace fulcrum::health {
namespace {

using ascii::iequals;
using ascii::istarts_with;

using upstream::AgentReport;
using upstream::AgentState;

bool is_sep(char c) { return c == ' ' || c == '\t' || c == ','; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

Error malformed(std::string why) { return Error{0, std::move(why)}; }

// `1*3DIGIT`, 0..kMaxAgentPercent.
bool parse_percent(std::string_view digits, uint32_t* out) {
  if (digits.empty() || digits.size() > 3) return false;
  uint32_t v = 0;
  for (char c : digits) {
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > upstream::kMaxAgentPercent) return false;
  *out = v;
  return true;
}

// `1*DIGIT [ "." 1*DIGIT ]`, 0..1, into parts per million. Digits past the sixth decimal are
// checked (they must be digits, and zero when the whole part is 1) but do not change the value.
bool parse_fraction(std::string_view text, uint32_t* ppm) {
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && frac.empty())) return false;
  uint32_t w = 0;
  for (char c : whole) {
    if (!is_digit(c)) return false;
    w = std::min<uint32_t>(w * 10 + static_cast<uint32_t>(c - '0'), 10);  // anything past 1 is out
  }
  uint32_t f = 0;
  bool frac_zero = true;
  for (size_t i = 0; i < frac.size(); ++i) {
    char c = frac[i];
    if (!is_digit(c)) return false;
    if (c != '0') frac_zero = false;
    if (i < 6) f = f * 10 + static_cast<uint32_t>(c - '0');
  }
  for (size_t i = frac.size(); i < 6; ++i) f *= 10;
  if (w > 1 || (w == 1 && !frac_zero)) return false;
  *ppm = w * 1000000 + f;
  return true;
}

}  // namespace

std::string quote_for_log(std::string_view text, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (text.size() > max) out += "...";
  out += '\'';
  return out;
}

Result<AgentReport> parse_agent_reply(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() + 1 > kMaxAgentReply)
    return malformed("reply longer than " + std::to_string(kMaxAgentReply) + " bytes");
  for (char ch : line) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c > 0x7e)
      return malformed("control or non-ASCII byte in " + quote_for_log(line));
  }

  AgentReport r;
  size_t words = 0;
  size_t i = 0;
  while (i < line.size()) {
    if (is_sep(line[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < line.size() && !is_sep(line[end])) ++end;
    std::string_view word = line.substr(i, end - i);
    i = end;
    ++words;

    std::optional<AgentState> state;
    if (iequals(word, "up"))
      state = AgentState::kUp;
    else if (iequals(word, "down"))
      state = AgentState::kDown;
    else if (iequals(word, "drain"))
      state = AgentState::kDrain;
    if (state) {
      if (r.state) return malformed("more than one state word (" + quote_for_log(word) + ")");
      r.state = state;
      continue;
    }
    if (word.back() == '%') {
      uint32_t pct = 0;
      if (!parse_percent(word.substr(0, word.size() - 1), &pct))
        return malformed("bad weight " + quote_for_log(word) + ": expected 0% to " +
                         std::to_string(upstream::kMaxAgentPercent) + "%");
      if (r.percent) return malformed("more than one weight (" + quote_for_log(word) + ")");
      r.percent = pct;
      continue;
    }
    bool cpu = istarts_with(word, "cpu=");
    if (cpu || istarts_with(word, "mem=")) {
      uint32_t ppm = 0;
      if (!parse_fraction(word.substr(4), &ppm))
        return malformed("bad utilisation " + quote_for_log(word) + ": expected 0.0 to 1.0");
      std::optional<uint32_t>& slot = cpu ? r.cpu_ppm : r.mem_ppm;
      if (slot) return malformed(std::string("more than one ") + (cpu ? "cpu" : "mem") + " value");
      slot = ppm;
      continue;
    }
    return malformed("unknown word " + quote_for_log(word));
  }
  if (words == 0) return malformed("empty reply");
  return r;
}

}  // namespace fulcrum::health
