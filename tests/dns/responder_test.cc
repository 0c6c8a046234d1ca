// The responder (src/dns/responder.cc): replies as ldns decodes them. Rotation, weights, the
// `answers` count, health (down servers leave, spares stand in, fail open), REFUSED, NODATA,
// address families, TC, EDNS0, and the counters behind every refusal.
#include "dns/responder.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dns/dns_fixture.h"

namespace fulcrum::dns {
namespace {

using testing::decode;
using testing::Decoded;
using testing::make_query;
using testing::QueryOptions;
using testing::ServerSpec;

class ResponderTest : public ::testing::Test {
 protected:
  // One zone, www.example.com, over a backend of `servers`.
  void make(const std::vector<ServerSpec>& servers, uint32_t answers = 0, uint32_t ttl = 30) {
    backend_ = std::make_unique<upstream::Backend>(testing::backend_spec(servers));
    ZoneConfig z{"www.example.com", backend_.get(), ttl, answers};
    responder_ = std::make_unique<Responder>("dns", std::span<const ZoneConfig>(&z, 1), 0, stats_);
  }

  Decoded ask(std::string_view name, uint16_t qtype, const QueryOptions& o = {},
              Transport t = Transport::kUdp) {
    return ask_raw(make_query(name, qtype, o), t);
  }
  Decoded ask_raw(const std::vector<uint8_t>& query, Transport t = Transport::kUdp) {
    size_t n = responder_->respond(query, t, out_);
    return decode({out_.data(), n});
  }
  upstream::Server& server(size_t i) { return *backend_->servers()[i]; }

  std::unique_ptr<upstream::Backend> backend_;
  DnsStats stats_;  // in the runtime, the worker's metrics own these
  std::unique_ptr<Responder> responder_;
  std::vector<uint8_t> out_ = std::vector<uint8_t>(kMaxTcpMessage);
};

TEST_F(ResponderTest, AnswersEveryServerWithTtl) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}}, 0, 42);
  Decoded d = ask("www.example.com", kTypeA);
  ASSERT_TRUE(d.ok);
  EXPECT_TRUE(d.qr);
  EXPECT_TRUE(d.aa);
  EXPECT_FALSE(d.tc);
  EXPECT_TRUE(d.rd);
  EXPECT_EQ(d.rcode, LDNS_RCODE_NOERROR);
  EXPECT_EQ(d.id, 0x1234);
  EXPECT_EQ(d.qname, "www.example.com.");
  ASSERT_EQ(d.answers.size(), 3u);
  std::multiset<std::string> got(d.answers.begin(), d.answers.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"10.0.0.1", "10.0.0.2", "10.0.0.3"}));
  for (auto ttl : d.ttls) EXPECT_EQ(ttl, 42u);
  EXPECT_FALSE(d.edns);
  EXPECT_EQ(responder_->stats().answered.get(), 1u);
}

TEST_F(ResponderTest, CaseInsensitiveAndQuestionEchoed) {
  make({{"10.0.0.1:80"}});
  Decoded d = ask("wWw.ExAmPlE.cOm", kTypeA);
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.qname, "wWw.ExAmPlE.cOm.");  // as the client spelled it (0x20 randomisation)
  ASSERT_EQ(d.answers.size(), 1u);
  EXPECT_EQ(d.owners[0], "wWw.ExAmPlE.cOm.");
  // A trailing-dot-free name and a fully qualified one are the same on the wire.
  EXPECT_EQ(ask("WWW.EXAMPLE.COM", kTypeA).answers.size(), 1u);
}

TEST_F(ResponderTest, RotatesTheLeadingRecord) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  std::vector<std::string> leads;
  for (int i = 0; i < 6; ++i) {
    Decoded d = ask("www.example.com", kTypeA);
    ASSERT_EQ(d.answers.size(), 3u);
    leads.push_back(d.answers[0]);
    // The rest follow in config order, wrapping around.
    int first = d.answers[0].back() - '1';
    for (int k = 0; k < 3; ++k) EXPECT_EQ(d.answers[k], "10.0.0." + std::to_string((first + k) % 3 + 1));
  }
  EXPECT_EQ(leads, (std::vector<std::string>{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2",
                                             "10.0.0.3"}));
}

