// The agent probe (SPEC: Server-reported load): a non-blocking connect to the server's address on
// the agent port, then one line read, of at most kMaxAgentReply bytes with its "\n". It does I/O
// only, like every check kind: the line goes back as the detail of a passing Outcome, and
// HealthService parses it (agent_reply.h) and applies it. Health thread only.
//
// Failures use the check reason codes: L4CON/L4TOUT/L4ERR when the connect fails, L7TOUT when no
// complete line comes within the timeout, L7RSP when the server closes before a "\n" or sends a
// longer line.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "config/config.h"
#include "health/agent_reply.h"
#include "health/kinds.h"
#include "health/stream_probe.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

class AgentProbe final : public StreamProbe {
 public:
  using StreamProbe::StreamProbe;

 private:
  void on_connected() override {}  // the agent speaks first

  void on_ready(uint32_t events) override {
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    // Edge-triggered: read until EAGAIN. The buffer holds one reply and a byte more, so an
    // over-long line is seen without reading a misbehaving server's stream to its end.
    for (;;) {
      size_t room = sizeof(buf_) - len_;
      ssize_t n = ::recv(fd(), buf_ + len_, room, 0);
      if (n > 0) {
        size_t start = len_;
        len_ += static_cast<size_t>(n);
        if (const void* nl = std::memchr(buf_ + start, '\n', len_ - start)) {
          size_t line = static_cast<size_t>(static_cast<const char*>(nl) - buf_);
          return finish({Reason::kPass, std::string(buf_, line)});
        }
        if (len_ >= kMaxAgentReply)
          return finish({Reason::kL7Bad, "reply longer than " + std::to_string(kMaxAgentReply) + " bytes"});
        continue;
      }
      if (n == 0)
        return finish({Reason::kL7Bad, len_ == 0 ? "connection closed without a reply"
                                                 : "connection closed before the end of the line"});
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      return finish({Reason::kL7Bad, std::string("reading the reply: ") + strerror(errno)});
    }
  }

  char buf_[kMaxAgentReply];
  size_t len_ = 0;
};

class AgentCheck final : public Check {
 public:
  AgentCheck(const config::Backend& spec, EventLoop& loop) : spec_(spec), loop_(loop) {}

  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    SocketAddress addr = server.address();
    addr.set_port(agent_port(server));
    auto p = std::make_unique<AgentProbe>(loop_, std::move(done));
    p->start(addr);
    return p;
  }
  std::string_view kind() const override { return "agent"; }

 private:
  // The server's own agent_port, else the backend's health.agent.port.
  uint16_t agent_port(const upstream::Server& server) const {
    size_t i = server.index();
    if (i < spec_.servers.size() && spec_.servers[i].agent_port != 0) return spec_.servers[i].agent_port;
    return spec_.health.agent ? spec_.health.agent->port : 0;
  }

  const config::Backend& spec_;
  EventLoop& loop_;
};

}  // namespace

std::unique_ptr<Check> make_agent_check(const upstream::Backend& backend, EventLoop& loop) {
  return std::make_unique<AgentCheck>(backend.spec(), loop);
}

}  // namespace fulcrum::health
