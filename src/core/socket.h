// Socket helpers: non-blocking listeners (one per worker, SO_REUSEPORT) and outgoing connects.
// Any thread.
#pragma once
#include "core/address.h"
#include "core/fd.h"
#include "core/result.h"

namespace fulcrum {

enum class SocketType { kStream, kDatagram };

// A bound, listening (stream) or bound (datagram) non-blocking socket with SO_REUSEADDR and
// SO_REUSEPORT, so each worker has its own and the kernel spreads connections between them.
Result<Fd> listen_socket(const SocketAddress& addr, SocketType type = SocketType::kStream, int backlog = 4096);

// Starts a non-blocking connect. `*in_progress` tells whether completion is pending (EINPROGRESS).
Result<Fd> connect_socket(const SocketAddress& addr, bool* in_progress);

// The pending error of a socket after a non-blocking connect completes (0 when connected).
int socket_error(int fd);

void set_nodelay(int fd);
// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
long raise_fd_limit();

}  // namespace fulcrum
