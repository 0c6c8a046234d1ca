// The table of health check kinds: the word `health.check` takes, its factory, and a line for
// `check` and the docs. A new kind is one file plus one row here (STYLE 14). Read-only; any thread.
#include <algorithm>
#include <iterator>

#include "health/kinds.h"

namespace fulcrum::health {
namespace {

constexpr Kind kKinds[] = {
    {"tcp", make_tcp_check, "a full TCP connect to the server's address"},
    {"tcp_half_open", make_tcp_half_open_check,
     "SYN, wait for SYN-ACK, reset; needs CAP_NET_RAW, falls back to tcp without it"},
    {"http", make_http_check,
     "GET path; passes on a status in expect_status and, if set, expect_body in the body"},
    {"icmp", make_icmp_check, "ICMP echo request and reply (raw socket)"},
    {"none", nullptr, "no active checks: servers are up unless ejected or set down"},
};

}  // namespace

std::span<const Kind> kinds() { return kKinds; }

const Kind* find_kind(std::string_view word) {
  auto it = std::find_if(std::begin(kKinds), std::end(kKinds), [&](const Kind& k) { return k.word == word; });
  return it == std::end(kKinds) ? nullptr : &*it;
}

}  // namespace fulcrum::health
