// PipePool: a worker's spare pipes for splice(2). A connection borrows a pipe only while bytes
// are in flight and gives it back empty, so an idle proxied connection holds no pipe (no kernel
// buffers, no descriptors) and a busy one does not pay pipe2() per transfer. Worker thread only.
#pragma once
#include <cstddef>
#include <vector>

namespace fulcrum {

struct Pipe {
  int read = -1;
  int write = -1;
  bool valid() const { return read >= 0; }
};

class PipePool {
 public:
  explicit PipePool(int pipe_bytes = 1 << 18, size_t keep = 256) : pipe_bytes_(pipe_bytes), keep_(keep) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // An empty pipe, or an invalid one when the process is out of descriptors.
  Pipe acquire();
  // Only empty pipes come back; a pipe that may hold bytes must be closed with discard().
  void release(Pipe& p);
  void discard(Pipe& p);
  int pipe_bytes() const { return pipe_bytes_; }

 private:
  int pipe_bytes_;
  size_t keep_;
  std::vector<Pipe> free_;
};

}  // namespace fulcrum
