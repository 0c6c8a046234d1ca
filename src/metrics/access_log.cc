// Access logs (access_log.h): the writer thread, the per-worker sinks that format lines, and the
// two formats. A sink runs on its worker; the AccessLog's queue is shared under one mutex per batch.
#include "metrics/access_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "metrics/metrics.h"

namespace fulcrum::metrics {
namespace {

constexpr size_t kFlushBytes = 32 * 1024;  // a batch: a few hundred lines, one write(2)
constexpr size_t kBufferBytes = 64 * 1024;
constexpr size_t kMaxQueued = 256;  // 256 x ~32 KiB = 8 MiB behind a stalled disk, then drop
constexpr Millis kFlushAfter{200};  // a quiet server's lines appear within this

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
  out.append(buf, static_cast<size_t>(n));
}

void append_ms(std::string& out, double ms) {
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%.3f", ms);
  out.append(buf, static_cast<size_t>(n));
}

// The client address without allocating (SocketAddress::ip_string returns a std::string).
void append_ip(std::string& out, const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = "-";
  a.write_ip(buf, sizeof(buf));
  out.append(buf);
}

void json_field(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  out.append(key);
  out += "\":\"";
  append_json_escaped(out, value);
  out += '"';
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      // Bytes outside printable ASCII: as the code point of the same number, so that whatever a
      // client sends, the line is valid JSON (request targets are ASCII by RFC 9112 anyway).
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

void append_clf_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

// ---- writer ----------------------------------------------------------------------------------

Result<std::unique_ptr<AccessLog>> AccessLog::open(const config::AccessLog& spec) {
  if (spec.path == "off" || spec.path.empty()) return std::unique_ptr<AccessLog>();
  LogFormat format = spec.format == "combined" ? LogFormat::kCombined : LogFormat::kJson;
  if (spec.path == "stdout") return std::unique_ptr<AccessLog>(new AccessLog(spec.path, format, 1, false));
  if (spec.path == "stderr") return std::unique_ptr<AccessLog>(new AccessLog(spec.path, format, 2, false));
  int fd = ::open(spec.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return os_error("access_log " + spec.path + ": " + strerror(errno), errno);
  return std::unique_ptr<AccessLog>(new AccessLog(spec.path, format, fd, true));
}

AccessLog::AccessLog(std::string path, LogFormat format, int fd, bool owns_fd)
    : path_(std::move(path)), format_(format), fd_(fd), owns_fd_(owns_fd) {
  // The writer takes no signals: the runtime reads them from a signalfd, which works only while
  // every thread blocks them, and this thread may start before the runtime sets its mask.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

void AccessLog::reopen() {
  reopen_.store(true, std::memory_order_release);
  cv_.notify_one();
}

std::string AccessLog::take_buffer() {
  std::lock_guard lock(mu_);
  if (free_.empty()) {
    std::string b;
    b.reserve(kBufferBytes);
    return b;
  }
  std::string b = std::move(free_.back());
  free_.pop_back();
  return b;
}

void AccessLog::submit(std::string batch, uint64_t lines) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      dropped_.fetch_add(lines, std::memory_order_relaxed);
      batch.clear();
      if (free_.size() < 64) free_.push_back(std::move(batch));
      return;
    }
    queue_.push_back(std::move(batch));
  }
  lines_.fetch_add(lines, std::memory_order_relaxed);
  cv_.notify_one();
}

void AccessLog::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty() || reopen_.load(std::memory_order_acquire); });
    if (reopen_.exchange(false, std::memory_order_acq_rel)) {
      lock.unlock();
      do_reopen();
      lock.lock();
    }
    while (!queue_.empty()) {
      std::string batch = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      write_all(batch);
      batch.clear();
      lock.lock();
      if (free_.size() < 64) free_.push_back(std::move(batch));
    }
    if (stop_) return;
  }
}

void AccessLog::write_all(const std::string& batch) {
  size_t off = 0;
  while (off < batch.size()) {
    ssize_t n = ::write(fd_, batch.data() + off, batch.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {  // a non-blocking stdout (a pipe someone set O_NONBLOCK on)
      usleep(1000);
      continue;
    }
    FULCRUM_LOG_LIMITED(kError, "access_log %s: write: %s; lines lost", path_.c_str(), strerror(errno));
    return;
  }
}

void AccessLog::do_reopen() {
  if (!owns_fd_) return;
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    FULCRUM_LOG(kError, "access_log %s: reopen: %s; still writing to the old file", path_.c_str(),
                strerror(errno));
    return;
  }
  ::close(fd_);
  fd_ = fd;  // only this thread writes fd_
  reopens_.fetch_add(1, std::memory_order_relaxed);
  FULCRUM_LOG(kInfo, "access_log %s reopened", path_.c_str());
}

// ---- sink ------------------------------------------------------------------------------------

AccessLogSink::AccessLogSink(AccessLog& log, EventLoop& loop) : log_(log), timer_(loop, [this] { flush(); }) {
  buf_ = log_.take_buffer();
}

AccessLogSink::~AccessLogSink() { flush(); }

