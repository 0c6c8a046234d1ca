// See resolver.h. resolve() and the posted answers run on the owner's loop thread; run() on the
// resolver's own thread, which shares only the queue (under mu_) with it.
#include "http/resolver.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>

namespace fulcrum::http {

Resolver::Resolver(EventLoop& loop, Done done) : loop_(loop), done_(std::move(done)) {}

Resolver::~Resolver() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Resolver::resolve(std::string host) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(host));
  }
  cv_.notify_one();
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void Resolver::run() {
  for (;;) {
    std::string host;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      host = std::move(queue_.front());
      queue_.pop_front();
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    std::vector<SocketAddress> addrs;
    for (addrinfo* ai = res; rc == 0 && ai; ai = ai->ai_next)
      if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
        addrs.emplace_back(ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen));
    if (res) ::freeaddrinfo(res);
    std::stable_partition(addrs.begin(), addrs.end(),
                          [](const SocketAddress& a) { return a.family() == AF_INET; });
    if (rc == 0 && addrs.empty()) rc = EAI_NONAME;
    std::weak_ptr<int> alive = alive_;
    loop_.post([this, alive, host = std::move(host), addrs = std::move(addrs), rc] {
      if (alive.lock()) done_(host, addrs, rc);
    });
  }
}

}  // namespace fulcrum::http