TEST_F(ResponderTest, AnswersCountPerReply) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}, {"10.0.0.4:80"}}, 2);
  std::map<std::string, int> seen;
  for (int i = 0; i < 8; ++i) {
    Decoded d = ask("www.example.com", kTypeA);
    ASSERT_EQ(d.answers.size(), 2u);
    EXPECT_NE(d.answers[0], d.answers[1]);
    for (auto& a : d.answers) ++seen[a];
  }
  // Each server appears equally often: 8 replies x 2 records over 4 servers.
  ASSERT_EQ(seen.size(), 4u);
  for (auto& [addr, n] : seen) EXPECT_EQ(n, 4) << addr;
}

TEST_F(ResponderTest, AnswersMoreThanServersMeansAll) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}}, 5);
  EXPECT_EQ(ask("www.example.com", kTypeA).answers.size(), 2u);
}

TEST_F(ResponderTest, WeightsShareTheLead) {
  make({{"10.0.0.1:80", 5}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 2}}, 1);
  std::map<std::string, int> leads;
  std::string sequence;
  for (int i = 0; i < 800; ++i) {
    Decoded d = ask("www.example.com", kTypeA);
    ASSERT_EQ(d.answers.size(), 1u);
    ++leads[d.answers[0]];
    if (i < 8) sequence += d.answers[0].back();
  }
  // Smooth weighted rotation is exact over whole cycles of 8.
  EXPECT_EQ(leads["10.0.0.1"], 500);
  EXPECT_EQ(leads["10.0.0.2"], 100);
  EXPECT_EQ(leads["10.0.0.3"], 200);
  // Interleaved, not in bursts: the heaviest never leads more than twice... in a row here.
  EXPECT_EQ(sequence.find("111"), std::string::npos) << sequence;
}

TEST_F(ResponderTest, DownServerLeavesAndReturns) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  server(1).set_health(upstream::Health::kDown);
  for (int i = 0; i < 6; ++i) {
    Decoded d = ask("www.example.com", kTypeA);
    ASSERT_EQ(d.answers.size(), 2u);
    for (auto& a : d.answers) EXPECT_NE(a, "10.0.0.2");
  }
  server(1).set_health(upstream::Health::kUp);
  EXPECT_EQ(ask("www.example.com", kTypeA).answers.size(), 3u);
  // Drained and disabled servers leave too: they take no new traffic.
  server(2).set_admin(upstream::Admin::kDrain);
  EXPECT_EQ(ask("www.example.com", kTypeA).answers.size(), 2u);
}

TEST_F(ResponderTest, SpareStandsInForADownPrimary) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.9:80", 1, true}});
  Decoded d = ask("www.example.com", kTypeA);
  EXPECT_EQ(std::multiset<std::string>(d.answers.begin(), d.answers.end()),
            (std::multiset<std::string>{"10.0.0.1", "10.0.0.2"}));
  server(0).set_health(upstream::Health::kDown);
  d = ask("www.example.com", kTypeA);
  EXPECT_EQ(std::multiset<std::string>(d.answers.begin(), d.answers.end()),
            (std::multiset<std::string>{"10.0.0.2", "10.0.0.9"}));
}

