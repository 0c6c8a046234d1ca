// See h2_memory.h. Worker thread only (each thread has its own caches).
#include "http/h2_memory.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace fulcrum::http {
namespace {

#if !defined(__SANITIZE_ADDRESS__)
// Blocks of up to kMaxSmall bytes, in classes of kGrain bytes, each behind a header that names
// its class; larger ones are the allocator's (class kLarge).
constexpr size_t kGrain = 32;
constexpr size_t kMaxSmall = 1024;
constexpr size_t kClasses = kMaxSmall / kGrain;
constexpr size_t kKeepPerClass = 512;  // ~100 streams' worth of each kind of object, per thread
constexpr uint32_t kLarge = 0xffffffff;

struct alignas(16) Header {
  uint32_t cls;
  uint32_t pad[3];
};
static_assert(sizeof(Header) == 16);

struct Free {
  Free* next;
};

struct Caches {
  Free* head[kClasses] = {};
  size_t count[kClasses] = {};
  ~Caches() {
    gone = true;
    for (size_t c = 0; c < kClasses; ++c)
      while (head[c]) {
        Free* f = head[c];
        head[c] = f->next;
        std::free(reinterpret_cast<Header*>(f) - 1);
      }
  }
  static inline thread_local bool gone = false;  // trivially destructible: readable to the end
};

Caches& caches() {
  thread_local Caches c;
  return c;
}

size_t capacity(uint32_t cls) { return (static_cast<size_t>(cls) + 1) * kGrain; }

void* take(size_t size) {
  if (size == 0) size = 1;
  uint32_t cls = size <= kMaxSmall ? static_cast<uint32_t>((size - 1) / kGrain) : kLarge;
  if (cls != kLarge && !Caches::gone) {
    Caches& c = caches();
    if (Free* f = c.head[cls]) {
      c.head[cls] = f->next;
      --c.count[cls];
      return f;
    }
  }
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + (cls == kLarge ? size : capacity(cls))));
  if (!h) return nullptr;
  h->cls = cls;
  return h + 1;
}

void give(void* p) {
  if (!p) return;
  Header* h = static_cast<Header*>(p) - 1;
  if (h->cls != kLarge && !Caches::gone) {
    Caches& c = caches();
    if (c.count[h->cls] < kKeepPerClass) {
      auto* f = static_cast<Free*>(p);
      f->next = c.head[h->cls];
      c.head[h->cls] = f;
      ++c.count[h->cls];
      return;
    }
  }
  std::free(h);
}

void* h2_malloc(size_t size, void*) { return take(size); }
void h2_free(void* p, void*) { give(p); }
void* h2_calloc(size_t n, size_t size, void*) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  void* p = take(n * size);
  if (p) std::memset(p, 0, n * size);
  return p;
}
void* h2_realloc(void* p, size_t size, void*) {
  if (!p) return take(size);
  Header* h = static_cast<Header*>(p) - 1;
  if (h->cls == kLarge) {
    if (size > kMaxSmall) {
      auto* n = static_cast<Header*>(std::realloc(h, sizeof(Header) + size));
      return n ? n + 1 : nullptr;
    }
  } else if (size != 0 && size <= capacity(h->cls)) {
    return p;  // still fits its block
  }
  void* n = take(size);
  if (!n) return nullptr;
  // The old block's usable size: its class's, or (large) at least what is asked now or more.
  size_t old = h->cls == kLarge ? size : capacity(h->cls);
  std::memcpy(n, p, old < size ? old : size);
  give(p);
  return n;
}
#else
// Under AddressSanitizer: the allocator's own functions, so that misuse is still caught.
void* h2_malloc(size_t size, void*) { return std::malloc(size); }
void h2_free(void* p, void*) { std::free(p); }
void* h2_calloc(size_t n, size_t size, void*) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;  // as above (ASan's calloc would abort)
  return std::calloc(n, size);
}
void* h2_realloc(void* p, size_t size, void*) { return std::realloc(p, size); }
#endif

}  // namespace

nghttp2_mem* h2_thread_memory() {
  static nghttp2_mem mem = {nullptr, &h2_malloc, &h2_free, &h2_calloc, &h2_realloc};
  return &mem;
}

}  // namespace fulcrum::http
