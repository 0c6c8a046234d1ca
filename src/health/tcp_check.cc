// The `tcp` check: a full non-blocking connect to the server's address; it passes once the
// three-way handshake completes, and the connection is then reset (see StreamProbe::close).
// On a backend with `tls:` it stays a TCP connect, with no TLS handshake (as HAProxy's plain
// `check` without `check-ssl`): `check: http` is the one that tests TLS. Health thread only.
#include "health/kinds.h"
#include "health/stream_probe.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

class TcpProbe final : public StreamProbe {
 public:
  using StreamProbe::StreamProbe;

 private:
  void on_connected() override { finish({Reason::kPass, "connected"}); }
  void on_ready(uint32_t) override {}
};

class TcpCheck final : public Check {
 public:
  explicit TcpCheck(EventLoop& loop) : loop_(loop) {}
  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    auto p = std::make_unique<TcpProbe>(loop_, std::move(done));
    p->start(server.address());
    return p;
  }
  std::string_view kind() const override { return "tcp"; }

 private:
  EventLoop& loop_;
};

}  // namespace

std::unique_ptr<Check> make_tcp_check(const upstream::Backend&, EventLoop& loop) {
  return std::make_unique<TcpCheck>(loop);
}

}  // namespace fulcrum::health
