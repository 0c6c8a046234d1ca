#include "core/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace fulcrum {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level.store(level); }
LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }

void log_line(LogLevel level, const char* fmt, ...) {
  char buf[2048];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                   level_name(level));
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : m);
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  [[maybe_unused]] auto w = ::write(2, buf, len);
}

bool LogLimiter::allow(uint64_t* suppressed) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  int64_t now = ts.tv_sec;
  int64_t seen = second_.load(std::memory_order_relaxed);
  if (seen != now && second_.compare_exchange_strong(seen, now, std::memory_order_relaxed))
    used_.store(0, std::memory_order_relaxed);
  if (used_.fetch_add(1, std::memory_order_relaxed) >= per_second_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace fulcrum
