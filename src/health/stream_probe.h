// StreamProbe: the connect phase the tcp and http checks share: a non-blocking connect watched
// by the health loop, connect errors sorted into reason codes, and an abortive close. With a
// client TLS context (a backend with `tls:`), the connect phase goes on through a non-blocking
// TLS handshake (reasons L6TOUT and L6RSP), and io_send/io_recv then speak TLS; without one they
// are plain send/recv. Internal to src/health; health thread only.
#pragma once
#include <memory>
#include <string>

#include "core/address.h"
#include "core/fd.h"
#include "health/check.h"

typedef struct ssl_st SSL;

namespace fulcrum::tls {
class ClientContext;
class TlsTransport;
}  // namespace fulcrum::tls

namespace fulcrum::health {

// The outcome for a failed connect (errno from connect or SO_ERROR).
Outcome connect_failure(int err);

class StreamProbe : public Probe, public IoHandler {
 public:
  // `tls`, when given, must outlive the probe (the Check holds it).
  StreamProbe(EventLoop& loop, Done done, const tls::ClientContext* tls = nullptr);
  ~StreamProbe() override;

  // Starts connecting; done may be called before this returns.
  void start(const SocketAddress& addr);
  void expire(Millis timeout) override;
  void on_io(uint32_t events) final;

 protected:
  // The connection is up, and its TLS handshake done when there is one (the tcp check passes here).
  virtual void on_connected() = 0;
  // Readiness once connected; edge-triggered, so read and write until EAGAIN. Over TLS either
  // direction may wait on either edge: retry both on any event (tls() says so).
  virtual void on_ready(uint32_t events) = 0;
  // send(2)/recv(2), or their TLS versions: bytes, 0 at EOF (recv), or -1 with errno (EAGAIN
  // to wait for the next edge).
  ssize_t io_send(const char* data, size_t n);
  ssize_t io_recv(char* buf, size_t n);
  // The reason for io_send/io_recv's last -1: OpenSSL's over TLS, else strerror(errno).
  std::string io_error(int err) const;
  bool tls() const { return tls_ctx_ != nullptr; }
  // Closes the socket and calls done; later calls and events are ignored.
  void finish(Outcome outcome);
  bool finished() const { return !done_; }
  int fd() const { return fd_.get(); }
  bool connected() const { return connected_; }

 private:
  void close();
  void on_tcp_connected();
  void handshake();
  EventLoop& loop_;
  Done done_;
  Fd fd_;
  const tls::ClientContext* tls_ctx_;
  std::unique_ptr<tls::TlsTransport> tls_;  // from the TCP connect on, when tls_ctx_ is set
  SSL* ssl_ = nullptr;                       // tls_'s, for the verify result
  bool tcp_connected_ = false;
  bool connected_ = false;  // TCP, and TLS when asked for
};

}  // namespace fulcrum::health
