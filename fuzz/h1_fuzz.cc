// libFuzzer target for the HTTP/1 codec (src/http/h1_parser.cc, src/http/chunked.cc). Byte 0
// picks the mode (request head, response head, chunked body) and byte 1 seeds the split points
// and limits; the rest is the message. Besides ASan/UBSan findings it traps when feeding the
// bytes in pieces changes any result, or when a parsed head breaks an invariant. Single-threaded.
#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "fuzz_check.h"
#include "http/chunked.h"
#include "http/h1_parser.h"

using namespace fulcrum::http;

namespace {

// A tiny deterministic generator for split points and limits.
struct Rng {
  uint32_t s;
  uint32_t next() {
    s = s * 1664525u + 1013904223u;
    return s >> 8;
  }
  size_t below(size_t n) { return n ? next() % n : 0; }
};

struct Snapshot {
  ParseStatus status = ParseStatus::kNeedMore;
  ParseError error = ParseError::kNone;
  size_t consumed = 0;
  std::string method_text, target, host, reason;
  int status_code = 0;
  std::vector<std::tuple<std::string, std::string, HeaderToken>> fields;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = false, upgrade = false, expect_continue = false, has_host = false, other = false;
  TokenSet options;
  bool unknown = false;
  bool operator==(const Snapshot&) const = default;
};

bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && std::strchr("!#$%&'*+-.^_`|~", c));
}

bool within(std::string_view part, std::string_view buf) {
  return part.empty() || (part.data() >= buf.data() && part.data() + part.size() <= buf.data() + buf.size());
}

template <class Head>
Snapshot snap(const ParseResult& r, const Head& h, std::string_view buf, size_t capacity) {
  Snapshot s;
  s.status = r.status;
  s.error = r.error;
  s.consumed = r.consumed;
  if (r.failed()) {
    int st = r.http_status();
    CHECK(st == 400 || st == 431 || st == 501 || st == 505);
    CHECK(r.error != ParseError::kNone);
  }
  if (!r.done()) return s;
  // Invariants of a complete head.
  CHECK(r.consumed >= 4 && r.consumed <= buf.size());
  CHECK(buf.substr(r.consumed - 4, 4) == "\r\n\r\n");
  CHECK(h.headers.size() <= capacity);
  for (const Header& f : h.headers) {
    CHECK(!f.name.empty() && within(f.name, buf) && within(f.value, buf));
    for (unsigned char c : f.name) CHECK(is_tchar(c));
    for (unsigned char c : f.value) CHECK(c != '\r' && c != '\n' && c != 0);
    CHECK(f.value.empty() || (f.value.front() != ' ' && f.value.back() != ' ' && f.value.back() != '\t'));
    CHECK(f.token == lookup_header_token(f.name));
    CHECK(h.find(f.token) != nullptr && h.find(f.token) <= &f);
    // Hop-by-hop names and names Connection lists are stripped; Host never is.
    bool strip = must_strip(h, f);
    if (is_hop_by_hop(f.token)) CHECK(strip);
    if (f.token == HeaderToken::kHost) CHECK(!strip);
    if (f.token == HeaderToken::kUnknown) CHECK(strip == connection_lists(h, f.name));
    s.fields.emplace_back(std::string(f.name), std::string(f.value), f.token);
  }
  s.body = h.body;
  s.content_length = h.content_length;
  s.keep_alive = h.keep_alive;
  s.upgrade = h.upgrade;
  s.other = h.other_transfer_codings;
  s.options = h.connection_options;
  s.unknown = h.connection_lists_unknown;
  if constexpr (std::is_same_v<Head, RequestHead>) {
    CHECK(within(h.method_text, buf) && within(h.target, buf) && within(h.host, buf));
    CHECK(!h.target.empty() && !h.method_text.empty());
    s.method_text = h.method_text;
    s.target = h.target;
    s.host = h.host;
    s.expect_continue = h.expect_continue;
    s.has_host = h.has_host;
    CHECK(h.version == Version::kHttp10 || h.has_host);
    CHECK(!(h.body == BodyKind::kChunked && h.version == Version::kHttp10));
  } else {
    CHECK(h.status >= 100 && h.status <= 599);
    CHECK(within(h.reason, buf));
    s.status_code = h.status;
    s.reason = h.reason;
  }
  return s;
}

