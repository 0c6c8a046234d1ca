// The `http` check: connect, send `GET path` with Connection: close, and read the response with
// a small strict reader of our own (status line, headers, then the body by Content-Length,
// chunked or to EOF). It passes when the status is in expect_status and, if expect_body is set,
// the first 64 KiB of the body contain it. On a backend with `tls:` the same request goes over
// TLS (HAProxy's check-ssl): StreamProbe does the handshake with a client context built from the
// backend's verify/sni/ca by tls::ClientContext::build, the function the proxy's upstream
// connections use, so a check verifies exactly as live traffic does. Health thread only, but for
// make_http_check (the thread that builds the service).
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "config/config.h"
#include "core/ascii.h"
#include "health/kinds.h"
#include "health/stream_probe.h"
#include "tls/tls.h"
#include "upstream/server.h"

namespace fulcrum::health {
namespace {

using ascii::iequals;

// Bounds: a health response is small. The head gets 16 KiB (generous for a status endpoint; a
// proxy's default limit is 8-32 KiB); the body is searched in its first 64 KiB only, so a server
// that streams forever costs us at most that.
constexpr size_t kMaxHead = 16 * 1024;
constexpr size_t kMaxBody = 64 * 1024;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ]  (RFC 9112 section 4). We also
// take a line that ends right after the code: some small servers omit the SP, and it is harmless.
int parse_status_line(std::string_view line) {
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !is_digit(line[7]) || line[8] != ' ') return -1;
  if (!is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11])) return -1;
  if (line.size() > 12 && line[12] != ' ') return -1;
  return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

class HttpProbe final : public StreamProbe {
 public:
  HttpProbe(EventLoop& loop, Done done, const tls::ClientContext* tls, const config::Health& cfg,
            std::string request)
      : StreamProbe(loop, std::move(done), tls), cfg_(cfg), request_(std::move(request)) {}

 private:
  enum class Phase { kStatus, kHeaders, kBody, kChunkSize, kChunkData, kChunkEnd };
  enum class Framing { kEof, kLength, kChunked };

  void on_connected() override { send_request(); }

