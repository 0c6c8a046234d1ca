// The DNS query parser: reads a query's header, its one question and its OPT record, strictly and
// in place (RFC 1035 4.1, RFC 6891 6.1), bounded by the packet's length, allocating nothing. It
// is what untrusted bytes meet first (fuzz/dns_fuzz.cc). A pure function: any thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace fulcrum::dns {

inline constexpr size_t kHeaderSize = 12;
// RFC 1035 2.3.4: a name is at most 255 bytes in wire form, root label included.
inline constexpr size_t kMaxName = 255;
// RFC 1035 4.2.1 without EDNS, and the floor of every EDNS size (RFC 6891 6.2.5).
inline constexpr uint16_t kMinUdpPayload = 512;

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kTypeAny = 255;
inline constexpr uint16_t kClassIn = 1;
inline constexpr uint16_t kClassAny = 255;
inline constexpr uint8_t kOpcodeQuery = 0;

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5
};

// Why a packet was dropped unanswered.
enum class ParseError : uint8_t {
  kNone,
  kShort,        // ends inside the header, the question or a record
  kResponse,     // QR set: a response, never answered (a reflection loop otherwise)
  kQdcount,      // a query must ask exactly one question
  kLabel,        // a label type other than a plain label (RFC 6891 retired the extended ones)
  kPointer,      // a compression pointer in the question: it can only point back into itself
  kNameTooLong,  // over 255 bytes in wire form
  kTrailing,     // bytes after the last record the counts announce
  kCount
};
inline constexpr size_t kParseErrors = static_cast<size_t>(ParseError::kCount);
const char* parse_error_name(ParseError e);

struct Query {
  uint16_t id = 0;
  uint8_t opcode = 0;
  bool rd = false;  // copied into the reply (RFC 1035 4.1.1)
  bool cd = false;  // copied into the reply (RFC 4035 3.1.6)
  // The question, for opcode QUERY only. packet[kHeaderSize, question_end) is echoed verbatim,
  // so a client's 0x20 case randomisation comes back as it went out.
  size_t question_end = kHeaderSize;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  uint8_t name_len = 0;    // wire length, root label included
  uint8_t name[kMaxName];  // the name in wire form, lower-cased, for the zone lookup
  // EDNS(0), RFC 6891.
  bool edns = false;      // an OPT record was present
  bool edns_bad = false;  // two OPT records, or one not owned by the root: FORMERR (6.1.1)
  uint8_t edns_version = 0;
  bool dnssec_ok = false;              // the DO bit, echoed (RFC 3225 3)
  uint16_t udp_size = kMinUdpPayload;  // what the client can receive over UDP, at least 512

  std::span<const uint8_t> lower_name() const { return {name, name_len}; }
};

// kNone when `packet` is a query worth answering. A query whose opcode is not QUERY is read up to
// its header only (the reply is NOTIMP and echoes nothing else).
ParseError parse_query(std::span<const uint8_t> packet, Query* q);

}  // namespace fulcrum::dns
