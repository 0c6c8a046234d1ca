#include "l4/proxy_protocol.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace fulcrum::l4 {
namespace {
constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
}

size_t write_proxy_header(config::ProxyProtocol version, const SocketAddress& client,
                          const SocketAddress& local, char (&out)[kMaxProxyHeader]) {
  bool same = client.family() == local.family() && (client.family() == AF_INET || client.family() == AF_INET6);
  if (version == config::ProxyProtocol::kV1) {
    int n;
    if (!same) {
      n = snprintf(out, sizeof(out), "PROXY UNKNOWN\r\n");
    } else {
      n = snprintf(out, sizeof(out), "PROXY %s %s %s %u %u\r\n", client.family() == AF_INET ? "TCP4" : "TCP6",
                   client.ip_string().c_str(), local.ip_string().c_str(), client.port(), local.port());
    }
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  if (version != config::ProxyProtocol::kV2) return 0;
  auto* p = reinterpret_cast<unsigned char*>(out);
  std::memcpy(p, kV2Signature, sizeof(kV2Signature));
  if (!same) {
    p[12] = 0x20;  // version 2, LOCAL: the backend uses the connection's own addresses
    p[13] = 0x00;
    p[14] = p[15] = 0;
    return 16;
  }
  p[12] = 0x21;  // version 2, PROXY
  bool v4 = client.family() == AF_INET;
  p[13] = v4 ? 0x11 : 0x21;  // TCP over IPv4 / IPv6
  uint16_t len = v4 ? 12 : 36;
  p[14] = static_cast<unsigned char>(len >> 8);
  p[15] = static_cast<unsigned char>(len & 0xff);
  size_t off = 16;
  auto src = client.ip_bytes(), dst = local.ip_bytes();
  std::memcpy(p + off, src.data(), src.size());
  off += src.size();
  std::memcpy(p + off, dst.data(), dst.size());
  off += dst.size();
  uint16_t sp = htons(client.port()), dp = htons(local.port());
  std::memcpy(p + off, &sp, 2);
  std::memcpy(p + off + 2, &dp, 2);
  return off + 4;
}

}  // namespace fulcrum::l4
