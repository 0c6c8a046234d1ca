// The connect phase shared by the tcp and http checks. Health thread only.
#include "health/stream_probe.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/socket.h"

namespace fulcrum::health {

Outcome connect_failure(int err) {
  switch (err) {
    case ECONNREFUSED:
      return {Reason::kL4Refused, "connection refused"};
    case ETIMEDOUT:
      return {Reason::kL4Timeout, "connect timed out"};
    // Our side ran out of something: not the server's fault, but the check did not pass either.
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
      return {Reason::kLocalError, std::string("cannot connect: ") + strerror(err)};
    default:
      return {Reason::kL4Error, strerror(err)};
  }
}

void StreamProbe::start(const SocketAddress& addr) {
  bool in_progress = false;
  auto fd = connect_socket(addr, &in_progress);
  if (!fd) return finish(connect_failure(fd.error().code));
  fd_ = std::move(*fd);
  if (auto r = loop_.add(fd_.get(), this); !r) return finish(Outcome{Reason::kLocalError, r.error().message});
  if (!in_progress) {  // connected on the spot (possible on loopback)
    connected_ = true;
    on_connected();
  }
}

void StreamProbe::expire(Millis timeout) {
  if (finished()) return;
  if (!connected_)
    return finish({Reason::kL4Timeout, "timeout after " + format_millis(timeout) + " connecting"});
  finish({Reason::kL7Timeout, "timeout after " + format_millis(timeout)});
}

void StreamProbe::on_io(uint32_t events) {
  if (finished()) return;  // finished earlier in this turn; the socket is closed
  if (!connected_) {
    int err = socket_error(fd_.get());
    if (err != 0) return finish(connect_failure(err));
    if (!(events & EPOLLOUT)) return;
    connected_ = true;
    on_connected();
    if (finished()) return;
  }
  on_ready(events);
}

void StreamProbe::finish(Outcome outcome) {
  if (finished()) return;
  close();
  Done done = std::move(done_);
  done_ = nullptr;
  done(std::move(outcome));
}

void StreamProbe::close() {
  if (!fd_) return;
  loop_.remove(fd_.get());
  // Close with a reset (SO_LINGER 0), as HAProxy does for checks: the side that closes first
  // keeps TIME_WAIT, and 1,000 servers checked every 2s would otherwise hold some 30,000 local
  // ports in TIME_WAIT at any moment.
  linger l{1, 0};
  setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  fd_.reset();
}

}  // namespace fulcrum::health
