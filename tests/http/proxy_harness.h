// In-process HTTP proxy tests on loopback: a real HttpListener on an EventLoop the test drives with
// run_once, tiny backends and a keep-alive client, all non-blocking sockets served from the test's
// own thread. Backends and client parse with our own codec into fixed buffers, so after set-up
// nothing here allocates: an allocation counted while requests flow is the proxy's. Test thread
// only.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "cache/store.h"
#include "config/loader.h"
#include "core/event_loop.h"
#include "core/socket.h"
#include "http/chunked.h"
#include "http/h1_parser.h"
#include "http/proxy.h"
#include "http/router.h"
#include "lb/balancer.h"
#include "upstream/server.h"

namespace fulcrum::http::testing {

inline uint16_t local_port(int fd) { return SocketAddress::local_of(fd).port(); }

// Bytes of a complete message at the front of `buf` whose head parsed with `head_len` and body
// framing `body`; 0 while incomplete, -1 on a framing error.
inline long message_length(std::string_view buf, size_t head_len, BodyKind body, uint64_t content_length) {
  if (body == BodyKind::kNone) return static_cast<long>(head_len);
  if (body == BodyKind::kContentLength)
    return buf.size() >= head_len + content_length ? static_cast<long>(head_len + content_length) : 0;
  if (body != BodyKind::kChunked) return -1;
  ChunkedDecoder dec;
  std::string_view rest = buf.substr(head_len);
  size_t used = 0;
  while (!rest.empty()) {
    ChunkStep s = dec.decode(rest);
    used += s.consumed;
    rest.remove_prefix(s.consumed);
    if (s.event == ChunkEvent::kDone) return static_cast<long>(head_len + used);
    if (s.event == ChunkEvent::kError) return -1;
    if (s.event == ChunkEvent::kNeedMore) break;
  }
  return 0;
}

// A loopback HTTP/1.1 server: keep-alive, pipelining, Content-Length and chunked request bodies.
// GET /chunked* is answered chunked, anything else with "ok" and a Content-Length.
class TinyBackend {
 public:
  TinyBackend() {
    auto fd = listen_socket(SocketAddress::parse("127.0.0.1:0").value());
    if (fd) listen_ = std::move(*fd);
    port_ = local_port(listen_.get());
  }
  uint16_t port() const { return port_; }
  size_t requests() const { return requests_; }
  size_t connections() const { return accepted_; }

  void poll() {
    for (;;) {
      int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) break;
      ++accepted_;
      for (auto& conn : conns_)
        if (!conn.fd) {
          conn.fd = Fd(c);
          conn.len = 0;
          c = -1;
          break;
        }
      if (c >= 0) ::close(c);  // full: the test uses a handful
    }
    for (auto& conn : conns_)
      if (conn.fd) serve(conn);
  }

 private:
  struct Conn {
    Fd fd;
    std::array<char, 128 * 1024> in;
    size_t len = 0;
  };

