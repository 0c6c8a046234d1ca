// One listener's connections spread evenly over the workers' copies of it. Each worker has its
// own SO_REUSEPORT socket, and the kernel picks the socket by a hash of the client's address and
// port: ten connections often land seven and three, and then one worker does 70 % of the work
// while the other idles (measured: h2load with 10 connections, 88-93k requests/s at 63/21 split
// of CPU, 99k at 41/41). HAProxy hands accepted connections to its least loaded thread; so do
// we: the worker whose socket took a connection keeps it unless another copy holds clearly fewer
// (by 1 + mine/16, so a busy listener with short connections rarely hands one over), and then
// posts it to that worker's loop. Counts are taken at the choice, so a burst of accepts on one
// worker spreads at once. Any thread; `L` (the listener type) is only stored and returned.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/event_loop.h"

namespace fulcrum {

template <class L>
class ConnSpread {
 public:
  explicit ConnSpread(size_t workers) : n_(workers), members_(std::make_unique<Member[]>(workers)) {}
  size_t size() const { return n_; }

  // Worker i's copy of the listener and its loop; before that worker's first accept.
  void join(size_t i, L* listener, EventLoop* loop) {
    members_[i].listener = listener;
    members_[i].loop = loop;
  }

  // On worker `self`, for a connection its socket accepted: the worker to take it, now counted
  // as holding it (closed() when it ends).
  size_t pick(size_t self) {
    int64_t mine = count(self);
    size_t best = self;
    int64_t least = mine;
    for (size_t i = 0; i < n_; ++i) {
      int64_t c = count(i);
      if (members_[i].listener && c < least) least = c, best = i;
    }
    if (best != self && mine - least < 1 + mine / 16) best = self;
    members_[best].conns.fetch_add(1, std::memory_order_relaxed);
    return best;
  }
  void closed(size_t i) { members_[i].conns.fetch_sub(1, std::memory_order_relaxed); }
  int64_t count(size_t i) const { return members_[i].conns.load(std::memory_order_relaxed); }

  L* listener(size_t i) const { return members_[i].listener; }
  EventLoop& loop(size_t i) const { return *members_[i].loop; }

  // Gives `item` to worker `to`'s copy: `listener(to)->adopt(std::move(item), true)` runs on that
  // worker's loop (`true`: the caller counted it there already). Should the loop never run the
  // task, `item` is destroyed with it (a socket in it closes).
  template <class T>
  void hand_over(size_t to, T item) {
    auto box = std::make_shared<T>(std::move(item));
    L* target = members_[to].listener;
    members_[to].loop->post([target, box] { target->adopt(std::move(*box), true); });
  }

 private:
  struct alignas(64) Member {  // a cache line each: workers count their own without contention
    std::atomic<int64_t> conns{0};
    L* listener = nullptr;
    EventLoop* loop = nullptr;
  };
  size_t n_;
  std::unique_ptr<Member[]> members_;
};

}  // namespace fulcrum
