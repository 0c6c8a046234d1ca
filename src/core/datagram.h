// Datagram helpers shared by the UDP listeners (dns, udp): replies from a socket bound to a
// wildcard address must leave from the address the request came to, or the client drops them, so
// such sockets ask for each datagram's destination (IP_PKTINFO) and hand it back on the reply.
// Plain functions on descriptors and message headers; any thread, each on its own sockets.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

#include "core/address.h"
#include "core/result.h"

namespace fulcrum {

// Room for one IPv4 or IPv6 packet-info control message (in6_pktinfo is the larger).
inline constexpr size_t kPktinfoControl = CMSG_SPACE(sizeof(in6_pktinfo));

// 0.0.0.0 or ::, where the kernel may pick the source of a reply from any local address.
bool is_wildcard(const SocketAddress& addr);

// Asks the kernel to report each datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO).
Result<void> enable_pktinfo(int fd, int family);

// Asks for `bytes` of receive and send buffer (the kernel doubles it for its bookkeeping). A busy
// UDP socket's default (~200 KiB, a few hundred small datagrams) overflows whenever its worker is
// descheduled for a moment, and every datagram that overflows is a query lost; NSD asks for 1 MiB
// as well. Forced past net.core.rmem_max where the process may (CAP_NET_ADMIN), else capped by it.
void grow_socket_buffers(int fd, int bytes);

// Replies without IPv4 fragmentation (RFC 9715, fragmentation avoidance in DNS): DF set and
// path-MTU information ignored (IP_PMTUDISC_PROBE), so a forged ICMP "fragmentation needed"
// cannot make us fragment. Such datagrams carry IP ID 0 (RFC 6864), which spares the kernel's
// shared ID generator on every reply (the default, IP_PMTUDISC_WANT, sets DF but still draws an
// ID, as the packet may yet be fragmented). A datagram larger than the interface's MTU then
// fails with EMSGSIZE: send it with send_fragmentable(). For the IPv4 side of a socket.
Result<void> set_dont_fragment(int fd);
// Sends one message with fragmentation allowed (DF off for this call only); the result of sendmsg.
ssize_t send_fragmentable(int fd, const msghdr* m);

// Turns the packet-info control data received with a request, in place, into the control data
// for its reply: source = the address the request was sent to. Returns the length to pass as
// msg_controllen, 0 when the data holds no packet info.
size_t pktinfo_for_reply(unsigned char* control, size_t len);

}  // namespace fulcrum
