// Host name lookups off the worker thread. getaddrinfo(3) blocks, for seconds when a DNS server
// is slow or gone, so each Resolver runs its lookups on a thread of its own (started at the first
// lookup: most listeners never resolve anything) and posts every answer back to its owner's loop.
// Joining lookups for the same name and caching answers is the owner's job (forward_proxy.h).
// resolve() and the callbacks: the owner's loop thread only.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/address.h"
#include "core/event_loop.h"

namespace fulcrum::http {

class Resolver {
 public:
  // `addrs` is empty when the lookup failed; `error` is then getaddrinfo's code (gai_strerror).
  using Done =
      std::function<void(const std::string& host, const std::vector<SocketAddress>& addrs, int error)>;
  Resolver(EventLoop& loop, Done done);
  // Joins the thread: a lookup in progress finishes first; answers still queued on the loop are
  // dropped (they check a token that dies here).
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Queues a lookup of `host` (a name, not a literal). IPv4 answers come first: loopback test
  // servers and most origins listen on IPv4, and we connect to the first answer only.
  void resolve(std::string host);

 private:
  void run();
  EventLoop& loop_;
  Done done_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace fulcrum::http
