// The agent reply grammar (src/health/agent_reply.cc), by tables: well-formed replies and what
// they set; malformed ones (unknown words, bad numbers, repeats, over-long, control and
// non-ASCII bytes) refused whole, with a reason that names the word; and random garbage, which
// must never crash nor pass by accident.
#include "health/agent_reply.h"

#include <gtest/gtest.h>

#include <random>

#include "upstream/weight.h"

namespace fulcrum::health {
namespace {

using upstream::AgentReport;
using upstream::AgentState;

struct Valid {
  std::string_view line;
  std::optional<AgentState> state;
  std::optional<uint32_t> percent;
  std::optional<uint32_t> cpu_ppm;
  std::optional<uint32_t> mem_ppm;
};

TEST(AgentReplyTest, WellFormedReplies) {
  const Valid cases[] = {
      {"up", AgentState::kUp, {}, {}, {}},
      {"down", AgentState::kDown, {}, {}, {}},
      {"drain", AgentState::kDrain, {}, {}, {}},
      {"UP", AgentState::kUp, {}, {}, {}},
      {"Drain", AgentState::kDrain, {}, {}, {}},
      {"75%", {}, 75, {}, {}},
      {"0%", {}, 0, {}, {}},
      {"100%", {}, 100, {}, {}},
      {"256%", {}, 256, {}, {}},
      {"007%", {}, 7, {}, {}},
      {"cpu=0.1", {}, {}, 100000, {}},
      {"cpu=0", {}, {}, 0, {}},
      {"cpu=1", {}, {}, 1000000, {}},
      {"cpu=1.000", {}, {}, 1000000, {}},
      {"cpu=0.25", {}, {}, 250000, {}},
      {"cpu=0.1234567", {}, {}, 123456, {}},  // past a millionth is dropped
      {"mem=0.9", {}, {}, {}, 900000},
      {"CPU=0.5", {}, {}, 500000, {}},
      {"up 50% cpu=0.3 mem=0.2", AgentState::kUp, 50, 300000, 200000},
      {"up,50%,cpu=0.3", AgentState::kUp, 50, 300000, {}},
      {"up, 50%, cpu=0.3", AgentState::kUp, 50, 300000, {}},
      {"  drain\t", AgentState::kDrain, {}, {}, {}},
      {",up,", AgentState::kUp, {}, {}, {}},
      {"up\r", AgentState::kUp, {}, {}, {}},
      {"mem=0.5 cpu=0.7 drain 10%", AgentState::kDrain, 10, 700000, 500000},
  };
  for (const Valid& c : cases) {
    auto r = parse_agent_reply(c.line);
    ASSERT_TRUE(r.ok()) << quote_for_log(c.line) << ": " << r.error().message;
    EXPECT_EQ(r->state, c.state) << c.line;
    EXPECT_EQ(r->percent, c.percent) << c.line;
    EXPECT_EQ(r->cpu_ppm, c.cpu_ppm) << c.line;
    EXPECT_EQ(r->mem_ppm, c.mem_ppm) << c.line;
  }
}

struct Malformed {
  std::string line;
  std::string_view why;  // a part of the error message
};

TEST(AgentReplyTest, MalformedRepliesAreRefusedWhole) {
  const Malformed cases[] = {
      {"", "empty reply"},
      {"   ", "empty reply"},
      {",,", "empty reply"},
      {"\r", "empty reply"},
      {"busy", "unknown word 'busy'"},
      {"up busy", "unknown word 'busy'"},
      {"maint", "unknown word 'maint'"},  // HAProxy's, not ours
      {"ready", "unknown word 'ready'"},
      {"#comment", "unknown word '#comment'"},
      {"upp", "unknown word 'upp'"},
      {"up;down", "unknown word 'up;down'"},
      {"up down", "more than one state"},
      {"up up", "more than one state"},
      {"50% 60%", "more than one weight"},
      {"257%", "bad weight '257%'"},
      {"1000%", "bad weight"},
      {"%", "bad weight"},
      {"-5%", "bad weight"},
      {"5.5%", "bad weight"},
      {"50 %", "unknown word '50'"},
      {"cpu=1.1", "bad utilisation 'cpu=1.1'"},
      {"cpu=1.0000001", "bad utilisation"},
      {"cpu=2", "bad utilisation"},
      {"cpu=-0.1", "bad utilisation"},
      {"cpu=+0.1", "bad utilisation"},
      {"cpu=.5", "bad utilisation"},
      {"cpu=5.", "bad utilisation"},
      {"cpu=0.5e-1", "bad utilisation"},
      {"cpu=", "bad utilisation"},
      {"cpu=0x1", "bad utilisation"},
      {"cpu=0.5 cpu=0.6", "more than one cpu"},
      {"mem=0.5,mem=0.5", "more than one mem"},
      {"cpu", "unknown word 'cpu'"},
      {"cpu:0.5", "unknown word 'cpu:0.5'"},
      {"load=0.5", "unknown word 'load=0.5'"},
      {std::string("up\0", 3), "control or non-ASCII byte"},
      {"up\ndown", "control or non-ASCII byte"},
      {"up\rdown", "control or non-ASCII byte"},
      {"up\r\r", "control or non-ASCII byte"},
      {"\x7f", "control or non-ASCII byte"},
      {"caf\xc3\xa9", "non-ASCII byte in 'caf\\xc3\\xa9'"},
      {std::string(256, 'u'), "longer than 256 bytes"},
      {"up" + std::string(254, ' '), "longer than 256 bytes"},
  };
  for (const Malformed& c : cases) {
    auto r = parse_agent_reply(c.line);
    ASSERT_FALSE(r.ok()) << quote_for_log(c.line) << " was taken";
    EXPECT_NE(r.error().message.find(c.why), std::string::npos)
        << quote_for_log(c.line) << ": " << r.error().message;
  }
}

TEST(AgentReplyTest, LongestLineFits) {
  // 255 bytes and the "\n" make 256: the longest reply SPEC allows.
  std::string line = "up" + std::string(253, ' ');
  ASSERT_EQ(line.size() + 1, kMaxAgentReply);
  EXPECT_TRUE(parse_agent_reply(line).ok());
  EXPECT_TRUE(parse_agent_reply(line + "\r").ok()) << "the CR of a CRLF does not count against the limit";
}

TEST(AgentReplyTest, QuotedForLogsWithoutRawBytes) {
  EXPECT_EQ(quote_for_log("busy"), "'busy'");
  EXPECT_EQ(quote_for_log(std::string("a\0b'\\", 5)), "'a\\x00b\\x27\\x5c'");
  EXPECT_EQ(quote_for_log(std::string(50, 'x'), 4), "'xxxx...'");
}

// Seeded random input: short runs of bytes drawn from the grammar's own alphabet (so that many
// almost-valid replies come up) and from all 256 values. The parser must never crash, and any
// reply it takes must hold only in-range values and printable bytes.
TEST(AgentReplyTest, GarbageNeverCrashesAndNeverPassesOutOfRange) {
  std::mt19937_64 rng(11);
  const std::string alphabet = "updownraic=m%.,0123456789 \t\r\n\x01\xff";
  size_t taken = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string line(rng() % 24, '\0');
    bool any_byte = rng() % 4 == 0;
    for (char& c : line) c = any_byte ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    auto r = parse_agent_reply(line);
    if (!r) {
      EXPECT_FALSE(r.error().message.empty());
      continue;
    }
    ++taken;
    EXPECT_LE(r->percent.value_or(0), upstream::kMaxAgentPercent);
    EXPECT_LE(r->cpu_ppm.value_or(0), 1000000u);
    EXPECT_LE(r->mem_ppm.value_or(0), 1000000u);
    EXPECT_TRUE(r->state || r->percent || r->cpu_ppm || r->mem_ppm) << "a taken reply says something";
    for (size_t j = 0; j < line.size(); ++j) {
      auto c = static_cast<unsigned char>(line[j]);
      bool final_cr = c == '\r' && j + 1 == line.size();
      EXPECT_TRUE(final_cr || c == '\t' || (c >= 0x20 && c < 0x7f)) << quote_for_log(line);
    }
  }
  EXPECT_GT(taken, 0u) << "the alphabet should produce some valid replies";
}

}  // namespace
}  // namespace fulcrum::health
