// The Redis LimitStore: limits shared by several fulcrum instances through one Redis server.
//
// Workers never wait for Redis. A decision is made at once from a local mirror of each client's
// bucket (a BucketTable, refilled here at the configured rate) and a last-known connection count.
// Each request or connection let in is then reported to Redis by a task posted to the store's own
// thread, whose event loop (core/event_loop.h) drives a hiredis async connection. Redis keeps the
// real token bucket (a Lua script, atomic there, on Redis' clock so instances' clocks need not
// agree) and the shared connection counts; each answer lowers the mirror to what Redis says is
// left, which is what the other instances' requests took. The price of never blocking is a
// little slack: what other instances take during one round trip (sub-millisecond on a LAN) is
// seen one round trip late.
//
// Redis down or slow (over kMaxInFlight unanswered): requests are allowed (fail open, reported as
// failed_open so the caller counts it), a rate-limited log line says so, and the store reconnects
// every second. Connection counts carry a 10-minute expiry, so an instance that died holding
// connections cannot lock a client out for longer than that.
#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "core/log.h"
#include "protect/bucket_table.h"
#include "protect/limit_store.h"

namespace fulcrum::protect {
namespace {

constexpr size_t kSlots = size_t{1} << 16;
constexpr int kMaxInFlight = 10000;
constexpr Millis kReconnect{1000};
constexpr Millis kConnectTimeout{2000};  // hiredis' async connect has none of its own

// KEYS[1] bucket; ARGV rate/s, burst. Returns {allowed 0|1, thousandths of a token left}.
constexpr const char* kTakeScript =
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "local rate = tonumber(ARGV[1]) local burst = tonumber(ARGV[2]) "
    "local b = redis.call('HMGET', KEYS[1], 'k', 't') "
    "local k = tonumber(b[1]) local last = tonumber(b[2]) "
    "if k == nil or last == nil then k = burst last = now end "
    "if now > last then k = math.min(burst, k + (now - last) * rate / 1000) end "
    "local ok = 0 "
    "if k >= 1 then k = k - 1 ok = 1 end "
    "redis.call('HSET', KEYS[1], 'k', tostring(k), 't', tostring(math.max(now, last))) "
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000) "
    "return {ok, math.floor(k * 1000)}";
constexpr const char* kIncrScript =
    "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], 600000) return n";
constexpr const char* kDecrScript =
    "local n = redis.call('DECR', KEYS[1]) if n <= 0 then redis.call('DEL', KEYS[1]) n = 0 end return n";

class RedisStore final : public LimitStore, public IoHandler {
 public:
  RedisStore(std::string host, int port, const std::string& name)
      : host_(std::move(host)),
        port_(port),
        prefix_("fulcrum:" + name + ":"),
        conns_(new std::atomic<uint64_t>[kSlots]()),
        reconnect_(loop_, [this] { connect(); }),
        connect_timeout_(loop_, [this] { connect_timed_out(); }) {
    loop_.post([this] { connect(); });
    // Signals belong to the runtime's signalfd: the store's thread blocks them all (it may be
    // built before the main thread blocks them, and inherits the mask it is started with).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    thread_ = std::thread([this] { loop_.run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  ~RedisStore() override {
    loop_.post([this] {
      stopping_ = true;
      reconnect_.cancel();
      connect_timeout_.cancel();
      if (ac_) redisAsyncFree(ac_);  // runs the callbacks with no reply, then cleanup()
      ac_ = nullptr;
      loop_.stop();
    });
    thread_.join();
  }

  TakeResult take_token(const ClientKey& key, const BucketSpec& spec, TimePoint now) override {
    if (key.len == 0 || !(spec.per_second > 0)) return {};
    if (!usable()) return {true, 0, true};
    TakeResult r = mirror_.take(key, spec, now);
    if (!r.allowed) return r;
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    loop_.post([this, key, spec] { send_take(key, spec); });
    return r;
  }

  Admit acquire_conn(const ClientKey& key, uint32_t max) override {
    if (key.len == 0 || max == 0) return Admit::kUncounted;
    if (!usable()) return Admit::kUncounted;
    auto& slot = conns_[key.hash & (kSlots - 1)];
    uint64_t tag = (key.hash >> 32) | 1;
    uint64_t v = slot.load(std::memory_order_relaxed);
    uint64_t count = (v >> 32) == tag ? (v & 0xFFFFFFFF) : 0;
    if (count >= max) return Admit::kRefused;
    slot.store((tag << 32) | (count + 1), std::memory_order_relaxed);  // until Redis answers
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    loop_.post([this, key] { send_conn(key, kIncrScript); });
    return Admit::kCounted;
  }