TEST_F(ResponderTest, FailsOpenWithEveryServerDown) {
  make({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.9:80", 1, true}});
  for (size_t i = 0; i < 3; ++i) server(i).set_health(upstream::Health::kDown);
  Decoded d = ask("www.example.com", kTypeA);
  EXPECT_EQ(d.rcode, LDNS_RCODE_NOERROR);
  EXPECT_EQ(std::multiset<std::string>(d.answers.begin(), d.answers.end()),
            (std::multiset<std::string>{"10.0.0.1", "10.0.0.2", "10.0.0.9"}));
  EXPECT_EQ(responder_->stats().fail_open.get(), 1u);
  server(1).set_health(upstream::Health::kUp);
  d = ask("www.example.com", kTypeA);
  EXPECT_EQ(d.answers, std::vector<std::string>{"10.0.0.2"});
  EXPECT_EQ(responder_->stats().fail_open.get(), 1u);
}

TEST_F(ResponderTest, ServersStillCheckingAreNotAnswered) {
  // With a health check, servers start `checking` and take traffic after the first pass; until
  // then none is up, so the reply fails open rather than going empty.
  auto spec = testing::backend_spec({{"10.0.0.1:80"}, {"10.0.0.2:80"}});
  spec.health.check = "tcp";
  backend_ = std::make_unique<upstream::Backend>(spec);
  ZoneConfig z{"www.example.com", backend_.get(), 30, 0};
  responder_ = std::make_unique<Responder>("dns", std::span<const ZoneConfig>(&z, 1), 0, stats_);
  EXPECT_EQ(ask("www.example.com", kTypeA).answers.size(), 2u);
  server(0).set_health(upstream::Health::kUp);
  EXPECT_EQ(ask("www.example.com", kTypeA).answers, std::vector<std::string>{"10.0.0.1"});
}

TEST_F(ResponderTest, RefusesNamesOutsideTheZones) {
  make({{"10.0.0.1:80"}});
  for (const char* name : {"example.com", "x.www.example.com", "www.example.org", "www.example.co", ""}) {
    Decoded d = ask(name, kTypeA);
    ASSERT_TRUE(d.ok) << name;
    EXPECT_EQ(d.rcode, LDNS_RCODE_REFUSED) << name;
    EXPECT_FALSE(d.aa);
    EXPECT_TRUE(d.answers.empty());
    EXPECT_EQ(d.qdcount, 1u);
  }
  EXPECT_EQ(responder_->stats().refused.get(), 5u);
}

TEST_F(ResponderTest, RefusesOtherClasses) {
  make({{"10.0.0.1:80"}});
  QueryOptions o;
  o.qclass = 3;  // CHAOS
  EXPECT_EQ(ask("www.example.com", kTypeA, o).rcode, LDNS_RCODE_REFUSED);
  o.qclass = kClassAny;
  EXPECT_EQ(ask("www.example.com", kTypeA, o).answers.size(), 1u);
}

TEST_F(ResponderTest, OtherTypesGetAnEmptyAnswer) {
  make({{"10.0.0.1:80"}});
  for (uint16_t type : {15 /* MX */, 16 /* TXT */, 6 /* SOA */, 2 /* NS */, 65 /* HTTPS */}) {
    Decoded d = ask("www.example.com", type);
    ASSERT_TRUE(d.ok);
    EXPECT_EQ(d.rcode, LDNS_RCODE_NOERROR) << type;
    EXPECT_TRUE(d.aa);
    EXPECT_TRUE(d.answers.empty());
    EXPECT_EQ(d.qtype, type);
  }
  EXPECT_EQ(responder_->stats().nodata.get(), 5u);
}

TEST_F(ResponderTest, AddressFamiliesAnswerTheirOwnType) {
  make({{"10.0.0.1:80"}, {"[2001:db8::1]:80"}, {"10.0.0.2:80"}, {"[2001:db8::2]:80", 3}});
  Decoded a = ask("www.example.com", kTypeA);
  EXPECT_EQ(std::multiset<std::string>(a.answers.begin(), a.answers.end()),
            (std::multiset<std::string>{"10.0.0.1", "10.0.0.2"}));
  Decoded aaaa = ask("www.example.com", kTypeAaaa);
  EXPECT_EQ(std::multiset<std::string>(aaaa.answers.begin(), aaaa.answers.end()),
            (std::multiset<std::string>{"2001:db8::1", "2001:db8::2"}));
  Decoded any = ask("www.example.com", kTypeAny);
  EXPECT_EQ(any.answers.size(), 4u);
}

TEST_F(ResponderTest, NoServerOfTheFamilyIsNodata) {
  make({{"10.0.0.1:80"}});
  Decoded d = ask("www.example.com", kTypeAaaa);
  EXPECT_EQ(d.rcode, LDNS_RCODE_NOERROR);
  EXPECT_TRUE(d.answers.empty());
}

TEST_F(ResponderTest, TruncatesWhatDoesNotFitUdp) {
  // 40 A records of 16 bytes + header and question (33): 673 bytes, over 512.
  make(testing::v4_servers(40));
  Decoded d = ask("www.example.com", kTypeA);
  ASSERT_TRUE(d.ok);
  EXPECT_TRUE(d.tc);
  EXPECT_TRUE(d.answers.empty());
  EXPECT_EQ(d.rcode, LDNS_RCODE_NOERROR);
  EXPECT_LE(d.size, 512u);
  EXPECT_EQ(responder_->stats().truncated.get(), 1u);
  // The same over TCP: everything.
  d = ask("www.example.com", kTypeA, {}, Transport::kTcp);
  EXPECT_FALSE(d.tc);
  EXPECT_EQ(d.answers.size(), 40u);
  // With EDNS and room enough, over UDP too.
  QueryOptions o;
  o.edns = true;
  o.udp_size = 1232;
  d = ask("www.example.com", kTypeA, o);
  EXPECT_FALSE(d.tc);
  EXPECT_EQ(d.answers.size(), 40u);
  EXPECT_LE(d.size, 1232u);
}

TEST_F(ResponderTest, EdnsSizeDecidesTruncation) {
  // 100 records: 1633 bytes with the question, 1644 with the OPT.
  make(testing::v4_servers(100));
  QueryOptions o;
  o.edns = true;
  o.udp_size = 1232;
  EXPECT_TRUE(ask("www.example.com", kTypeA, o).tc);
  o.udp_size = 1643;
  EXPECT_TRUE(ask("www.example.com", kTypeA, o).tc);
  o.udp_size = 1644;
  Decoded d = ask("www.example.com", kTypeA, o);
  EXPECT_FALSE(d.tc);
  EXPECT_EQ(d.size, 1644u);
  EXPECT_EQ(d.answers.size(), 100u);
  // A client offering more than we send over UDP gets at most kMaxUdpPayload.
  make(testing::v4_servers(300));  // 4844 bytes
  o.udp_size = 65000;
  EXPECT_TRUE(ask("www.example.com", kTypeA, o).tc);
}

TEST_F(ResponderTest, AnswersCountKeepsUdpRepliesSmall) {
  make(testing::v4_servers(100), 4);
  Decoded d = ask("www.example.com", kTypeA);
  EXPECT_FALSE(d.tc);
  EXPECT_EQ(d.answers.size(), 4u);
}

TEST_F(ResponderTest, OptRecordOnlyWhenAsked) {
  make({{"10.0.0.1:80"}});
  EXPECT_FALSE(ask("www.example.com", kTypeA).edns);
  QueryOptions o;
  o.edns = true;
  o.dnssec_ok = true;
  Decoded d = ask("www.example.com", kTypeA, o);
  EXPECT_TRUE(d.edns);
  EXPECT_EQ(d.edns_udp, kAdvertisedPayload);
  EXPECT_TRUE(d.edns_do);  // RFC 3225 3: DO copied
  EXPECT_EQ(d.answers.size(), 1u);
  // REFUSED and NODATA carry it too.
  EXPECT_TRUE(ask("other.example", kTypeA, o).edns);
  EXPECT_TRUE(ask("www.example.com", 15, o).edns);
}

TEST_F(ResponderTest, UnknownEdnsVersionIsBadvers) {
  make({{"10.0.0.1:80"}});
  QueryOptions o;
  o.edns = true;
  o.edns_version = 1;
  Decoded d = ask("www.example.com", kTypeA, o);
  ASSERT_TRUE(d.ok);
  EXPECT_TRUE(d.edns);
  EXPECT_EQ(d.edns_ext_rcode, 1);  // BADVERS = 16: upper bits 1, header RCODE 0
  EXPECT_EQ(d.rcode, 0);
  EXPECT_TRUE(d.answers.empty());
  EXPECT_EQ(responder_->stats().badvers.get(), 1u);
}

TEST_F(ResponderTest, TwoOptRecordsIsFormerr) {
  make({{"10.0.0.1:80"}});
  QueryOptions o;
  o.edns = true;
  auto q = make_query("www.example.com", kTypeA, o);
  auto opt = testing::opt_record(1232, 0, false);
  q.insert(q.end(), opt.begin(), opt.end());
  q[11] = 2;
  Decoded d = ask_raw(q);
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.rcode, LDNS_RCODE_FORMERR);
  EXPECT_FALSE(d.edns);
}

TEST_F(ResponderTest, OtherOpcodesAreNotImplemented) {
  make({{"10.0.0.1:80"}});
  QueryOptions o;
  o.opcode = 4;  // NOTIFY
  Decoded d = ask("www.example.com", kTypeA, o);
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.rcode, LDNS_RCODE_NOTIMPL);
  EXPECT_EQ(d.opcode, 4);
  EXPECT_EQ(d.qdcount, 0u);
  EXPECT_EQ(responder_->stats().notimp.get(), 1u);
}

