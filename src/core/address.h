// SocketAddress: an IPv4 or IPv6 address and port, parsed from "host:port" / "[v6]:port" and
// printed back. Plain value; any thread.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace fulcrum {

class SocketAddress {
 public:
  SocketAddress() = default;
  SocketAddress(const sockaddr* sa, socklen_t len);

  // Numeric "1.2.3.4:80", "[::1]:80", or "*:80" / ":80" meaning 0.0.0.0. With resolve=true a host
  // name is looked up (blocking: configuration time only).
  static Result<SocketAddress> parse(std::string_view text, bool resolve = false);

  // The local address a socket is bound to (getsockname); empty on error.
  static SocketAddress local_of(int fd);

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss_); }
  socklen_t len() const { return len_; }
  socklen_t* len_ptr() { return &len_; }
  int family() const { return ss_.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  bool empty() const { return len_ == 0; }

  // The address bytes alone (4 or 16), for hashing and CIDR matching.
  std::string_view ip_bytes() const;
  std::string ip_string() const;  // "1.2.3.4" or "::1"
  // The same into `buf` (INET6_ADDRSTRLEN bytes at least), without allocating; false, and `buf`
  // untouched, when this is not an IP address.
  bool write_ip(char* buf, size_t size) const;
  std::string to_string() const;  // "1.2.3.4:80" or "[::1]:80"

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

}  // namespace fulcrum
