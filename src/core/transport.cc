// See transport.h. Worker thread only.
#include "core/transport.h"

#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

namespace fulcrum {

ssize_t SocketTransport::read(char* buf, size_t n) { return ::recv(fd_, buf, n, 0); }

// One system call for both pieces (a response head and the first body bytes).
ssize_t SocketTransport::write2(std::string_view a, std::string_view b, bool more) {
  iovec iov[2];
  int n = 0;
  if (!a.empty()) iov[n++] = {const_cast<char*>(a.data()), a.size()};
  if (!b.empty()) iov[n++] = {const_cast<char*>(b.data()), b.size()};
  if (n == 0) return 0;
  int flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0);
  if (n == 1) return ::send(fd_, iov[0].iov_base, iov[0].iov_len, flags);
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  return ::sendmsg(fd_, &msg, flags);
}

// From the page cache to the socket, no copy here.
ssize_t SocketTransport::send_file(int file, uint64_t offset, size_t n) {
  off_t off = static_cast<off_t>(offset);
  return ::sendfile(fd_, file, &off, n);
}

void SocketTransport::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

bool SocketTransport::peek_unsafe() {
  char byte;
  ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EINTR));  // bytes, the FIN, or an error
}

}  // namespace fulcrum
