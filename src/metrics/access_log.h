// Access logs (SPEC: access_log): one line per http request or tcp connection, json or combined,
// to stdout, stderr or a file. Workers never block on it: each worker formats lines into its own
// AccessLogSink buffer (no lock per line) and hands a full buffer, or whatever it holds 200ms
// after its first line, to the one writer thread under a lock taken once per batch. Buffers are
// recycled, so steady logging does not allocate. If the writer falls far behind (a stuck disk)
// whole batches are dropped and counted rather than growing memory or stalling a worker.
// reopen() (SIGUSR1) may be called from any thread; the writer reopens the file before its next
// write, so logrotate's "move, then signal" loses no line.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.h"
#include "core/address.h"
#include "core/event_loop.h"
#include "core/result.h"

namespace fulcrum::metrics {

struct Exchange;

enum class LogFormat : uint8_t { kJson, kCombined };

class AccessLog {
 public:
  // Opens the file (or picks stdout/stderr) and starts the writer thread. Null when path is off.
  static Result<std::unique_ptr<AccessLog>> open(const config::AccessLog& spec);
  ~AccessLog();  // writes what is queued, then stops the writer
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  LogFormat format() const { return format_; }
  // Any thread: the writer reopens the file before its next write (stdout/stderr: nothing).
  void reopen();
  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

  // For sinks.
  std::string take_buffer();  // an empty buffer with capacity, recycled when possible
  void submit(std::string batch, uint64_t lines);

 private:
  AccessLog(std::string path, LogFormat format, int fd, bool owns_fd);
  void run();
  void write_all(const std::string& batch);
  void do_reopen();

  std::string path_;
  LogFormat format_;
  int fd_;
  bool owns_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::vector<std::string> free_;
  bool stop_ = false;
  std::atomic<bool> reopen_{false};
  std::atomic<uint64_t> lines_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> reopens_{0};
  std::thread thread_;
};

// A worker's side of the access log: formats lines into its own buffer. Worker thread only
// (flush() too: call it on the worker, or after the worker has stopped).
class AccessLogSink {
 public:
  AccessLogSink(AccessLog& log, EventLoop& loop);
  ~AccessLogSink();  // flushes
  AccessLogSink(const AccessLogSink&) = delete;
  AccessLogSink& operator=(const AccessLogSink&) = delete;

  void http(std::string_view listener, const SocketAddress& client, const Exchange& x, int status,
            double duration_ms, std::string_view backend, std::string_view server);
  void tcp(std::string_view listener, const SocketAddress& client, int status, uint64_t bytes_in,
           uint64_t bytes_out, double duration_ms, std::string_view backend, std::string_view server);
  void flush();

 private:
  void line_done();
  // "2024-05-01T12:00:00.123Z" (json) or "01/May/2024:12:00:00 +0000" (combined), from a cache
  // that is refreshed once a second.
  void append_time(bool iso);

  AccessLog& log_;
  Timer timer_;
  std::string buf_;
  uint64_t lines_ = 0;
  time_t cached_sec_ = -1;
  char iso_[32];
  char clf_[40];
};

// Escapes for the two formats (exposed for tests): JSON string content (quotes, backslash,
// control bytes and bytes >= 0x80 as \u00XX, so any input gives valid JSON), and nginx's escaping
// for combined ("\x22", "\x5C", non-printable as \xHH).
void append_json_escaped(std::string& out, std::string_view s);
void append_clf_escaped(std::string& out, std::string_view s);

}  // namespace fulcrum::metrics