  void serve(Conn& c) {
    ssize_t n = ::recv(c.fd.get(), c.in.data() + c.len, c.in.size() - c.len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
      c.fd.reset();
      return;
    }
    if (n > 0) c.len += static_cast<size_t>(n);
    for (;;) {
      std::string_view buf(c.in.data(), c.len);
      RequestHead head;
      ParseResult r = parse_request(buf, fields_, &head);
      if (!r.done()) return;
      long total = message_length(buf, r.consumed, head.body, head.content_length);
      if (total <= 0) return;
      bool chunked = head.target.substr(0, 8) == "/chunked";
      std::string_view resp = chunked ? std::string_view(
                                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                                      : std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      ::send(c.fd.get(), resp.data(), resp.size(), MSG_NOSIGNAL);
      ++requests_;
      std::memmove(c.in.data(), c.in.data() + total, c.len - static_cast<size_t>(total));
      c.len -= static_cast<size_t>(total);
    }
  }

  Fd listen_;
  uint16_t port_ = 0;
  std::array<Conn, 8> conns_;
  std::array<Header, 64> fields_;
  size_t requests_ = 0;
  size_t accepted_ = 0;
};

// One keep-alive client connection. send() queues a request; response_done() says whether a whole
// response has arrived (and drops it, keeping its status).
class TinyClient {
 public:
  explicit TinyClient(uint16_t port) {
    bool in_progress = false;
    auto addr = SocketAddress::parse("127.0.0.1:" + std::to_string(port)).value();
    auto fd = connect_socket(addr, &in_progress);
    if (fd) fd_ = std::move(*fd);
  }
  bool send(std::string_view request) {
    return ::send(fd_.get(), request.data(), request.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(request.size());
  }
  // Reads what is there; true once a complete response is buffered (it is then consumed).
  bool response_done(Method method = Method::kGet) {
    ssize_t n = ::recv(fd_.get(), in_.data() + len_, in_.size() - len_, 0);
    if (n > 0) len_ += static_cast<size_t>(n);
    if (n == 0) closed_ = true;
    std::string_view buf(in_.data(), len_);
    ResponseHead head;
    ParseResult r = parse_response(buf, fields_, &head, method);
    if (!r.done()) return false;
    long total = message_length(buf, r.consumed, head.body, head.content_length);
    if (total <= 0) return false;
    status_ = head.status;
    std::memmove(in_.data(), in_.data() + total, len_ - static_cast<size_t>(total));
    len_ -= static_cast<size_t>(total);
    return true;
  }
  int status() const { return status_; }
  bool closed() const { return closed_; }

 private:
  Fd fd_;
  std::array<char, 64 * 1024> in_;
  size_t len_ = 0;
  std::array<Header, 64> fields_;
  int status_ = 0;
  bool closed_ = false;
};

// A worker's HTTP side built from YAML, as the runtime builds it: backends, pickers, context,
// router and one listener on a free loopback port. `{PORT0}`, `{PORT1}`... in the YAML are
// replaced by the ports of `servers`, which run_until polls.
class ProxyUnderTest {
 public:
  ProxyUnderTest(std::string yaml, std::vector<TinyBackend*> servers) : servers_(std::move(servers)) {
    for (size_t i = 0; i < servers_.size(); ++i) {
      std::string key = "{PORT" + std::to_string(i) + "}";
      for (size_t at; (at = yaml.find(key)) != std::string::npos;)
        yaml.replace(at, key.size(), std::to_string(servers_[i]->port()));
    }
    auto loaded = config::load_text(yaml, "/tmp/proxy_test.yaml");
    if (auto* e = std::get_if<config::ConfigError>(&loaded)) {
      error = e->to_string();
      return;
    }
    cfg_ = std::get<std::shared_ptr<const config::Config>>(loaded);
    std::vector<upstream::Backend*> backend_ptrs;
    std::vector<lb::Picker*> picker_ptrs;
    for (size_t i = 0; i < cfg_->backends.size(); ++i) {
      backends_.push_back(std::make_unique<upstream::Backend>(cfg_->backends[i]));
      pickers_.push_back(std::make_unique<lb::Picker>(*backends_.back(), 0x5eed + i));
      backend_ptrs.push_back(backends_.back().get());
      picker_ptrs.push_back(pickers_.back().get());
    }
    ctx_ = std::make_unique<HttpContext>(loop, backend_ptrs, picker_ptrs);
    auto router = Router::build(cfg_->listeners[0]);
    if (!router) {
      error = router.error().message;
      return;
    }
    auto fd = listen_socket(SocketAddress::parse("127.0.0.1:0").value());
    if (!fd) {
      error = fd.error().message;
      return;
    }
    port = local_port(fd->get());
    listener_ = std::make_unique<HttpListener>(
        *ctx_, *cfg_, cfg_->listeners[0], std::shared_ptr<const Router>(std::move(*router)), std::move(*fd));
    std::vector<std::shared_ptr<cache::Store>> caches;  // as the runtime makes them
    for (auto& r : cfg_->listeners[0].routes) caches.push_back(r.cache ? cache::make_store(*r.cache) : nullptr);
    listener_->set_caches(std::move(caches));
  }
  ~ProxyUnderTest() {
    listener_.reset();
    loop.run_once(Millis(0));  // deletes what the listener closed, while the context still exists
  }

  // Turns the loop (and polls the servers) until done() or `turns` run out; returns done().
  template <class Done>
  bool run_until(Done done, int turns = 100000) {
    for (int i = 0; i < turns; ++i) {
      if (done()) return true;
      loop.run_once(Millis(0));
      for (TinyBackend* b : servers_) b->poll();
    }
    return done();
  }

  upstream::Backend& backend(size_t i) { return *backends_[i]; }

  EventLoop loop;
  uint16_t port = 0;
  std::string error;

 private:
  std::vector<TinyBackend*> servers_;
  std::shared_ptr<const config::Config> cfg_;
  std::vector<std::unique_ptr<upstream::Backend>> backends_;
  std::vector<std::unique_ptr<lb::Picker>> pickers_;
  std::unique_ptr<HttpContext> ctx_;
  std::unique_ptr<HttpListener> listener_;
};

}  // namespace fulcrum::http::testing
