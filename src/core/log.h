// Logging: one line per call to stderr, "TIME LEVEL message". Any thread (each line is one write).
// FULCRUM_LOG_LIMITED keeps a noisy call site to a few lines a second, counting what it drops, so
// a flood of bad traffic cannot flood the log.
#pragma once
#include <atomic>
#include <cstdint>

namespace fulcrum {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Allows `per_second` lines per second at one call site; reports how many were suppressed.
class LogLimiter {
 public:
  explicit constexpr LogLimiter(uint32_t per_second) : per_second_(per_second) {}
  // True when this line may be written; *suppressed gets the count dropped since the last one.
  bool allow(uint64_t* suppressed);

 private:
  uint32_t per_second_;
  std::atomic<int64_t> second_{0};
  std::atomic<uint32_t> used_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace fulcrum

#define FULCRUM_LOG(level, ...)                                                             \
  do {                                                                                      \
    if (::fulcrum::LogLevel::level >= ::fulcrum::log_level())                               \
      ::fulcrum::log_line(::fulcrum::LogLevel::level, __VA_ARGS__);                          \
  } while (0)

#define FULCRUM_LOG_LIMITED(level, ...)                                                     \
  do {                                                                                      \
    static ::fulcrum::LogLimiter fulcrum_limiter_(5);                                       \
    uint64_t fulcrum_dropped_ = 0;                                                          \
    if (::fulcrum::LogLevel::level >= ::fulcrum::log_level() &&                             \
        fulcrum_limiter_.allow(&fulcrum_dropped_)) {                                        \
      if (fulcrum_dropped_)                                                                 \
        ::fulcrum::log_line(::fulcrum::LogLevel::level, "(%llu similar lines suppressed)",  \
                            static_cast<unsigned long long>(fulcrum_dropped_));             \
      ::fulcrum::log_line(::fulcrum::LogLevel::level, __VA_ARGS__);                          \
    }                                                                                       \
  } while (0)
