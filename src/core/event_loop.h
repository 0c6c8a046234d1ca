// EventLoop: one per worker thread. Watches descriptors (epoll, edge-triggered: a descriptor is
// registered once for both directions and never re-armed, which saves a system call per event),
// runs timers, runs tasks posted from other threads, and deletes objects after the current event.
// Only its own thread touches it, except post() and stop(), which any thread may call.
#pragma once
#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/fd.h"
#include "core/result.h"

namespace fulcrum {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::milliseconds;

// Receives readiness for one descriptor. events is a mask of EPOLLIN, EPOLLOUT, EPOLLRDHUP,
// EPOLLHUP, EPOLLERR.
class IoHandler {
 public:
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

// Something the loop may delete after the current event (never inside its own callback).
class Deferred {
 public:
  virtual ~Deferred() = default;
};

class EventLoop;

// A one-shot timer, re-armable, cancelled when destroyed. Moving a deadline later is O(1): the
// heap keeps the earlier key and re-files the timer when that key comes due (a connection's idle
// timer moves on every request, and is almost never due).
class Timer {
 public:
  Timer(EventLoop& loop, std::function<void()> callback);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm(Millis after);
  void arm_at(TimePoint deadline);
  void cancel();
  bool armed() const { return armed_; }
  TimePoint deadline() const { return deadline_; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  std::function<void()> callback_;
  TimePoint deadline_{};  // when it should fire
  TimePoint key_{};       // where it sits in the heap (<= deadline_)
  size_t heap_index_ = kNotInHeap;
  bool armed_ = false;
  static constexpr size_t kNotInHeap = static_cast<size_t>(-1);
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Register fd for EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered (or the given events).
  Result<void> add(int fd, IoHandler* handler, uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  Result<void> modify(int fd, IoHandler* handler, uint32_t events);
  void remove(int fd);

  // Any thread. The task runs on this loop's thread.
  void post(std::function<void()> task);
  // Takes ownership; deleted after the events of this turn are handled.
  void defer_delete(Deferred* object);

  // The time at the start of this turn (cheap; refreshed after every wait).
  TimePoint now() const { return now_; }
  void refresh_now() { now_ = Clock::now(); }

  // Runs until stop(). Any thread may call stop().
  void run();
  void stop();
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  // Runs one turn, waiting at most max_wait for events (tests drive the loop with this).
  void run_once(Millis max_wait);

 private:
  friend class Timer;
  void heap_push(Timer* t);
  void heap_remove(Timer* t);
  void heap_up(size_t i);
  void heap_down(size_t i);
  void run_timers();
  void run_posted();
  void run_deferred();
  int wait_ms(Millis max_wait) const;

  Fd epoll_;
  Fd wake_;  // eventfd: post() and stop() wake the loop
  std::atomic<bool> stop_{false};
  TimePoint now_;
  std::vector<Timer*> heap_;
  std::mutex posted_mu_;  // cross-thread posts are the rare path (reloads, state changes)
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void()>> running_;
  std::atomic<bool> has_posted_{false};
  std::vector<Deferred*> deferred_;
  std::vector<Deferred*> deleting_;
  epoll_event events_[256];
};

}  // namespace fulcrum
