// SimpleServer: a small HTTP/1.1 server for the control plane — the admin API and dashboard, and
// the demo's application servers. Requests are parsed with the strict h1 parser; bodies must have
// a Content-Length (up to 1 MiB). Handlers may answer later (the demo's slow servers do). It
// allocates freely: it is not on the data plane. Runs on one EventLoop; only that thread touches it.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/result.h"

namespace fulcrum::http {

struct SimpleRequest {
  std::string method;
  std::string target;
  std::string path;
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  SocketAddress peer;
  // The first value of a header (case-insensitive name), or "".
  std::string header(std::string_view name) const;
  std::string cookie(std::string_view name) const;
  std::string query_param(std::string_view name) const;
};

struct SimpleResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  static SimpleResponse text(int status, std::string body);
  static SimpleResponse json(int status, std::string body);
};

class SimpleServer {
 public:
  using Respond = std::function<void(SimpleResponse)>;
  using Handler = std::function<void(const SimpleRequest&, Respond)>;
  SimpleServer(EventLoop& loop, Handler handler);
  ~SimpleServer();
  Result<void> listen(const SocketAddress& addr);
  SocketAddress local_address() const;
  // Closes the listener and every connection.
  void close();

 private:
  class Conn;
  class Acceptor;
  EventLoop& loop_;
  Handler handler_;
  std::unique_ptr<Acceptor> acceptor_;
  std::shared_ptr<bool> alive_;
  std::vector<Conn*> conns_;
};

}  // namespace fulcrum::http