template <class Parser, class Head>
ParseResult call(Parser& p, std::string_view buf, std::span<Header> fields, Head* h, Method m) {
  if constexpr (std::is_same_v<Head, RequestHead>) {
    (void)m;
    return p.parse(buf, fields, h);
  } else {
    return p.parse(buf, fields, h, m);
  }
}

// Parses `in` whole, then in pieces three ways; all must agree.
template <class Parser, class Head>
Snapshot check_head(std::string_view in, Rng& rng, Method m, ParseResult* whole_result) {
  H1Limits limits;
  if (rng.below(4) == 0) limits.max_head_bytes = 16 + rng.below(512);
  size_t capacity = rng.below(4) == 0 ? rng.below(8) : 100;
  std::vector<Header> fields(capacity);

  Head h;
  Parser whole(limits);
  ParseResult r = call(whole, in, std::span<Header>(fields), &h, m);
  *whole_result = r;
  Snapshot expect = snap(r, h, in, capacity);

  // Cut points, shared by the three feeds.
  std::vector<size_t> ends;
  for (size_t at = 0; at < in.size();) {
    at += 1 + rng.below(rng.below(2) ? 4 : 64);
    ends.push_back(std::min(at, in.size()));
  }
  if (ends.empty()) ends.push_back(0);

  for (int feed = 0; feed < 3; ++feed) {
    Parser p(limits);
    Head hp;
    ParseResult rp;
    std::unique_ptr<char[]> copy;
    std::string_view part;
    for (size_t end : ends) {
      if (feed == 0) {
        // Same buffer growing: poison what has not "arrived" so a read past it is caught.
        part = in.substr(0, end);
        ASAN_POISON_MEMORY_REGION(in.data() + end, in.size() - end);
      } else {
        // A fresh exact-size buffer each time (a regrown read buffer).
        copy.reset(new char[end ? end : 1]);
        std::memcpy(copy.get(), in.data(), end);
        part = std::string_view(copy.get(), end);
        // feed 2: another parse scribbled over the shared field array in between.
        if (feed == 2)
          for (Header& f : fields) f = Header{"X", "junk", HeaderToken::kCookie};
      }
      rp = call(p, part, std::span<Header>(fields), &hp, m);
      ASAN_UNPOISON_MEMORY_REGION(in.data(), in.size());
      if (!rp.need_more()) break;
    }
    CHECK(snap(rp, hp, part, capacity) == expect);
    if (rp.done() && feed == 1) {
      // Done repeats until reset(), re-sliced from wherever the bytes are now.
      std::string moved(part);
      ParseResult again = call(p, moved, std::span<Header>(fields), &hp, m);
      CHECK(snap(again, hp, moved, capacity) == expect);
    }
  }
  return expect;
}

// Decodes `in` in pieces (each its own allocation); returns what came out.
struct ChunkOutcome {
  ChunkEvent end = ChunkEvent::kNeedMore;
  ParseError error = ParseError::kNone;
  std::string data, trailer;
  size_t consumed = 0;
  bool operator==(const ChunkOutcome&) const = default;
};

