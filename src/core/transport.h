// Transport: how a connection moves bytes, whatever carries them: a plain socket, TLS over a
// socket (src/tls/), or an HTTP/2 stream in memory (src/http/h2_stream.h). The HTTP state machine
// (src/http/client_conn.h) talks only to this, so one code path serves every wire. A transport never
// owns the descriptor it writes to; its owner closes that. Worker thread only.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string_view>

namespace fulcrum {

class Transport {
 public:
  virtual ~Transport() = default;
  // Bytes read (> 0); 0 at the peer's end; -1 with errno (EAGAIN: nothing for now).
  virtual ssize_t read(char* buf, size_t n) = 0;
  // Writes `a` then `b`; the bytes written (possibly fewer), or -1 with errno (EAGAIN: no room).
  // `more`: more follows at once (MSG_MORE: the kernel may hold a partial segment).
  virtual ssize_t write2(std::string_view a, std::string_view b, bool more = false) = 0;
  // Up to `n` bytes of `file` from `offset`; as write2.
  virtual ssize_t send_file(int file, uint64_t offset, size_t n) = 0;
  // Ends our direction (FIN; TLS close_notify first; an h2 stream's END_STREAM).
  virtual void shutdown_write() = 0;
  // Finishes a handshake: 1 done, 0 wants I/O (wait for an edge), -1 failed.
  virtual int handshake() { return 1; }
  // Whether the peer sent bytes or closed while we were not reading (an idle pooled connection).
  virtual bool peek_unsafe() = 0;
  // A socket tells "all read" by a short read and "writable again" by an edge of its own. TLS may
  // need the other direction's edge (a record to read before a write, and so on): its owner then
  // retries both directions on any edge.
  virtual bool short_read_drains() const { return true; }
  virtual bool any_edge_retries_both() const { return false; }
  // The ALPN protocol agreed ("h2", "http/1.1"), or empty.
  virtual std::string_view alpn() const { return {}; }
};

// A plain socket (not owned).
class SocketTransport final : public Transport {
 public:
  explicit SocketTransport(int fd) : fd_(fd) {}
  ssize_t read(char* buf, size_t n) override;
  ssize_t write2(std::string_view a, std::string_view b, bool more = false) override;
  ssize_t send_file(int file, uint64_t offset, size_t n) override;
  void shutdown_write() override;
  bool peek_unsafe() override;

 private:
  int fd_;
};

}  // namespace fulcrum
