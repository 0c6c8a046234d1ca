// The demo's CPU meter and load agent (demo_agent.h). The demo server's own loop thread only.
#include "app/demo_agent.h"

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "core/socket.h"

namespace fulcrum::app {
namespace {

constexpr Millis kSampleEvery{250};

int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

int64_t CpuMeter::thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

CpuMeter::CpuMeter(EventLoop& loop) : timer_(loop, [this] { sample(); }) { timer_.arm(kSampleEvery); }

void CpuMeter::sample() {
  // A sliding window: drop the oldest sample once the window is full.
  if (count_ == kWindow + 1) {
    std::move(cpu_ + 1, cpu_ + count_, cpu_);
    std::move(wall_ + 1, wall_ + count_, wall_);
    --count_;
  }
  cpu_[count_] = thread_cpu_ns();
  wall_[count_] = wall_ns();
  ++count_;
  if (count_ >= 2) {
    int64_t wall = wall_[count_ - 1] - wall_[0];
    int64_t cpu = cpu_[count_ - 1] - cpu_[0];
    usage_ = wall > 0 ? std::clamp(static_cast<double>(cpu) / static_cast<double>(wall), 0.0, 1.0) : 0.0;
  }
  timer_.arm(kSampleEvery);
}

LoadAgent::~LoadAgent() {
  if (fd_) loop_.remove(fd_.get());
}

Result<void> LoadAgent::listen(const SocketAddress& addr) {
  auto fd = listen_socket(addr, SocketType::kStream, 64);
  if (!fd) return fd.error();
  fd_ = std::move(*fd);
  return loop_.add(fd_.get(), this, EPOLLIN | EPOLLET);
}

std::string LoadAgent::line() const {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s cpu=%.2f\n", drain_ ? "drain" : "up", meter_.usage());
  return buf;
}

void LoadAgent::on_io(uint32_t) {
  for (;;) {
    Fd c(accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: all taken; anything else: try again on the next connection
    }
    // A dozen bytes into a fresh socket's empty send buffer: sent whole or not at all.
    std::string reply = line();
    (void)::send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
}

}  // namespace fulcrum::app
