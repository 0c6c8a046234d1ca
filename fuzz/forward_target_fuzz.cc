// libFuzzer target for the forward proxy's target parsing (src/http/forward_target.cc): the
// authority of an absolute-form or CONNECT target, and the ACL matcher on what it yields. Byte 0
// picks the default port (0: CONNECT, a port required) and the ACL's patterns; the rest is the
// target. Traps when a parsed authority breaks an invariant or does not survive being written
// back out and parsed again. Single-threaded.
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "fuzz_check.h"
#include "http/forward_target.h"

using namespace fulcrum::http;

namespace {

bool within(std::string_view part, std::string_view buf) {
  return part.data() >= buf.data() && part.data() + part.size() <= buf.data() + buf.size();
}

void check_authority(std::string_view text, uint16_t default_port, const HostAcl& acl) {
  Authority a;
  if (!parse_authority(text, default_port, &a)) return;
  CHECK(!a.host.empty() && within(a.host, text));
  CHECK(a.port != 0);
  CHECK(a.host.size() <= kMaxHostLength + 1);
  for (char c : a.host) CHECK(c != '@' && c != '/' && c != ' ' && c != '[' && c != ']');
  if (a.kind != Authority::Kind::kIpv6) CHECK(a.host.find(':') == std::string_view::npos);
  // Written back out, it parses to the same thing (with the port now explicit).
  std::string again =
      a.kind == Authority::Kind::kIpv6 ? "[" + std::string(a.host) + "]" : std::string(a.host);
  again += ":" + std::to_string(a.port);
  Authority b;
  CHECK(parse_authority(again, 0, &b));
  CHECK(b.host == a.host && b.port == a.port && b.kind == a.kind);
  // The ACL gives the same answer in any letter case, with or without one final dot.
  std::string upper(a.host);
  for (char& c : upper) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  CHECK(acl.denied(a.host) == acl.denied(upper));
  if (a.kind == Authority::Kind::kName && a.host.back() != '.')
    CHECK(acl.denied(a.host) == acl.denied(std::string(a.host) + "."));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const HostAcl kAcl = [] {
    fulcrum::config::Acl acl;
    acl.deny = {"*.blocked.example", "ads.example.com", "a", "*.b"};
    acl.allow_ports = {80, 443};
    return HostAcl(acl);
  }();
  uint16_t default_port = (data[0] & 1) ? 80 : 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_authority(in, default_port, kAcl);
  std::string_view authority;
  if (absolute_authority(in, &authority) == TargetError::kNone) {
    CHECK(!authority.empty() && within(authority, in));
    CHECK(authority.find_first_of("/?") == std::string_view::npos);
    check_authority(authority, 80, kAcl);
  }
  return 0;
}