  void release_conn(const ClientKey& key) override {
    if (key.len == 0) return;
    auto& slot = conns_[key.hash & (kSlots - 1)];
    uint64_t tag = (key.hash >> 32) | 1;
    uint64_t v = slot.load(std::memory_order_relaxed);
    if ((v >> 32) == tag && (v & 0xFFFFFFFF) > 0) slot.store(v - 1, std::memory_order_relaxed);
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    loop_.post([this, key] { send_conn(key, kDecrScript); });
  }

  // Readiness of the Redis socket: level-triggered, in the directions hiredis asked for.
  void on_io(uint32_t events) override {
    if (!ac_) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) redisAsyncHandleRead(ac_);
    if (ac_ && (events & EPOLLOUT)) redisAsyncHandleWrite(ac_);
  }

 private:
  struct PendingTake {
    RedisStore* store;
    ClientKey key;
    BucketSpec spec;
  };

  bool usable() const {
    return connected_.load(std::memory_order_relaxed) &&
           in_flight_.load(std::memory_order_relaxed) < kMaxInFlight;
  }

  std::string key_name(const ClientKey& key, char kind) const { return prefix_ + kind + ':' + key.text(); }

  // ---- the store's thread ----

  void connect() {
    if (stopping_ || ac_) return;
    ac_ = redisAsyncConnect(host_.c_str(), port_);
    if (!ac_ || ac_->err) {
      FULCRUM_LOG_LIMITED(kWarn, "protect store redis %s:%d: %s; limits fail open until it is back",
                          host_.c_str(), port_, ac_ ? ac_->errstr : "out of memory");
      if (ac_) redisAsyncFree(ac_);
      ac_ = nullptr;
      reconnect_.arm(kReconnect);
      return;
    }
    ac_->data = this;
    ac_->ev.data = this;
    ac_->ev.addRead = [](void* p) { static_cast<RedisStore*>(p)->watch(true, -1); };
    ac_->ev.delRead = [](void* p) { static_cast<RedisStore*>(p)->watch(false, -1); };
    ac_->ev.addWrite = [](void* p) { static_cast<RedisStore*>(p)->watch(-1, true); };
    ac_->ev.delWrite = [](void* p) { static_cast<RedisStore*>(p)->watch(-1, false); };
    ac_->ev.cleanup = [](void* p) { static_cast<RedisStore*>(p)->unwatch(); };
    fd_ = ac_->c.fd;
    reading_ = writing_ = false;
    registered_ = false;
    connect_timeout_.arm(kConnectTimeout);
    redisAsyncSetConnectCallback(ac_, [](const redisAsyncContext* c, int status) {
      static_cast<RedisStore*>(c->data)->on_connect(status == REDIS_OK, c->errstr);
    });
    redisAsyncSetDisconnectCallback(ac_, [](const redisAsyncContext* c, int status) {
      static_cast<RedisStore*>(c->data)->on_disconnect(status == REDIS_OK, c->errstr);
    });
  }

  void watch(int read, int write) {
    if (read >= 0) reading_ = read;
    if (write >= 0) writing_ = write;
    uint32_t ev = (reading_ ? EPOLLIN : 0u) | (writing_ ? EPOLLOUT : 0u);
    if (!registered_) {
      registered_ = static_cast<bool>(loop_.add(fd_, this, ev));
    } else {
      (void)loop_.modify(fd_, this, ev);
    }
  }

  void unwatch() {
    if (registered_) loop_.remove(fd_);
    registered_ = false;
  }

  void connect_timed_out() {
    if (!ac_ || connected_.load(std::memory_order_relaxed)) return;
    FULCRUM_LOG_LIMITED(kWarn,
                        "protect store redis %s:%d: connect timed out; limits fail open until it is back",
                        host_.c_str(), port_);
    redisAsyncFree(ac_);  // not connected: no disconnect callback
    ac_ = nullptr;
    reconnect_.arm(kReconnect);
  }