  void on_ready(uint32_t events) override {
    if (tls() || (events & EPOLLOUT)) send_request();
    if (finished()) return;
    if (tls() || (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) read_response();
  }

  void send_request() {
    while (sent_ < request_.size()) {
      ssize_t n = io_send(request_.data() + sent_, request_.size() - sent_);
      if (n > 0) {
        sent_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;  // the next EPOLLOUT edge resumes
      return finish({Reason::kL7Bad, "sending the request: " + io_error(errno)});
    }
  }

  void read_response() {
    char chunk[16 * 1024];
    for (;;) {
      ssize_t n = io_recv(chunk, sizeof(chunk));
      if (n > 0) {
        in_.append(chunk, static_cast<size_t>(n));
        parse(false);
        if (finished()) return;
        continue;
      }
      if (n == 0) return parse(true);
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      if (phase_ == Phase::kStatus)
        return finish({Reason::kL7Bad, "reading the response: " + io_error(errno)});
      return parse(true);  // reset mid-body: judge what arrived
    }
  }

  bool status_ok(int status) const {
    return std::find(cfg_.expect_status.begin(), cfg_.expect_status.end(), status) !=
           cfg_.expect_status.end();
  }

  // Takes one line (without CR LF) from in_ at pos_; false when it is not complete yet.
  bool take_line(std::string_view* line) {
    size_t nl = in_.find('\n', pos_);
    if (nl == std::string::npos) return false;
    size_t end = nl > pos_ && in_[nl - 1] == '\r' ? nl - 1 : nl;
    *line = std::string_view(in_).substr(pos_, end - pos_);
    pos_ = nl + 1;
    return true;
  }

  void parse(bool eof) {
    for (;;) {
      if (finished()) return;
      std::string_view line;
      switch (phase_) {
        case Phase::kStatus:
        case Phase::kHeaders:
        case Phase::kChunkSize:
        case Phase::kChunkEnd:
          if (!take_line(&line)) {
            if (phase_ <= Phase::kHeaders && in_.size() > kMaxHead)
              return finish({Reason::kL7Bad, "response head over 16 KiB"});
            if (phase_ > Phase::kHeaders && in_.size() - pos_ > 1024)
              return finish({Reason::kL7Bad, "bad chunk framing"});
            if (eof) return at_eof();
            return compact();
          }
          if (phase_ <= Phase::kHeaders && (head_bytes_ += line.size() + 2) > kMaxHead)
            return finish({Reason::kL7Bad, "response head over 16 KiB"});
          if (!on_line(line)) return;
          break;
        case Phase::kBody:
        case Phase::kChunkData: {
          size_t avail = in_.size() - pos_;
          size_t want = framing_ == Framing::kEof ? avail : std::min<uint64_t>(avail, remaining_);
          add_body(std::string_view(in_).substr(pos_, want));
          pos_ += want;
          if (finished()) return;
          if (framing_ != Framing::kEof) {
            remaining_ -= want;
            if (remaining_ == 0) {
              if (framing_ == Framing::kLength) return body_done(false);
              phase_ = Phase::kChunkEnd;
              continue;
            }
          }
          if (eof) return at_eof();
          return compact();
        }
      }
    }
  }

  // Handles one line of the head or of chunk framing; false when it finished the probe.
  bool on_line(std::string_view line) {
    switch (phase_) {
      case Phase::kStatus: {
        status_ = parse_status_line(line);
        if (status_ < 0) {
          std::string shown(line.substr(0, 40));
          for (char& c : shown)
            if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
          finish({Reason::kL7Bad, "not an HTTP status line: \"" + shown + "\""});
          return false;
        }
        status_text_ = "HTTP " + std::to_string(status_);
        if (!status_ok(status_)) {
          finish({Reason::kL7Status, status_text_});
          return false;
        }
        if (cfg_.expect_body.empty()) {  // the status decides: no need to read on
          finish({Reason::kPass, status_text_});
          return false;
        }
        phase_ = Phase::kHeaders;
        return true;
      }
      case Phase::kHeaders: {
        if (line.empty()) return start_body();
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
          finish({Reason::kL7Bad, "malformed header line"});
          return false;
        }
        std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
        if (iequals(name, "content-length")) {
          uint64_t v = 0;
          if (value.empty() || value.size() > 15 || !std::all_of(value.begin(), value.end(), is_digit)) {
            finish({Reason::kL7Bad, "bad Content-Length"});
            return false;
          }
          for (char c : value) v = v * 10 + static_cast<uint64_t>(c - '0');
          content_length_ = v;
          has_length_ = true;
        } else if (iequals(name, "transfer-encoding")) {
          // RFC 9112 section 6.1: chunked, when present, is the final coding.
          chunked_ = value.size() >= 7 && iequals(value.substr(value.size() - 7), "chunked");
        }
        return true;
      }
      case Phase::kChunkSize: {
        std::string_view size = line.substr(0, line.find(';'));  // chunk extensions are ignored
        size = trim(size);
        uint64_t v = 0;
        if (size.empty() || size.size() > 15) {
          finish({Reason::kL7Bad, "bad chunk size"});
          return false;
        }
        for (char c : size) {
          int d = is_digit(c) ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
          if (d < 0) {
            finish({Reason::kL7Bad, "bad chunk size"});
            return false;
          }
          v = v * 16 + static_cast<uint64_t>(d);
        }
        if (v == 0) {
          body_done(false);
          return false;
        }
        remaining_ = v;
        phase_ = Phase::kChunkData;
        return true;
      }
      case Phase::kChunkEnd:
        if (!line.empty()) {
          finish({Reason::kL7Bad, "bad chunk framing"});
          return false;
        }
        phase_ = Phase::kChunkSize;
        return true;
      default:
        return true;
    }
  }

  bool start_body() {
    // 1xx, 204 and 304 carry no body (RFC 9112 section 6.3).
    if (status_ < 200 || status_ == 204 || status_ == 304) {
      body_done(false);
      return false;
    }
    if (chunked_) {
      framing_ = Framing::kChunked;
      phase_ = Phase::kChunkSize;
    } else if (has_length_) {
      framing_ = Framing::kLength;
      remaining_ = content_length_;
      phase_ = Phase::kBody;
      if (remaining_ == 0) {
        body_done(false);
        return false;
      }
    } else {
      framing_ = Framing::kEof;
      phase_ = Phase::kBody;
    }
    return true;
  }

  void add_body(std::string_view piece) {
    size_t room = kMaxBody - body_.size();
    bool capped = piece.size() >= room;
    // Search only the new bytes and the needle's length before them: linear in the body.
    size_t from = body_.size() >= cfg_.expect_body.size() ? body_.size() - cfg_.expect_body.size() + 1 : 0;
    body_.append(piece.substr(0, room));
    if (body_.find(cfg_.expect_body, from) != std::string::npos) return finish({Reason::kPass, status_text_});
    if (capped) body_done(true);
  }

  void body_done(bool capped) {
    if (finished()) return;
    if (body_.find(cfg_.expect_body) != std::string::npos) return finish({Reason::kPass, status_text_});
    std::string detail = "body lacks \"" + cfg_.expect_body + "\"";
    if (capped) detail += " (in its first 64 KiB)";
    finish({Reason::kL7Body, detail});
  }

  void at_eof() {
    if (phase_ == Phase::kStatus)
      return finish({Reason::kL7Bad, in_.empty() ? "connection closed without a response"
                                                 : "connection closed inside the status line"});
    if (phase_ == Phase::kHeaders)
      return finish({Reason::kL7Bad, "connection closed inside the response head"});
    body_done(false);  // EOF ends an unframed body; a framed one was cut short: judge what came
  }

  // Drops what has been parsed, so in_ holds at most one partial line or the unread body.
  void compact() {
    in_.erase(0, pos_);
    pos_ = 0;
  }

  const config::Health& cfg_;
  std::string request_;
  size_t sent_ = 0;
  std::string in_;
  size_t pos_ = 0;
  size_t head_bytes_ = 0;
  Phase phase_ = Phase::kStatus;
  Framing framing_ = Framing::kEof;
  int status_ = 0;
  std::string status_text_;
  bool chunked_ = false;
  bool has_length_ = false;
  uint64_t content_length_ = 0;
  uint64_t remaining_ = 0;
  std::string body_;
};

class HttpCheck final : public Check {
 public:
  HttpCheck(const config::Health& cfg, EventLoop& loop, std::shared_ptr<const tls::ClientContext> tls,
            std::string tls_error)
      : cfg_(cfg), loop_(loop), tls_(std::move(tls)), tls_error_(std::move(tls_error)) {}

