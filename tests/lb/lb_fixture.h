// Helpers for the lb tests: a backend built by hand from config structs (no YAML), candidate
// lists taken from it, and client addresses. Test thread only.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "lb/balancer.h"
#include "upstream/server.h"

namespace fulcrum::lb::testing {

struct ServerSpec {
  std::string name;
  uint32_t weight = 1;
  bool backup = false;
};

inline config::Backend backend_spec(const std::vector<ServerSpec>& servers,
                                    std::string balance = "round_robin") {
  config::Backend spec;
  spec.name = "test";
  spec.balance = std::move(balance);
  spec.health.check = "none";  // servers start up
  for (size_t i = 0; i < servers.size(); ++i) {
    config::Server s;
    s.name = servers[i].name;
    s.weight = servers[i].weight;
    s.backup = servers[i].backup;
    s.address_text = "127.0.0.1:" + std::to_string(20000 + i);
    s.address = SocketAddress::parse(s.address_text).value();
    spec.servers.push_back(std::move(s));
  }
  return spec;
}

// Servers named s0, s1, ... with the given weights.
inline std::vector<ServerSpec> weighted(const std::vector<uint32_t>& weights) {
  std::vector<ServerSpec> out;
  for (size_t i = 0; i < weights.size(); ++i) out.push_back({"s" + std::to_string(i), weights[i]});
  return out;
}

// Every server of the backend, with its current weight.
inline std::vector<Candidate> all_of(const upstream::Backend& b) {
  std::vector<Candidate> out;
  for (auto& s : b.servers()) out.push_back({s.get(), s->scaled_weight()});
  return out;
}

// The servers at these positions.
inline std::vector<Candidate> some_of(const upstream::Backend& b, const std::vector<size_t>& which) {
  std::vector<Candidate> out;
  for (size_t i : which) out.push_back({b.servers()[i].get(), b.servers()[i]->scaled_weight()});
  return out;
}

inline SocketAddress ipv4(uint32_t host_order, uint16_t port = 40000) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(host_order);
  return SocketAddress(reinterpret_cast<const sockaddr*>(&sin), sizeof(sin));
}

// 2001:db8::/64 plus a 64-bit interface id.
inline SocketAddress ipv6(uint64_t low, uint16_t port = 40000) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_addr.s6_addr[0] = 0x20;
  sin6.sin6_addr.s6_addr[1] = 0x01;
  sin6.sin6_addr.s6_addr[2] = 0x0d;
  sin6.sin6_addr.s6_addr[3] = 0xb8;
  for (int i = 0; i < 8; ++i) sin6.sin6_addr.s6_addr[15 - i] = static_cast<uint8_t>(low >> (8 * i));
  return SocketAddress(reinterpret_cast<const sockaddr*>(&sin6), sizeof(sin6));
}

// ::ffff:a.b.c.d, as a dual-stack listener reports an IPv4 client.
inline SocketAddress ipv4_mapped(uint32_t host_order) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr.s6_addr[10] = 0xff;
  sin6.sin6_addr.s6_addr[11] = 0xff;
  for (int i = 0; i < 4; ++i) sin6.sin6_addr.s6_addr[15 - i] = static_cast<uint8_t>(host_order >> (8 * i));
  return SocketAddress(reinterpret_cast<const sockaddr*>(&sin6), sizeof(sin6));
}

// Counts picks per server name.
using Tally = std::map<std::string, int>;

// Ends every connection a test began, so servers (shared by a fixture) start the next test idle.
inline void end_all(const upstream::Backend& b) {
  for (auto& s : b.servers())
    while (s->active() > 0) s->end();
}

}  // namespace fulcrum::lb::testing
