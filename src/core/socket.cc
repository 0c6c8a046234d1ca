#include "core/socket.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>

namespace fulcrum {

Result<Fd> listen_socket(const SocketAddress& addr, SocketType type, int backlog) {
  int st = type == SocketType::kStream ? SOCK_STREAM : SOCK_DGRAM;
  Fd fd(::socket(addr.family(), st | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return os_error("socket", errno);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    return os_error("setsockopt SO_REUSEPORT", errno);
  if (addr.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd.get(), addr.sa(), addr.len()) != 0)
    return os_error("bind " + addr.to_string(), errno);
  if (type == SocketType::kStream && ::listen(fd.get(), backlog) != 0)
    return os_error("listen " + addr.to_string(), errno);
  return fd;
}

Result<Fd> connect_socket(const SocketAddress& addr, bool* in_progress) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return os_error("socket", errno);
  *in_progress = false;
  if (::connect(fd.get(), addr.sa(), addr.len()) != 0) {
    if (errno != EINPROGRESS) return os_error("connect " + addr.to_string(), errno);
    *in_progress = true;
  }
  return fd;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

long raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

}  // namespace fulcrum
