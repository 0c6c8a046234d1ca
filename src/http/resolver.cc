// See resolver.h. resolve(), the destructor and the posted answers run on the owner's loop
// thread; run() on the resolver's own thread. They share Shared, under its mutex.
#include "http/resolver.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace fulcrum::http {

struct Resolver::Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;
  EventLoop* loop;  // null once the Resolver is gone: the threads then end
  Done done;        // called on the loop thread only, while loop is set
  int threads = 0;  // started so far (at most kMaxThreads)
  int idle = 0;     // waiting for a name
};

namespace {

std::vector<SocketAddress> lookup(const std::string& host, int* rc) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  *rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  std::vector<SocketAddress> addrs;
  for (addrinfo* ai = res; *rc == 0 && ai; ai = ai->ai_next)
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
      addrs.emplace_back(ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen));
  if (res) ::freeaddrinfo(res);
  std::stable_partition(addrs.begin(), addrs.end(),
                        [](const SocketAddress& a) { return a.family() == AF_INET; });
  if (*rc == 0 && addrs.empty()) *rc = EAI_NONAME;
  return addrs;
}

}  // namespace

Resolver::Resolver(EventLoop& loop, Done done) : shared_(std::make_shared<Shared>()) {
  shared_->loop = &loop;
  shared_->done = std::move(done);
}

Resolver::~Resolver() {
  {
    std::lock_guard lock(shared_->mu);
    shared_->loop = nullptr;
    shared_->queue.clear();
  }
  shared_->cv.notify_all();
}

void Resolver::resolve(std::string host) {
  bool start = false;
  {
    std::lock_guard lock(shared_->mu);
    shared_->queue.push_back(std::move(host));
    // Every thread busy (a lookup may hang for seconds on a dead DNS server): one more, so a
    // slow name does not hold up the others.
    if (shared_->idle < static_cast<int>(shared_->queue.size()) && shared_->threads < kMaxThreads) {
      ++shared_->threads;
      start = true;
    }
  }
  shared_->cv.notify_one();
  if (start) std::thread([sh = shared_] { run(sh); }).detach();
}

void Resolver::run(std::shared_ptr<Shared> sh) {
  for (;;) {
    std::string host;
    {
      std::unique_lock lock(sh->mu);
      ++sh->idle;
      sh->cv.wait(lock, [&] { return sh->loop == nullptr || !sh->queue.empty(); });
      --sh->idle;
      if (sh->loop == nullptr) return;
      host = std::move(sh->queue.front());
      sh->queue.pop_front();
    }
    int rc = 0;
    std::vector<SocketAddress> addrs = lookup(host, &rc);
    std::lock_guard lock(sh->mu);
    if (sh->loop == nullptr) return;
    // The task holds Shared weakly: queued answers of a Resolver gone by the time they run are
    // dropped (the loop thread cleared `loop` before the owner's state went).
    std::weak_ptr<Shared> weak = sh;
    sh->loop->post([weak, host = std::move(host), addrs = std::move(addrs), rc] {
      auto s = weak.lock();
      if (!s) return;
      Done* done = nullptr;
      {
        std::lock_guard lock(s->mu);
        if (s->loop) done = &s->done;
      }
      if (done) (*done)(host, addrs, rc);
    });
  }
}

}  // namespace fulcrum::http
