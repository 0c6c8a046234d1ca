// The counting operator new behind alloc_counter.h. GCC sees operator delete's free() inlined
// against a `new` expression and warns; new is malloc underneath here, so the pair does match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_allocations{0};
thread_local long t_allocations = 0;
}  // namespace

namespace fulcrum::test {
long allocations() { return g_allocations.load(std::memory_order_relaxed); }
long allocations_on_this_thread() { return t_allocations; }
}  // namespace fulcrum::test

#if !defined(__SANITIZE_ADDRESS__)
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  ++t_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif
