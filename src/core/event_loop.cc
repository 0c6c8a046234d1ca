#include "core/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fulcrum {
namespace {
// The wake eventfd is registered with this marker instead of a handler.
IoHandler* const kWakeMarker = nullptr;
}  // namespace

Timer::Timer(EventLoop& loop, std::function<void()> callback) : loop_(loop), callback_(std::move(callback)) {}

Timer::~Timer() { cancel(); }

void Timer::arm(Millis after) { arm_at(loop_.now() + after); }

void Timer::arm_at(TimePoint deadline) {
  deadline_ = deadline;
  armed_ = true;
  if (heap_index_ != kNotInHeap) {
    if (deadline >= key_) return;  // lazy: re-filed when key_ comes due
    loop_.heap_remove(this);
  }
  key_ = deadline;
  loop_.heap_push(this);
}

void Timer::cancel() {
  armed_ = false;
  if (heap_index_ != kNotInHeap) loop_.heap_remove(this);
}

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)), wake_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  now_ = Clock::now();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = kWakeMarker;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
}

EventLoop::~EventLoop() {
  run_deferred();
  run_deferred();
  for (Timer* t : heap_) t->heap_index_ = Timer::kNotInHeap;
}

Result<void> EventLoop::add(int fd, IoHandler* handler, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return os_error("epoll_ctl add", errno);
  return {};
}

Result<void> EventLoop::modify(int fd, IoHandler* handler, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return os_error("epoll_ctl mod", errno);
  return {};
}

void EventLoop::remove(int fd) { epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(task));
  }
  has_posted_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof(one));
}

void EventLoop::defer_delete(Deferred* object) { deferred_.push_back(object); }

void EventLoop::stop() {
  stop_.store(true, std::memory_order_relaxed);
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof(one));
}

void EventLoop::run() {
  while (!stop_.load(std::memory_order_relaxed)) run_once(Millis(1000));
  run_posted();
  run_deferred();
}

int EventLoop::wait_ms(Millis max_wait) const {
  if (!deferred_.empty() || has_posted_.load(std::memory_order_acquire)) return 0;
  auto wait = max_wait;
  if (!heap_.empty()) {
    auto until = std::chrono::ceil<Millis>(heap_.front()->key_ - Clock::now());
    if (until < wait) wait = until;
  }
  return wait.count() < 0 ? 0 : static_cast<int>(wait.count());
}

void EventLoop::run_once(Millis max_wait) {
  int n = epoll_wait(epoll_.get(), events_, static_cast<int>(std::size(events_)), wait_ms(max_wait));
  now_ = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto* handler = static_cast<IoHandler*>(events_[i].data.ptr);
    if (handler == kWakeMarker) {
      uint64_t v;
      [[maybe_unused]] auto r = ::read(wake_.get(), &v, sizeof(v));
      continue;
    }
    handler->on_io(events_[i].events);
  }
  run_timers();
  run_posted();
  run_deferred();
}

void EventLoop::run_timers() {
  while (!heap_.empty() && heap_.front()->key_ <= now_) {
    Timer* t = heap_.front();
    heap_remove(t);
    if (t->deadline_ > now_) {  // moved later since it was filed: file it again
      t->key_ = t->deadline_;
      heap_push(t);
      continue;
    }
    t->armed_ = false;
    t->callback_();  // may re-arm or destroy t's owner (via defer_delete)
  }
}

void EventLoop::run_posted() {
  if (!has_posted_.exchange(false, std::memory_order_acq_rel)) return;
  {
    std::lock_guard lock(posted_mu_);
    running_.swap(posted_);
  }
  for (auto& task : running_) task();
  running_.clear();
}

void EventLoop::run_deferred() {
  while (!deferred_.empty()) {
    deleting_.swap(deferred_);
    for (Deferred* d : deleting_) delete d;
    deleting_.clear();
  }
}

void EventLoop::heap_push(Timer* t) {
  t->heap_index_ = heap_.size();
  heap_.push_back(t);
  heap_up(t->heap_index_);
}

void EventLoop::heap_remove(Timer* t) {
  size_t i = t->heap_index_;
  t->heap_index_ = Timer::kNotInHeap;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (last == t) return;
  heap_[i] = last;
  last->heap_index_ = i;
  heap_up(i);
  heap_down(last->heap_index_);
}

void EventLoop::heap_up(size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->key_ <= heap_[i]->key_) break;
    std::swap(heap_[parent], heap_[i]);
    heap_[parent]->heap_index_ = parent;
    heap_[i]->heap_index_ = i;
    i = parent;
  }
}

void EventLoop::heap_down(size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_.size() && heap_[l]->key_ < heap_[m]->key_) m = l;
    if (r < heap_.size() && heap_[r]->key_ < heap_[m]->key_) m = r;
    if (m == i) return;
    std::swap(heap_[m], heap_[i]);
    heap_[m]->heap_index_ = m;
    heap_[i]->heap_index_ = i;
    i = m;
  }
}

}  // namespace fulcrum
