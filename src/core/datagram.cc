// Packet-info and buffer helpers for UDP sockets (see datagram.h). Stateless; any thread.
#include "core/datagram.h"

#include <cerrno>
#include <cstring>

namespace fulcrum {

bool is_wildcard(const SocketAddress& addr) {
  for (char c : addr.ip_bytes())
    if (c != 0) return false;
  return !addr.empty();
}

Result<void> enable_pktinfo(int fd, int family) {
  int one = 1;
  int rc = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
                              : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
  if (rc != 0) return os_error("setsockopt pktinfo", errno);
  return {};
}

Result<void> set_dont_fragment(int fd) {
  int v = IP_PMTUDISC_PROBE;
  if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v)) != 0) return os_error("setsockopt IP_MTU_DISCOVER", errno);
  return {};
}

ssize_t send_fragmentable(int fd, const msghdr* m) {
  int omit = IP_PMTUDISC_OMIT, probe = IP_PMTUDISC_PROBE;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &omit, sizeof(omit));
  ssize_t n = ::sendmsg(fd, m, MSG_DONTWAIT);
  int err = errno;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe, sizeof(probe));
  errno = err;
  return n;
}

void grow_socket_buffers(int fd, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

size_t pktinfo_for_reply(unsigned char* control, size_t len) {
  if (len == 0) return 0;
  msghdr m{};
  m.msg_control = control;
  m.msg_controllen = len;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      // ipi_spec_dst is the source the kernel uses; ifindex 0 lets routing pick the interface
      // (the one it arrived on may not be the way back, e.g. with asymmetric routes).
      info.ipi_spec_dst = info.ipi_addr;
      info.ipi_ifindex = 0;
      std::memmove(control, c, CMSG_SPACE(sizeof(info)));
      auto* out = reinterpret_cast<cmsghdr*>(control);
      std::memcpy(CMSG_DATA(out), &info, sizeof(info));
      return CMSG_SPACE(sizeof(info));
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      // ipi6_addr (the destination) becomes the source; the interface stays, which link-local
      // addresses need.
      std::memmove(control, c, CMSG_SPACE(sizeof(in6_pktinfo)));
      return CMSG_SPACE(sizeof(in6_pktinfo));
    }
  }
  return 0;
}

}  // namespace fulcrum