void AccessLogSink::flush() {
  timer_.cancel();
  if (buf_.empty()) return;
  log_.submit(std::move(buf_), lines_);
  lines_ = 0;
  buf_ = log_.take_buffer();
}

void AccessLogSink::line_done() {
  buf_ += '\n';
  if (lines_++ == 0) timer_.arm(kFlushAfter);
  if (buf_.size() >= kFlushBytes) flush();
}

void AccessLogSink::append_time(bool iso) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec_) {
    cached_sec_ = ts.tv_sec;
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    strftime(iso_, sizeof(iso_), "%Y-%m-%dT%H:%M:%S", &t);
    strftime(clf_, sizeof(clf_), "%d/%b/%Y:%H:%M:%S +0000", &t);
  }
  if (!iso) {
    buf_.append(clf_);
    return;
  }
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03dZ", static_cast<int>(ts.tv_nsec / 1000000));
  buf_.append(iso_);
  buf_.append(ms);
}

void AccessLogSink::http(std::string_view listener, const SocketAddress& client, const Exchange& x,
                         int status, double duration_ms, std::string_view backend, std::string_view server) {
  std::string_view method = x.method_len ? x.method() : std::string_view("-");
  std::string_view target = x.target_len ? x.target() : std::string_view("-");
  if (log_.format() == LogFormat::kCombined) {
    // nginx's combined: $remote_addr - $remote_user [$time_local] "$request" $status
    // $body_bytes_sent "$http_referer" "$http_user_agent"
    append_ip(buf_, client);
    buf_ += " - - [";
    append_time(false);
    buf_ += "] \"";
    if (x.method_len) {
      append_clf_escaped(buf_, method);
      buf_ += ' ';
      append_clf_escaped(buf_, target);
      buf_ += x.http2 ? " HTTP/2.0" : x.http10 ? " HTTP/1.0" : " HTTP/1.1";
    }
    buf_ += "\" ";
    append_uint(buf_, static_cast<uint64_t>(status));
    buf_ += ' ';
    append_uint(buf_, x.bytes);
    buf_ += " \"";
    if (x.referer_len)
      append_clf_escaped(buf_, x.referer());
    else
      buf_ += '-';
    buf_ += "\" \"";
    if (x.agent_len)
      append_clf_escaped(buf_, x.agent());
    else
      buf_ += '-';
    buf_ += '"';
    return line_done();
  }
  buf_ += "{\"time\":\"";
  append_time(true);
  buf_ += '"';
  json_field(buf_, "listener", listener);
  buf_ += ",\"client\":\"";
  append_ip(buf_, client);
  buf_ += '"';
  json_field(buf_, "method", method);
  json_field(buf_, "path", target);
  json_field(buf_, "protocol", x.http2 ? "HTTP/2.0" : x.http10 ? "HTTP/1.0" : "HTTP/1.1");
  buf_ += ",\"status\":";
  append_uint(buf_, static_cast<uint64_t>(status));
  buf_ += ",\"bytes\":";
  append_uint(buf_, x.bytes);
  buf_ += ",\"duration_ms\":";
  append_ms(buf_, duration_ms);
  json_field(buf_, "backend", backend);
  json_field(buf_, "server", server);
  buf_ += '}';
  line_done();
}

void AccessLogSink::tcp(std::string_view listener, const SocketAddress& client, int status, uint64_t bytes_in,
                        uint64_t bytes_out, double duration_ms, std::string_view backend,
                        std::string_view server) {
  if (log_.format() == LogFormat::kCombined) {
    // Combined has no connection form; keep its shape so log tools still parse the line, with
    // the stream "request" written as "TCP listener backend/server".
    append_ip(buf_, client);
    buf_ += " - - [";
    append_time(false);
    buf_ += "] \"TCP ";
    append_clf_escaped(buf_, listener);
    buf_ += ' ';
    append_clf_escaped(buf_, backend.empty() ? std::string_view("-") : backend);
    buf_ += '/';
    append_clf_escaped(buf_, server.empty() ? std::string_view("-") : server);
    buf_ += "\" ";
    append_uint(buf_, static_cast<uint64_t>(status));
    buf_ += ' ';
    append_uint(buf_, bytes_out);
    buf_ += " \"-\" \"-\"";
    return line_done();
  }
  buf_ += "{\"time\":\"";
  append_time(true);
  buf_ += '"';
  json_field(buf_, "listener", listener);
  buf_ += ",\"client\":\"";
  append_ip(buf_, client);
  buf_ += "\",\"protocol\":\"tcp\",\"status\":";
  append_uint(buf_, static_cast<uint64_t>(status));
  buf_ += ",\"bytes\":";
  append_uint(buf_, bytes_out);
  buf_ += ",\"bytes_in\":";
  append_uint(buf_, bytes_in);
  buf_ += ",\"duration_ms\":";
  append_ms(buf_, duration_ms);
  json_field(buf_, "backend", backend);
  json_field(buf_, "server", server);
  buf_ += '}';
  line_done();
}

}  // namespace fulcrum::metrics
