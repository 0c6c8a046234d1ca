// The demo's load agents (SPEC: Server-reported load): each demo application server measures the
// CPU its own thread uses and answers fulcrum's agent probes with it, so a newcomer sees weights
// follow real load. CpuMeter and LoadAgent live on the demo server's own EventLoop thread; only
// that thread touches them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/address.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/result.h"

namespace fulcrum::app {

// The share of one CPU the calling loop's thread used over about the last second: thread CPU
// time (CLOCK_THREAD_CPUTIME_ID) sampled every 250ms, over a window of four samples. Construct
// and read it on the loop's thread.
class CpuMeter {
 public:
  explicit CpuMeter(EventLoop& loop);
  double usage() const { return usage_; }  // 0.0-1.0

  // CPU time this thread has used, in nanoseconds.
  static int64_t thread_cpu_ns();

 private:
  void sample();
  static constexpr int kWindow = 4;
  Timer timer_;
  int64_t cpu_[kWindow + 1] = {};
  int64_t wall_[kWindow + 1] = {};
  int count_ = 0;
  double usage_ = 0;
};

// A TCP listener that answers each connection with one agent line, "up cpu=0.42" (or "drain
// cpu=0.42" while drained), and closes it.
class LoadAgent : public IoHandler {
 public:
  LoadAgent(EventLoop& loop, const CpuMeter& meter) : loop_(loop), meter_(meter) {}
  ~LoadAgent();
  Result<void> listen(const SocketAddress& addr);
  uint16_t port() const { return SocketAddress::local_of(fd_.get()).port(); }  // after listen()
  // The server asks to be drained (before a deploy, say): fulcrum stops sending it new traffic.
  void set_drain(bool drain) { drain_ = drain; }
  std::string line() const;
  void on_io(uint32_t events) override;

 private:
  EventLoop& loop_;
  const CpuMeter& meter_;
  Fd fd_;
  bool drain_ = false;
};

}  // namespace fulcrum::app