TEST_F(ResponderTest, MalformedIsDroppedAndCounted) {
  make({{"10.0.0.1:80"}});
  auto good = make_query("www.example.com", kTypeA);
  std::vector<std::vector<uint8_t>> bad;
  bad.push_back({});
  bad.push_back(std::vector<uint8_t>(good.begin(), good.begin() + 11));  // short header
  bad.push_back(std::vector<uint8_t>(good.begin(), good.end() - 1));     // short question
  auto qd = good;
  qd[5] = 2;  // QDCOUNT 2
  bad.push_back(qd);
  auto qr = good;
  qr[2] |= 0x80;  // a response
  bad.push_back(qr);
  std::vector<uint8_t> loop = {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};  // compression loop
  bad.push_back(loop);
  std::vector<uint8_t> longname(good.begin(), good.begin() + 12);
  for (int i = 0; i < 5; ++i) {
    longname.push_back(63);
    longname.insert(longname.end(), 63, 'a');
  }
  longname.insert(longname.end(), {0, 0, 1, 0, 1});
  bad.push_back(longname);
  for (auto& p : bad) {
    EXPECT_EQ(responder_->respond(p, Transport::kUdp, out_), 0u);
    EXPECT_EQ(responder_->respond(p, Transport::kTcp, out_), 0u);
  }
  const DnsStats& s = responder_->stats();
  uint64_t dropped = 0;
  for (auto& c : s.malformed) dropped += c.get();
  EXPECT_EQ(dropped, 2 * bad.size());
  EXPECT_EQ(s.malformed[static_cast<size_t>(ParseError::kShort)].get(), 6u);
  EXPECT_EQ(s.malformed[static_cast<size_t>(ParseError::kQdcount)].get(), 2u);
  EXPECT_EQ(s.malformed[static_cast<size_t>(ParseError::kResponse)].get(), 2u);
  EXPECT_EQ(s.malformed[static_cast<size_t>(ParseError::kPointer)].get(), 2u);
  EXPECT_EQ(s.malformed[static_cast<size_t>(ParseError::kNameTooLong)].get(), 2u);
  EXPECT_EQ(s.answered.get(), 0u);
}

