// CHECK for the fuzz targets: traps on a broken invariant, so libFuzzer reports a crash and keeps
// the input. Unlike assert it stays in every build (NDEBUG does not remove it). Single-threaded,
// like the targets.
#pragma once

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)
