#include "core/address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <charconv>
#include <cstring>

namespace fulcrum {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
  if (len > sizeof(ss_)) len = sizeof(ss_);
  std::memcpy(&ss_, sa, len);
  len_ = len;
}

Result<SocketAddress> SocketAddress::parse(std::string_view text, bool resolve) {
  std::string_view host, port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return Error{0, "bad address '" + std::string(text) + "': expected [IPv6]:port"};
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return Error{0, "bad address '" + std::string(text) + "': expected host:port"};
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return Error{0, "bad address '" + std::string(text) + "': write IPv6 as [addr]:port"};
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535)
    return Error{0, "bad address '" + std::string(text) + "': port must be 0-65535"};
  if (host.empty() || host == "*") host = "0.0.0.0";

  SocketAddress out;
  std::string h(host);
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET, h.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<uint16_t>(port));
    return SocketAddress(reinterpret_cast<sockaddr*>(&v4), sizeof(v4));
  }
  if (inet_pton(AF_INET6, h.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<uint16_t>(port));
    return SocketAddress(reinterpret_cast<sockaddr*>(&v6), sizeof(v6));
  }
  if (!resolve) return Error{0, "bad address '" + std::string(text) + "': not a numeric IP"};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr)
    return Error{0, "bad address '" + std::string(text) + "': cannot resolve '" + h + "': " + gai_strerror(rc)};
  out = SocketAddress(res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  out.set_port(static_cast<uint16_t>(port));
  return out;
}

SocketAddress SocketAddress::local_of(int fd) {
  SocketAddress a;
  a.len_ = sizeof(a.ss_);  // in/out: the room given, then the length returned
  if (getsockname(fd, a.sa(), &a.len_) != 0) a.len_ = 0;
  return a;
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
}

std::string_view SocketAddress::ip_bytes() const {
  if (family() == AF_INET)
    return {reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr), 4};
  if (family() == AF_INET6)
    return {reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr), 16};
  return {};
}

bool SocketAddress::write_ip(char* buf, size_t size) const {
  if (family() == AF_INET)
    return inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf,
                     static_cast<socklen_t>(size)) != nullptr;
  if (family() == AF_INET6)
    return inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf,
                     static_cast<socklen_t>(size)) != nullptr;
  return false;
}

std::string SocketAddress::ip_string() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  write_ip(buf, sizeof(buf));
  return buf;
}

std::string SocketAddress::to_string() const {
  if (family() == AF_INET6) return "[" + ip_string() + "]:" + std::to_string(port());
  if (family() == AF_INET) return ip_string() + ":" + std::to_string(port());
  return "-";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  return a.family() == b.family() && a.port() == b.port() && a.ip_bytes() == b.ip_bytes();
}

}  // namespace fulcrum