ChunkOutcome decode(std::string_view in, const std::vector<size_t>& ends, ChunkedLimits limits) {
  ChunkedDecoder dec(limits);
  ChunkOutcome out;
  size_t from = 0;
  for (size_t end : ends) {
    std::unique_ptr<char[]> piece(new char[end - from + 1]);
    std::memcpy(piece.get(), in.data() + from, end - from);
    std::string_view rest(piece.get(), end - from);
    from = end;
    for (;;) {
      ChunkStep s = dec.decode(rest);
      CHECK(s.consumed <= rest.size());
      CHECK(s.bytes.empty() || within(s.bytes, rest.substr(0, s.consumed)));
      rest.remove_prefix(s.consumed);
      out.consumed += s.consumed;
      if (s.event == ChunkEvent::kData) {
        CHECK(!s.bytes.empty());
        out.data.append(s.bytes);
      } else if (s.event == ChunkEvent::kTrailer) {
        out.trailer.append(s.bytes);
      } else if (s.event == ChunkEvent::kNeedMore) {
        CHECK(rest.empty());
        break;
      } else {
        out.end = s.event;
        out.error = s.error;
        if (s.event == ChunkEvent::kError) {
          CHECK(s.error != ParseError::kNone);
          out.trailer.clear();  // streamed before the error; how much depends on the split
        }
        CHECK(dec.decode(rest).event == s.event);
        return out;
      }
      if (rest.empty()) break;
    }
  }
  CHECK(out.data.size() == dec.data_bytes());
  return out;
}

void check_chunked(std::string_view in, Rng& rng) {
  ChunkedLimits limits;
  if (rng.below(4) == 0) {
    limits.max_chunk_line_bytes = 1 + rng.below(64);
    limits.max_trailer_bytes = 1 + rng.below(256);
  }
  ChunkOutcome whole = decode(in, {in.size()}, limits);
  std::vector<size_t> ends;
  for (size_t at = 0; at < in.size();) {
    at += 1 + rng.below(rng.below(2) ? 3 : 40);
    ends.push_back(std::min(at, in.size()));
  }
  if (ends.empty()) ends.push_back(0);
  CHECK(decode(in, ends, limits) == whole);
  std::vector<size_t> bytes;
  for (size_t i = 1; i <= in.size(); ++i) bytes.push_back(i);
  if (!bytes.empty()) CHECK(decode(in, bytes, limits) == whole);
  if (whole.end == ChunkEvent::kDone) {
    // The decoded body never exceeds its encoding, and the end is an empty line.
    CHECK(whole.data.size() < whole.consumed);
    CHECK(in.substr(whole.consumed - 2, 2) == "\r\n");
  }
}

// Writes a parsed request back out canonically; parsing that must give the same head.
void check_reserialized(const Snapshot& s, std::string_view in) {
  std::string out = s.method_text + " " + s.target + " ";
  size_t line_end = in.find("\r\n", in.starts_with("\r\n") ? 2 : 0);
  std::string_view first = in.substr(0, line_end);
  out += first.substr(first.size() - 8);  // the version as received
  out += "\r\n";
  for (const auto& [name, value, token] : s.fields) out += name + ": " + value + "\r\n";
  out += "\r\n";
  std::array<Header, 100> fields;
  RequestHead h;
  ParseResult r = parse_request(out, fields, &h);
  CHECK(r.done());
  Snapshot again = snap(r, h, out, fields.size());
  again.consumed = s.consumed;
  CHECK(again == s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  Rng rng{data[1] * 2654435761u + 1};
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  ParseResult r;
  switch (mode % 3) {
    case 0: {
      Snapshot s = check_head<RequestParser, RequestHead>(in, rng, Method::kGet, &r);
      if (r.done()) {
        check_reserialized(s, in);
        if (s.body == BodyKind::kChunked) check_chunked(in.substr(r.consumed), rng);
      }
      break;
    }
    case 1: {
      static constexpr Method kMethods[] = {Method::kGet, Method::kHead, Method::kConnect, Method::kPost};
      Method m = kMethods[(mode / 3) % 4];
      Snapshot s = check_head<ResponseParser, ResponseHead>(in, rng, m, &r);
      if (r.done() && s.body == BodyKind::kChunked) check_chunked(in.substr(r.consumed), rng);
      break;
    }
    default:
      check_chunked(in, rng);
      break;
  }
  return 0;
}
