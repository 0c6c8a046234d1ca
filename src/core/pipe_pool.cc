#include "core/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace fulcrum {

PipePool::~PipePool() {
  for (Pipe& p : free_) discard(p);
}

Pipe PipePool::acquire() {
  if (!free_.empty()) {
    Pipe p = free_.back();
    free_.pop_back();
    return p;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  // A bigger pipe moves a bulk transfer in fewer splice calls; it costs nothing while empty.
  fcntl(fds[1], F_SETPIPE_SZ, pipe_bytes_);
  return {fds[0], fds[1]};
}

void PipePool::release(Pipe& p) {
  if (!p.valid()) return;
  if (free_.size() < keep_) {
    free_.push_back(p);
    p = {};
  } else {
    discard(p);
  }
}

void PipePool::discard(Pipe& p) {
  if (p.read >= 0) ::close(p.read);
  if (p.write >= 0) ::close(p.write);
  p = {};
}

}  // namespace fulcrum
