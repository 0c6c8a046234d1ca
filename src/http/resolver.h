// Host name lookups off the worker thread. getaddrinfo(3) blocks, for seconds when a DNS server
// is slow or gone, so each Resolver runs its lookups on threads of its own (the first started at
// the first lookup: most listeners never resolve anything; another whenever a name waits while
// every thread is busy, up to kMaxThreads, so one slow name does not hold up the rest) and posts
// every answer back to its owner's loop.
// Joining lookups for the same name and caching answers is the owner's job (forward_proxy.h).
// resolve(), the destructor and the callbacks: the owner's loop thread only.
//
// The threads are detached and share only `Shared` with the Resolver: a Resolver goes at once
// (a stop or reload never waits for a lookup stuck on a dead DNS server); each thread finishes
// its lookup, finds the Resolver gone (Shared::loop null) and ends.
#pragma once
#include <functional>
#include <memory>
#include <string>
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
  // Never waits: answers still to come, or queued on the loop, are dropped.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Queues a lookup of `host` (a name, not a literal). IPv4 answers come first: loopback test
  // servers and most origins listen on IPv4, and the caller tries the answers in order.
  void resolve(std::string host);

  static constexpr int kMaxThreads = 8;  // lookups under way at once, per Resolver

 private:
  struct Shared;
  static void run(std::shared_ptr<Shared> sh);  // the thread
  std::shared_ptr<Shared> shared_;
};

}  // namespace fulcrum::http
