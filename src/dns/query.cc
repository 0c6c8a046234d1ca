// The strict, in-place DNS query parser (see query.h): header, one question, OPT. No allocation,
// no pointer ever followed. Pure; any thread.
#include "dns/query.h"

namespace fulcrum::dns {

const char* parse_error_name(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "ok";
    case ParseError::kShort:
      return "short";
    case ParseError::kResponse:
      return "response";
    case ParseError::kQdcount:
      return "qdcount";
    case ParseError::kLabel:
      return "label";
    case ParseError::kPointer:
      return "pointer";
    case ParseError::kNameTooLong:
      return "name_too_long";
    case ParseError::kTrailing:
      return "trailing";
    case ParseError::kCount:
      break;
  }
  return "?";
}

namespace {

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// Skips a name in a record past the question. A compression pointer ends a name, and skipping
// never follows one, so no input can make this loop; each step moves forward by at least 1.
ParseError skip_name(std::span<const uint8_t> p, size_t* pos) {
  size_t i = *pos;
  size_t total = 0;
  for (;;) {
    if (i >= p.size()) return ParseError::kShort;
    uint8_t len = p[i];
    if ((len & 0xC0) == 0xC0) {
      if (i + 2 > p.size()) return ParseError::kShort;
      *pos = i + 2;
      return ParseError::kNone;
    }
    if (len & 0xC0) return ParseError::kLabel;
    total += 1u + len;
    if (total > kMaxName) return ParseError::kNameTooLong;
    if (len == 0) {
      *pos = i + 1;
      return ParseError::kNone;
    }
    i += 1u + len;
  }
}

}  // namespace

ParseError parse_query(std::span<const uint8_t> p, Query* q) {
  if (p.size() < kHeaderSize) return ParseError::kShort;
  q->id = u16(&p[0]);
  uint8_t flags1 = p[2];
  if (flags1 & 0x80) return ParseError::kResponse;
  q->opcode = (flags1 >> 3) & 0x0F;
  q->rd = flags1 & 0x01;
  q->cd = p[3] & 0x10;
  q->edns = q->edns_bad = q->dnssec_ok = false;
  q->edns_version = 0;
  q->udp_size = kMinUdpPayload;
  q->question_end = kHeaderSize;
  q->name_len = 0;
  if (q->opcode != kOpcodeQuery) return ParseError::kNone;
  if (u16(&p[4]) != 1) return ParseError::kQdcount;
  uint32_t records = uint32_t{u16(&p[6])} + u16(&p[8]);
  uint16_t additional = u16(&p[10]);

  // The question name, lower-cased as it is copied. No pointers: nothing precedes the question
  // but the header, so a pointer here would aim at the header or back into this very name.
  size_t i = kHeaderSize;
  size_t total = 0;
  for (;;) {
    if (i >= p.size()) return ParseError::kShort;
    uint8_t len = p[i];
    if ((len & 0xC0) == 0xC0) return ParseError::kPointer;
    if (len & 0xC0) return ParseError::kLabel;
    if (total + 1u + len > kMaxName) return ParseError::kNameTooLong;
    if (i + 1u + len > p.size()) return ParseError::kShort;
    q->name[total++] = len;
    ++i;
    if (len == 0) break;
    for (size_t k = 0; k < len; ++k) {
      uint8_t c = p[i + k];
      q->name[total + k] = (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c;
    }
    total += len;
    i += len;
  }
  if (i + 4 > p.size()) return ParseError::kShort;
  q->name_len = static_cast<uint8_t>(total);
  q->qtype = u16(&p[i]);
  q->qclass = u16(&p[i + 2]);
  i += 4;
  q->question_end = i;

  // Answer and authority records (none in a normal query) are skipped; the additional section
  // may hold the OPT record. Every record takes at least 11 bytes, so the counts cannot make us
  // loop past the packet's end.
  uint32_t all = records + additional;
  for (uint32_t r = 0; r < all; ++r) {
    size_t name_at = i;
    if (auto e = skip_name(p, &i); e != ParseError::kNone) return e;
    if (i + 10 > p.size()) return ParseError::kShort;
    uint16_t type = u16(&p[i]);
    uint16_t rdlen = u16(&p[i + 8]);
    if (i + 10 + rdlen > p.size()) return ParseError::kShort;
    if (r >= records && type == kTypeOpt) {
      if (q->edns || i != name_at + 1 || p[name_at] != 0) {
        q->edns_bad = true;
      } else {
        q->edns = true;
        q->udp_size = u16(&p[i + 2]) < kMinUdpPayload ? kMinUdpPayload : u16(&p[i + 2]);
        // TTL field: extended RCODE, version, then the DO bit and 15 zero bits (6.1.3).
        q->edns_version = p[i + 5];
        q->dnssec_ok = p[i + 6] & 0x80;
      }
    }
    i += 10u + rdlen;
  }
  if (i != p.size()) return ParseError::kTrailing;
  return ParseError::kNone;
}

}  // namespace fulcrum::dns
