// Memory for nghttp2 sessions: per-thread caches of small blocks, so a connection's steady
// stream of requests (each stream's state, each response's header copy and frame queue item)
// does not go through the C allocator's shared bins. glibc's own per-thread cache keeps only 7
// blocks of a size: a burst of concurrent streams overflows it every time. Worker thread only.
#pragma once
#include <nghttp2/nghttp2.h>

namespace fulcrum::http {

// For nghttp2_session_server_new3. Plain malloc and free under AddressSanitizer.
nghttp2_mem* h2_thread_memory();

}  // namespace fulcrum::http
