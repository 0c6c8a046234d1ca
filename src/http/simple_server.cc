#include "http/simple_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "core/socket.h"
#include "http/h1_parser.h"
#include "http/local_response.h"
#include "http/router.h"

namespace fulcrum::http {
namespace {
constexpr size_t kMaxBody = 1 << 20;
constexpr size_t kMaxHead = 64 * 1024;
}  // namespace

std::string SimpleRequest::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

std::string SimpleRequest::cookie(std::string_view name) const {
  std::vector<Header> hs;
  for (auto& [k, v] : headers) hs.push_back(Header{k, v, HeaderToken::kUnknown});
  std::string_view out;
  return find_cookie(hs, name, &out) ? std::string(out) : std::string();
}

std::string SimpleRequest::query_param(std::string_view name) const {
  std::string_view out;
  return find_query_param(query, name, &out) ? std::string(out) : std::string();
}

SimpleResponse SimpleResponse::text(int status, std::string body) {
  SimpleResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

SimpleResponse SimpleResponse::json(int status, std::string body) {
  SimpleResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

class SimpleServer::Acceptor final : public IoHandler {
 public:
  Acceptor(SimpleServer& s, Fd fd) : server(s), fd(std::move(fd)) {}
  void on_io(uint32_t) override;
  SimpleServer& server;
  Fd fd;
};

class SimpleServer::Conn final : public IoHandler, public Deferred {
 public:
  Conn(SimpleServer& s, Fd f, SocketAddress p) : server(s), fd(std::move(f)), peer(p) {}
  void on_io(uint32_t events) override {
    if (closed) return;
    if (events & EPOLLOUT) flush();
    if (closed) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_some();
  }

  void read_some() {
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        if (in.size() > kMaxHead + kMaxBody) return close();
        continue;
      }
      if (n == 0) {
        eof = true;
        break;
      }
      if (errno == EAGAIN || errno == EINTR) break;
      return close();
    }
    process();
    if (eof && !busy && out.empty()) close();
  }

  void process() {
    while (!busy && !closed) {
      std::array<Header, 100> fields;
      RequestHead head;
      ParseResult pr = parse_request(in, fields, &head, H1Limits{kMaxHead});
      if (pr.need_more()) return;
      if (pr.failed()) return reply_and_close(pr.http_status());
      if (head.body == BodyKind::kChunked) return reply_and_close(411);
      if (head.content_length > kMaxBody) return reply_and_close(413);
      size_t total = pr.consumed + static_cast<size_t>(head.content_length);
      if (in.size() < total) return;
      SimpleRequest req;
      req.method = std::string(head.method_text);
      req.target = std::string(head.target);
      auto q = req.target.find('?');
      req.path = req.target.substr(0, q);
      req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
      for (auto& h : head.headers) req.headers.emplace_back(std::string(h.name), std::string(h.value));
      req.body = in.substr(pr.consumed, static_cast<size_t>(head.content_length));
      req.peer = peer;
      keep_alive = head.keep_alive;
      is_head = head.method == Method::kHead;
      in.erase(0, total);
      busy = true;
      std::weak_ptr<bool> alive = server.alive_;
      std::weak_ptr<bool> token = token_;
      server.handler_(req, [this, alive, token](SimpleResponse r) {
        if (alive.expired() || token.expired()) return;  // the connection went away meanwhile
        respond(std::move(r));
      });
    }
  }

  void respond(SimpleResponse r) {
    std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason_phrase(r.status)) + "\r\n";
    head += "Content-Type: " + r.content_type + "\r\n";
    head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    for (auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
    if (!keep_alive) head += "Connection: close\r\n";
    head += "\r\n";
    out += head;
    if (!is_head) out += r.body;
    busy = false;
    flush();
    if (!closed && keep_alive) process();
  }

  void reply_and_close(int status) {
    keep_alive = false;
    busy = true;
    respond(SimpleResponse::text(status, std::string(reason_phrase(status)) + "\n"));
  }

  void flush() {
    while (!out.empty()) {
      ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      return close();
    }
    if (!busy && (!keep_alive || eof)) close();
  }

  void close() {
    if (closed) return;
    closed = true;
    token_.reset();
    server.loop_.remove(fd.get());
    fd.reset();
    auto& v = server.conns_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
    server.loop_.defer_delete(this);
  }

  SimpleServer& server;
  Fd fd;
  SocketAddress peer;
  std::string in;
  std::string out;
  bool busy = false;
  bool keep_alive = true;
  bool is_head = false;
  bool eof = false;
  bool closed = false;
  std::shared_ptr<bool> token_ = std::make_shared<bool>(true);
};

void SimpleServer::Acceptor::on_io(uint32_t) {
  for (;;) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int c = accept4(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    auto* conn = new Conn(server, Fd(c), SocketAddress(reinterpret_cast<sockaddr*>(&ss), len));
    if (!server.loop_.add(c, conn)) {
      delete conn;
      continue;
    }
    server.conns_.push_back(conn);
  }
}

SimpleServer::SimpleServer(EventLoop& loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)), alive_(std::make_shared<bool>(true)) {}

SimpleServer::~SimpleServer() { close(); }

Result<void> SimpleServer::listen(const SocketAddress& addr) {
  auto fd = listen_socket(addr, SocketType::kStream, 1024);
  if (!fd) return fd.error();
  acceptor_ = std::make_unique<Acceptor>(*this, std::move(*fd));
  return loop_.add(acceptor_->fd.get(), acceptor_.get(), EPOLLIN);
}

SocketAddress SimpleServer::local_address() const {
  return acceptor_ ? SocketAddress::local_of(acceptor_->fd.get()) : SocketAddress();
}

void SimpleServer::close() {
  if (acceptor_) {
    loop_.remove(acceptor_->fd.get());
    acceptor_.reset();
  }
  while (!conns_.empty()) conns_.back()->close();
}

}  // namespace fulcrum::http
