// The connect phase shared by the tcp and http checks, and the TLS handshake after it for the
// http check of a backend with `tls:`. Health thread only.
#include "health/stream_probe.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/socket.h"
#include "tls/tls.h"

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

StreamProbe::StreamProbe(EventLoop& loop, Done done, const tls::ClientContext* tls)
    : loop_(loop), done_(std::move(done)), tls_ctx_(tls) {}

StreamProbe::~StreamProbe() { close(); }

void StreamProbe::start(const SocketAddress& addr) {
  bool in_progress = false;
  auto fd = connect_socket(addr, &in_progress);
  if (!fd) return finish(connect_failure(fd.error().code));
  fd_ = std::move(*fd);
  if (auto r = loop_.add(fd_.get(), this); !r) return finish(Outcome{Reason::kLocalError, r.error().message});
  if (!in_progress) on_tcp_connected();  // connected on the spot (possible on loopback)
}

void StreamProbe::expire(Millis timeout) {
  if (finished()) return;
  if (!tcp_connected_)
    return finish({Reason::kL4Timeout, "timeout after " + format_millis(timeout) + " connecting"});
  if (!connected_)
    return finish({Reason::kL6Timeout, "timeout after " + format_millis(timeout) + " in the tls handshake"});
  finish({Reason::kL7Timeout, "timeout after " + format_millis(timeout)});
}

void StreamProbe::on_io(uint32_t events) {
  if (finished()) return;  // finished earlier in this turn; the socket is closed
  if (!tcp_connected_) {
    int err = socket_error(fd_.get());
    if (err != 0) return finish(connect_failure(err));
    if (!(events & EPOLLOUT)) return;
    on_tcp_connected();
  } else if (!connected_) {
    handshake();  // either edge may be the one the handshake waits for
  }
  if (finished() || !connected_) return;
  on_ready(events);
}

void StreamProbe::on_tcp_connected() {
  tcp_connected_ = true;
  if (!tls_ctx_) {
    connected_ = true;
    return on_connected();
  }
  ssl_ = tls_ctx_->new_ssl(fd_.get());
  if (!ssl_) return finish({Reason::kLocalError, "tls: out of memory"});
  tls_ = std::make_unique<tls::TlsTransport>(ssl_, false);  // owns ssl_ from here
  handshake();
}

void StreamProbe::handshake() {
  int r = tls_->handshake();
  if (r == 0) return;  // waiting for the server
  if (r < 0) {
    int err = errno;
    std::string why = !tls_->error().empty() ? tls_->error() : std::string("handshake: ") + strerror(err);
    // "certificate verify failed" says little alone: add what verification found.
    long v = SSL_get_verify_result(ssl_);
    if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) && v != X509_V_OK)
      why += std::string(" (") + X509_verify_cert_error_string(v) + ")";
    return finish({Reason::kL6Error, "tls " + why});
  }
  connected_ = true;
  on_connected();
}

ssize_t StreamProbe::io_send(const char* data, size_t n) {
  if (tls_) return tls_->write2(std::string_view(data, n), {});
  return ::send(fd_.get(), data, n, MSG_NOSIGNAL);
}

ssize_t StreamProbe::io_recv(char* buf, size_t n) {
  if (tls_) return tls_->read(buf, n);
  return ::recv(fd_.get(), buf, n, 0);
}

std::string StreamProbe::io_error(int err) const {
  if (tls_ && !tls_->error().empty()) return "tls " + tls_->error();
  return strerror(err);
}

void StreamProbe::finish(Outcome outcome) {
  if (finished()) return;
  close();
  Done done = std::move(done_);
  done_ = nullptr;
  done(std::move(outcome));
}

void StreamProbe::close() {
  tls_.reset();  // frees the SSL; no close_notify: the reset below ends it
  ssl_ = nullptr;
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