  std::unique_ptr<Probe> probe(const upstream::Server& server, Done done) override {
    // The context could not be built (the proxy refuses such a config at start; a test may not).
    if (!tls_error_.empty()) {
      done({Reason::kLocalError, tls_error_});
      return nullptr;
    }
    // Host: the configured name, else the address as written (RFC 9110 section 7.2: host and port).
    const std::string& host = !cfg_.host.empty()               ? cfg_.host
                              : !server.address_text().empty() ? server.address_text()
                                                               : server.address().to_string();
    std::string request = "GET " + cfg_.path + " HTTP/1.1\r\nHost: " + host +
                          "\r\nConnection: close\r\nUser-Agent: fulcrum-health\r\nAccept: */*\r\n\r\n";
    auto p = std::make_unique<HttpProbe>(loop_, std::move(done), tls_.get(), cfg_, std::move(request));
    p->start(server.address());
    return p;
  }
  std::string_view kind() const override { return "http"; }

 private:
  const config::Health& cfg_;
  EventLoop& loop_;
  std::shared_ptr<const tls::ClientContext> tls_;  // null: plain HTTP
  std::string tls_error_;
};

}  // namespace

std::unique_ptr<Check> make_http_check(const upstream::Backend& backend, EventLoop& loop) {
  const config::Backend& spec = backend.spec();
  std::shared_ptr<const tls::ClientContext> tls;
  std::string tls_error;
  if (spec.tls) {
    // One context per backend for the check, like the one runtime.cc builds for the workers.
    auto ctx = tls::ClientContext::build(*spec.tls);
    if (ctx) tls = std::move(*ctx);
    else tls_error = "tls: " + ctx.error().message;
  }
  return std::make_unique<HttpCheck>(spec.health, loop, std::move(tls), std::move(tls_error));
}

}  // namespace fulcrum::health
