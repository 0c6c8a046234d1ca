// StreamProbe: the connect phase the tcp and http checks share: a non-blocking connect watched
// by the health loop, connect errors sorted into reason codes, and an abortive close. Internal to
// src/health; health thread only.
#pragma once
#include "core/address.h"
#include "core/fd.h"
#include "health/check.h"

namespace fulcrum::health {

// The outcome for a failed connect (errno from connect or SO_ERROR).
Outcome connect_failure(int err);

class StreamProbe : public Probe, public IoHandler {
 public:
  StreamProbe(EventLoop& loop, Done done) : loop_(loop), done_(std::move(done)) {}
  ~StreamProbe() override { close(); }

  // Starts connecting; done may be called before this returns.
  void start(const SocketAddress& addr);
  void expire(Millis timeout) override;
  void on_io(uint32_t events) final;

 protected:
  // The connection is up (the tcp check passes here).
  virtual void on_connected() = 0;
  // Readiness once connected; edge-triggered, so read and write until EAGAIN.
  virtual void on_ready(uint32_t events) = 0;
  // Closes the socket and calls done; later calls and events are ignored.
  void finish(Outcome outcome);
  bool finished() const { return !done_; }
  int fd() const { return fd_.get(); }
  bool connected() const { return connected_; }

 private:
  void close();
  EventLoop& loop_;
  Done done_;
  Fd fd_;
  bool connected_ = false;
};

}  // namespace fulcrum::health
