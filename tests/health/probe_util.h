// Helpers for the check tests: a backend built from a health config, a probe driven on a loop
// of the test's own (as the service would: the timeout is applied from outside with expire()),
// and small loopback servers. Test thread only, except the servers' own threads.
#pragma once
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/event_loop.h"
#include "core/socket.h"
#include "health/check.h"
#include "upstream/server.h"

namespace fulcrum::health::testing {

inline config::Backend backend_spec(const std::string& check, const std::vector<std::string>& addresses) {
  config::Backend b;
  b.name = "b";
  b.health.check = check;
  for (size_t i = 0; i < addresses.size(); ++i) {
    config::Server s;
    s.name = "s" + std::to_string(i + 1);
    s.address = *SocketAddress::parse(addresses[i]);
    s.address_text = addresses[i];
    b.servers.push_back(s);
  }
  return b;
}

// Runs one probe of `check` on `loop`; applies `timeout` with expire() as the service does.
inline Outcome run_probe(Check& check, EventLoop& loop, const upstream::Server& server, Millis timeout) {
  std::optional<Outcome> out;
  loop.refresh_now();
  auto probe = check.probe(server, [&](Outcome o) {
    EXPECT_FALSE(out.has_value()) << "done called twice";
    out = std::move(o);
  });
  auto deadline = Clock::now() + timeout;
  while (!out && Clock::now() < deadline) loop.run_once(Millis(5));
  if (!out && probe) probe->expire(timeout);
  if (probe) loop.defer_delete(probe.release());
  loop.run_once(Millis(0));
  EXPECT_TRUE(out.has_value()) << "probe did not finish after expire()";
  return out.value_or(Outcome{Reason::kLocalError, "no outcome"});
}

// A listening socket on 127.0.0.1 with a free port; port() is its number.
struct Listener {
  explicit Listener(int backlog = 16) {
    fd = listen_socket(*SocketAddress::parse("127.0.0.1:0"), SocketType::kStream, backlog).value();
    SocketAddress a;
    *a.len_ptr() = sizeof(sockaddr_storage);
    getsockname(fd.get(), a.sa(), a.len_ptr());
    port = a.port();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  Fd fd;
  uint16_t port = 0;
};

// A port with nothing listening on it: bound, then closed, and not reused at once by anyone.
inline std::string closed_address() {
  Listener l;
  return l.address();
}

// A one-thread HTTP server: each connection's request head is recorded, then `respond(head)`
// says what to send back. An empty answer with hang=true holds the connection open unanswered.
class HttpServer {
 public:
  struct Answer {
    std::string bytes;
    bool hang = false;
    size_t split = 0;  // >0: send the first `split` bytes, pause, then the rest
  };
  explicit HttpServer(std::function<Answer(const std::string& head)> respond) : respond_(std::move(respond)) {
    thread_ = std::thread([this] { run(); });
  }
  ~HttpServer() {
    stop_ = true;
    thread_.join();
  }
  std::string address() const { return listener_.address(); }
  std::vector<std::string> heads() {
    std::lock_guard lock(mu_);
    return heads_;
  }

 private:
  void run() {
    std::vector<Fd> held;
    while (!stop_) {
      pollfd p{listener_.fd.get(), POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      Fd c(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      std::string head;
      char buf[4096];
      auto until = Clock::now() + Millis(2000);
      while (head.find("\r\n\r\n") == std::string::npos && Clock::now() < until && !stop_) {
        pollfd q{c.get(), POLLIN, 0};
        if (poll(&q, 1, 20) <= 0) continue;
        ssize_t n = recv(c.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        heads_.push_back(head);
      }
      Answer a = respond_(head);
      if (a.split > 0 && a.split < a.bytes.size()) {
        send(c.get(), a.bytes.data(), a.split, MSG_NOSIGNAL);
        std::this_thread::sleep_for(Millis(30));
        send(c.get(), a.bytes.data() + a.split, a.bytes.size() - a.split, MSG_NOSIGNAL);
      } else if (!a.bytes.empty()) {
        send(c.get(), a.bytes.data(), a.bytes.size(), MSG_NOSIGNAL);
      }
      if (a.hang) held.push_back(std::move(c));  // closed when the server stops
    }
  }

  Listener listener_;
  std::function<Answer(const std::string&)> respond_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> heads_;
  std::thread thread_;
};

}  // namespace fulcrum::health::testing
