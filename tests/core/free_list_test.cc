// Tests for src/core/free_list.h: a freed block is handed to the next object of the class on the
// same thread, the list keeps at most kKeep blocks, other sizes (a derived class) pass through,
// and each thread has its own list.
#include "core/free_list.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace fulcrum {
namespace {

struct Obj {
  char bytes[64];
  static void* operator new(size_t n) { return FreeList<Obj, 4>::allocate(n); }
  static void operator delete(void* p, size_t n) { FreeList<Obj, 4>::release(p, n); }
};

#if !defined(__SANITIZE_ADDRESS__)
TEST(FreeListTest, FreedBlockIsReusedOnTheSameThread) {
  auto* a = new Obj;
  void* where = a;
  delete a;
  auto* b = new Obj;
  EXPECT_EQ(static_cast<void*>(b), where);
  delete b;
}

TEST(FreeListTest, KeepsAtMostItsLimit) {
  std::vector<Obj*> objs;
  for (int i = 0; i < 6; ++i) objs.push_back(new Obj);
  for (Obj* o : objs) delete o;  // 4 kept, 2 back to the allocator
  std::vector<void*> again;
  for (int i = 0; i < 4; ++i) again.push_back(new Obj);
  // The first four freed are kept (the list was then full), handed out last-freed first.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(again[i], static_cast<void*>(objs[3 - i])) << i;
  for (void* p : again) delete static_cast<Obj*>(p);
}

TEST(FreeListTest, EachThreadHasItsOwnList) {
  auto* a = new Obj;
  void* where = a;
  delete a;  // on this thread's list
  void* other = nullptr;
  std::thread([&] {
    auto* b = new Obj;
    other = b;
    delete b;
  }).join();
  EXPECT_NE(other, where);
  auto* c = new Obj;
  EXPECT_EQ(static_cast<void*>(c), where);
  delete c;
}
#endif

struct Bigger : Obj {
  char more[64];
};

TEST(FreeListTest, OtherSizesPassThrough) {
  // A derived class inherits the operators with its own size: it must not take (or leave) a
  // block of the list's size.
  auto* small = new Obj;
  delete small;
  auto* big = new Bigger;
  big->more[63] = 1;
  EXPECT_NE(static_cast<void*>(big), static_cast<void*>(small));
  delete big;
  auto* again = new Obj;
  delete again;
}

}  // namespace
}  // namespace fulcrum