  void on_connect(bool ok, const char* err) {
    connect_timeout_.cancel();
    if (!ok) {
      FULCRUM_LOG_LIMITED(kWarn, "protect store redis %s:%d: connect: %s; limits fail open until it is back",
                          host_.c_str(), port_, err);
      ac_ = nullptr;  // hiredis frees the context after this callback
      if (!stopping_) reconnect_.arm(kReconnect);
      return;
    }
    FULCRUM_LOG(kInfo, "protect store redis %s:%d: connected", host_.c_str(), port_);
    in_flight_.store(0, std::memory_order_relaxed);
    connected_.store(true, std::memory_order_relaxed);
  }

  void on_disconnect(bool clean, const char* err) {
    connected_.store(false, std::memory_order_relaxed);
    ac_ = nullptr;  // freed by hiredis after this callback
    if (stopping_) return;
    FULCRUM_LOG_LIMITED(kWarn, "protect store redis %s:%d: %s; limits fail open until it is back",
                        host_.c_str(), port_, clean ? "disconnected" : err);
    reconnect_.arm(kReconnect);
  }

  void done_one() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  void send_take(const ClientKey& key, const BucketSpec& spec) {
    if (!ac_ || !connected_.load(std::memory_order_relaxed)) return done_one();
    std::string name = key_name(key, 'r');
    std::string rate = std::to_string(spec.per_second);
    std::string burst = std::to_string(std::max<uint32_t>(spec.burst, 1));
    auto* pending = new PendingTake{this, key, spec};  // the store's thread: allocation is fine here
    int r = redisAsyncCommand(
        ac_,
        [](redisAsyncContext*, void* reply, void* priv) {
          std::unique_ptr<PendingTake> p(static_cast<PendingTake*>(priv));
          p->store->on_take(static_cast<redisReply*>(reply), *p);
        },
        pending, "EVAL %s 1 %s %s %s", kTakeScript, name.c_str(), rate.c_str(), burst.c_str());
    if (r != REDIS_OK) {
      delete pending;
      done_one();
    }
  }

  // What Redis says is left bounds the mirror: the other instances took the difference.
  void on_take(redisReply* reply, const PendingTake& p) {
    done_one();
    if (!reply) return;  // disconnected or freed
    if (reply->type == REDIS_REPLY_ERROR) {
      FULCRUM_LOG_LIMITED(kWarn, "protect store redis %s:%d: %s", host_.c_str(), port_, reply->str);
      return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return;
    if (reply->element[1]->type != REDIS_REPLY_INTEGER) return;
    mirror_.clamp(p.key, p.spec, static_cast<double>(reply->element[1]->integer) / 1000.0, Clock::now());
  }

  void send_conn(const ClientKey& key, const char* script) {
    if (!ac_ || !connected_.load(std::memory_order_relaxed)) return done_one();
    std::string name = key_name(key, 'c');
    static_assert(sizeof(void*) == sizeof(uint64_t), "the key hash rides in the callback's pointer");
    int r = redisAsyncCommand(
        ac_,
        [](redisAsyncContext* c, void* reply, void* priv) {
          static_cast<RedisStore*>(c->data)->on_conn(static_cast<redisReply*>(reply),
                                                     reinterpret_cast<uint64_t>(priv));
        },
        reinterpret_cast<void*>(key.hash), "EVAL %s 1 %s", script, name.c_str());
    if (r != REDIS_OK) done_one();
  }

  // The shared count as Redis has it now replaces our estimate.
  void on_conn(redisReply* reply, uint64_t hash) {
    done_one();
    if (!reply || reply->type != REDIS_REPLY_INTEGER) return;
    uint64_t tag = (hash >> 32) | 1;
    uint64_t n = static_cast<uint64_t>(std::clamp<long long>(reply->integer, 0, 0xFFFFFFFF));
    conns_[hash & (kSlots - 1)].store((tag << 32) | n, std::memory_order_relaxed);
  }

  std::string host_;
  int port_;
  std::string prefix_;
  BucketTable mirror_;                              // each client's bucket as this instance sees it
  std::unique_ptr<std::atomic<uint64_t>[]> conns_;  // [tag:32][last known shared count:32]
  std::atomic<bool> connected_{false};
  std::atomic<int> in_flight_{0};
  EventLoop loop_;
  Timer reconnect_;
  Timer connect_timeout_;
  // The store's thread only:
  redisAsyncContext* ac_ = nullptr;
  int fd_ = -1;
  bool reading_ = false, writing_ = false, registered_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<LimitStore> make_redis_store(const std::string& address, const std::string& name) {
  auto colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  int port = colon == std::string::npos ? 6379 : std::atoi(address.c_str() + colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_unique<RedisStore>(std::move(host), port, name);
}

}  // namespace fulcrum::protect
