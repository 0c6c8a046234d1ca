// The query parser (src/dns/query.cc): what it reads from a well-formed query, and every way a
// malformed one is refused. Inputs that the fuzz target found troublesome are at the end.
#include "dns/query.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/dns_fixture.h"

namespace fulcrum::dns {
namespace {

using testing::append16;
using testing::make_query;
using testing::QueryOptions;

ParseError parse(const std::vector<uint8_t>& p, Query* q) { return parse_query(p, q); }

TEST(QueryTest, ReadsHeaderAndQuestion) {
  QueryOptions o;
  o.id = 0xBEEF;
  o.cd = true;
  auto p = make_query("WwW.Example.COM", kTypeAaaa, o);
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_EQ(q.id, 0xBEEF);
  EXPECT_EQ(q.opcode, 0);
  EXPECT_TRUE(q.rd);
  EXPECT_TRUE(q.cd);
  EXPECT_EQ(q.qtype, kTypeAaaa);
  EXPECT_EQ(q.qclass, kClassIn);
  EXPECT_EQ(q.question_end, p.size());
  auto want = testing::wire_name("www.example.com");  // lower-cased for the lookup
  EXPECT_EQ(std::vector<uint8_t>(q.name, q.name + q.name_len), want);
  EXPECT_FALSE(q.edns);
  EXPECT_EQ(q.udp_size, kMinUdpPayload);
}

TEST(QueryTest, RootName) {
  auto p = make_query("", kTypeA);
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_EQ(q.name_len, 1);
}

TEST(QueryTest, ReadsEdns) {
  QueryOptions o;
  o.edns = true;
  o.udp_size = 4096;
  o.dnssec_ok = true;
  auto p = make_query("a.example", kTypeA, o);
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_TRUE(q.edns);
  EXPECT_FALSE(q.edns_bad);
  EXPECT_EQ(q.udp_size, 4096);
  EXPECT_TRUE(q.dnssec_ok);
  EXPECT_EQ(q.edns_version, 0);
  EXPECT_EQ(q.question_end, p.size() - 11);
}

TEST(QueryTest, EdnsSizeBelow512CountsAs512) {  // RFC 6891 6.2.5
  QueryOptions o;
  o.edns = true;
  o.udp_size = 100;
  Query q;
  ASSERT_EQ(parse(make_query("a.example", kTypeA, o), &q), ParseError::kNone);
  EXPECT_EQ(q.udp_size, 512);
}

TEST(QueryTest, EdnsVersionIsReported) {
  QueryOptions o;
  o.edns = true;
  o.edns_version = 1;
  Query q;
  ASSERT_EQ(parse(make_query("a.example", kTypeA, o), &q), ParseError::kNone);
  EXPECT_EQ(q.edns_version, 1);
}

TEST(QueryTest, TwoOptRecordsAreBad) {
  QueryOptions o;
  o.edns = true;
  auto p = make_query("a.example", kTypeA, o);
  auto opt = testing::opt_record(1232, 0, false);
  p.insert(p.end(), opt.begin(), opt.end());
  p[11] = 2;
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_TRUE(q.edns_bad);
}

TEST(QueryTest, OptNotOwnedByRootIsBad) {
  auto p = make_query("a.example", kTypeA);
  p[11] = 1;
  std::vector<uint8_t> opt = {1, 'x', 0};
  append16(&opt, kTypeOpt);
  append16(&opt, 1232);
  for (int i = 0; i < 4; ++i) opt.push_back(0);
  append16(&opt, 0);
  p.insert(p.end(), opt.begin(), opt.end());
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_TRUE(q.edns_bad);
}

TEST(QueryTest, OtherAdditionalRecordsAreSkipped) {
  // A compressed owner pointing at the question, a TXT with data: skipped, not followed.
  auto p = make_query("a.example", kTypeA);
  p[11] = 1;
  std::vector<uint8_t> rr = {0xC0, 12};
  append16(&rr, 16);
  append16(&rr, 1);
  for (int i = 0; i < 4; ++i) rr.push_back(0);
  append16(&rr, 3);
  rr.insert(rr.end(), {2, 'h', 'i'});
  p.insert(p.end(), rr.begin(), rr.end());
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_FALSE(q.edns);
}

TEST(QueryTest, OtherOpcodesStopAtTheHeader) {
  QueryOptions o;
  o.opcode = 2;  // STATUS
  auto p = make_query("a.example", kTypeA, o);
  p[5] = 0;  // no question: still a valid header for NOTIMP
  Query q;
  ASSERT_EQ(parse(p, &q), ParseError::kNone);
  EXPECT_EQ(q.opcode, 2);
  EXPECT_EQ(q.question_end, kHeaderSize);
}

// ---- malformed -------------------------------------------------------------------------------

TEST(QueryTest, Short) {
  Query q;
  for (size_t n = 0; n < kHeaderSize; ++n)
    EXPECT_EQ(parse(std::vector<uint8_t>(n, 0), &q), ParseError::kShort);
  auto p = make_query("www.example.com", kTypeA);
  for (size_t n = kHeaderSize; n < p.size(); ++n)
    EXPECT_EQ(parse(std::vector<uint8_t>(p.begin(), p.begin() + static_cast<long>(n)), &q),
              ParseError::kShort)
        << n;
}

TEST(QueryTest, ResponsesAreNotAnswered) {
  auto p = make_query("a.example", kTypeA);
  p[2] |= 0x80;
  Query q;
  EXPECT_EQ(parse(p, &q), ParseError::kResponse);
}

TEST(QueryTest, QdcountMustBeOne) {
  Query q;
  for (uint8_t n : {0, 2, 255}) {
    auto p = make_query("a.example", kTypeA);
    p[5] = n;
    EXPECT_EQ(parse(p, &q), ParseError::kQdcount) << int(n);
  }
  auto p = make_query("a.example", kTypeA);
  p[4] = 1;  // 257
  EXPECT_EQ(parse(p, &q), ParseError::kQdcount);
}

TEST(QueryTest, PointerInQuestion) {
  // 1a then a pointer to itself (offset 12): a loop if followed.
  std::vector<uint8_t> p = {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xC0, 12, 0, 1, 0, 1};
  Query q;
  EXPECT_EQ(parse(p, &q), ParseError::kPointer);
  p[14] = 0xC0;
  p[15] = 14;  // pointing at itself
  EXPECT_EQ(parse(p, &q), ParseError::kPointer);
}

TEST(QueryTest, ReservedLabelTypes) {
  Query q;
  for (uint8_t t : {0x40, 0x80}) {
    std::vector<uint8_t> p = {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, t, 'a', 0, 0, 1, 0, 1};
    EXPECT_EQ(parse(p, &q), ParseError::kLabel);
  }
}

TEST(QueryTest, NameTooLong) {
  // 4 labels of 63 = 256 bytes with the root: one over.
  std::string name;
  for (int i = 0; i < 4; ++i) name += (i ? "." : "") + std::string(63, 'a');
  Query q;
  EXPECT_EQ(parse(make_query(name, kTypeA), &q), ParseError::kNameTooLong);
  // 3 x 63 + 61 = 255 with length bytes and root: the longest allowed.
  name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
         std::string(61, 'd');
  ASSERT_EQ(parse(make_query(name, kTypeA), &q), ParseError::kNone);
  EXPECT_EQ(q.name_len, 255);
}

TEST(QueryTest, RecordsPastTheEnd) {
  Query q;
  auto p = make_query("a.example", kTypeA);
  p[11] = 1;  // an additional record that is not there
  EXPECT_EQ(parse(p, &q), ParseError::kShort);
  p[11] = 0;
  p[7] = 0xFF;  // 255 answers
  EXPECT_EQ(parse(p, &q), ParseError::kShort);
  QueryOptions o;
  o.edns = true;
  p = make_query("a.example", kTypeA, o);
  p.back() = 5;  // RDLENGTH past the end
  EXPECT_EQ(parse(p, &q), ParseError::kShort);
}

TEST(QueryTest, LongNameInARecord) {
  auto p = make_query("a.example", kTypeA);
  p[11] = 1;
  for (int i = 0; i < 5; ++i) {
    p.push_back(63);
    p.insert(p.end(), 63, 'x');
  }
  p.push_back(0);
  Query q;
  EXPECT_EQ(parse(p, &q), ParseError::kNameTooLong);
}

TEST(QueryTest, TrailingBytes) {
  auto p = make_query("a.example", kTypeA);
  p.push_back(0);
  Query q;
  EXPECT_EQ(parse(p, &q), ParseError::kTrailing);
}

TEST(QueryTest, AllOnesHeaderDoesNotLoop) {
  // QR clear, every count 0xFFFF: the counts are bounded by the bytes, not trusted.
  std::vector<uint8_t> p(kHeaderSize, 0xFF);
  p[2] = 0x01;
  p[4] = 0;
  p[5] = 1;
  auto n = testing::wire_name("a");
  p.insert(p.end(), n.begin(), n.end());
  p.insert(p.end(), {0, 1, 0, 1});
  Query q;
  EXPECT_EQ(parse(p, &q), ParseError::kShort);
}

}  // namespace
}  // namespace fulcrum::dns
