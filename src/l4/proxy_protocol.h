// PROXY protocol headers (v1 text, v2 binary) that tell a backend the client's real address.
// https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt. Any thread; no allocation.
#pragma once
#include <cstddef>

#include "config/config.h"
#include "core/address.h"

namespace fulcrum::l4 {

// Largest header: v1 is at most 107 bytes, v2 with IPv6 addresses 52.
constexpr size_t kMaxProxyHeader = 108;

// Writes the header for a connection from `client` to `local` into out; returns its length,
// or 0 for kOff. Mixed families (v4 client on a v6 listener) are sent as UNKNOWN/LOCAL.
size_t write_proxy_header(config::ProxyProtocol version, const SocketAddress& client,
                          const SocketAddress& local, char (&out)[kMaxProxyHeader]);

}  // namespace fulcrum::l4