TEST_F(ResponderTest, SeveralZonesSeveralBackends) {
  upstream::Backend a(testing::backend_spec({{"10.0.0.1:80"}}));
  upstream::Backend b(testing::backend_spec({{"10.9.9.9:80"}}));
  std::vector<ZoneConfig> zones = {{"a.example", &a, 10, 0}, {"B.Example.", &b, 20, 0}};
  DnsStats stats;
  Responder r("dns", zones, 7, stats);
  std::vector<uint8_t> out(4096);
  auto q = make_query("a.example", kTypeA);
  Decoded d = decode({out.data(), r.respond(q, Transport::kUdp, out)});
  EXPECT_EQ(d.answers, std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(d.ttls, std::vector<uint32_t>{10});
  q = make_query("b.example", kTypeA);
  d = decode({out.data(), r.respond(q, Transport::kUdp, out)});
  EXPECT_EQ(d.answers, std::vector<std::string>{"10.9.9.9"});
  EXPECT_EQ(d.ttls, std::vector<uint32_t>{20});
}

// ---- inputs found by fuzz/dns_fuzz.cc ---------------------------------------------------------

// An A query for a zone whose backend has no IPv6 server: rebuilding the empty AAAA records passed
// a null pointer to memcpy (UBSan: undefined even for 0 bytes). Under `make asan` this test traps
// if it comes back.
TEST_F(ResponderTest, FuzzEmptyFamilyRebuild) {
  make(testing::v4_servers(60));
  const std::vector<uint8_t> query = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                                      0x00, 0x03, 'w',  'w',  'w',  0x07, 'e',  'x',  'a',  'm',  'p',
                                      'l',  'e',  0x03, 'c',  'o',  'm',  0x00, 0x00, 0x01, 0x00, 0x01};
  Decoded d = ask_raw(query);
  ASSERT_TRUE(d.ok);
  EXPECT_TRUE(d.tc);  // 60 records do not fit 512 bytes
  EXPECT_TRUE(ask_raw(query, Transport::kTcp).answers.size() == 60);
  EXPECT_TRUE(ask("www.example.com", kTypeAaaa).answers.empty());
}

TEST(NameToWire, LowerCasedWithRoot) {
  EXPECT_EQ(name_to_wire("WWW.Example.com"), std::string("\3www\7example\3com\0", 17));
  EXPECT_EQ(name_to_wire("a.b."), std::string("\1a\1b\0", 5));
  EXPECT_EQ(name_to_wire(""), std::string());
  EXPECT_EQ(name_to_wire(std::string(64, 'a')), std::string());  // label over 63
}

}  // namespace
}  // namespace fulcrum::dns
