// libFuzzer target for the HTTP/2 front end (src/http/h2_session.cc, h2_stream.cc): nghttp2 parses
// the frames, but what we do with them is ours (stream lifetimes, the request rendered as
// HTTP/1.1 for ClientConn, the response turned back into HEADERS and DATA, flow control). Each
// input is sent after the client preface, over loopback TCP, to a real http listener with a
// static route, and the worker loop runs until the connection is gone. ASan/UBSan find the rest.
// Single-threaded.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "core/event_loop.h"
#include "core/socket.h"
#include "http/proxy.h"
#include "http/router.h"

using namespace fulcrum;

namespace {

struct World {
  EventLoop loop;
  http::HttpContext ctx{loop, {}, {}};
  config::Config cfg;
  std::unique_ptr<http::HttpListener> listener;
  SocketAddress addr;

  World() {
    std::string root = std::filesystem::temp_directory_path() / ("fulcrum-h2-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(root);
    std::ofstream(root + "/index.html") << "hello\n";
    std::ofstream(root + "/big") << std::string(100000, 'x');
    config::Listener l;
    l.name = "fuzz";
    l.protocol = config::Protocol::kHttp;
    config::Route r;
    r.static_site = config::StaticSite{};
    r.static_site->root = root;
    l.routes.push_back(r);
    l.bind = *SocketAddress::parse("127.0.0.1:0");
    cfg.listeners.push_back(l);
    auto router = http::Router::build(cfg.listeners[0]);
    auto fd = listen_socket(cfg.listeners[0].bind);
    addr = SocketAddress::local_of(fd->get());
    listener = std::make_unique<http::HttpListener>(ctx, cfg, cfg.listeners[0],
                                                    std::shared_ptr<const http::Router>(std::move(*router)),
                                                    std::move(*fd));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World();
  bool in_progress = false;
  auto c = connect_socket(w->addr, &in_progress);
  if (!c) return 0;
  for (int i = 0; i < 5 && w->listener->connections() == 0; ++i) w->loop.run_once(Millis(10));
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string input(kPreface, sizeof(kPreface) - 1);
  input.append(reinterpret_cast<const char*>(data), size);
  size_t off = 0;
  char sink[65536];
  for (int turn = 0; turn < 200; ++turn) {
    if (off < input.size()) {
      ssize_t n = ::send(c->get(), input.data() + off, input.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) off += static_cast<size_t>(n);
    } else if (off == input.size()) {
      ::shutdown(c->get(), SHUT_WR);
      ++off;
    }
    w->loop.run_once(Millis(1));
    while (::recv(c->get(), sink, sizeof(sink), MSG_DONTWAIT) > 0) {
    }
    if (off > input.size() && w->listener->connections() == 0) break;
  }
  c->reset();
  for (int i = 0; i < 50 && w->listener->connections() != 0; ++i) w->loop.run_once(Millis(2));
  return 0;
}
