// Allocation counting for the "no allocation per request" tests (STYLE 8). A test binary that
// calls these links alloc_counter.cc, which replaces the global operator new with a counting
// pass-through to malloc. ASan brings its own operator new, so counting is off there.
#pragma once

namespace fulcrum::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kCountingAllocations = false;
#else
inline constexpr bool kCountingAllocations = true;
#endif

long allocations();                 // every thread's
long allocations_on_this_thread();  // this thread's alone (other threads may allocate as they like)

}  // namespace fulcrum::test
