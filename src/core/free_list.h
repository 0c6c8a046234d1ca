// Recycled memory for objects a worker makes and frees at a high rate (an HTTP/2 stream's exchange
// is a ClientConn of ~2 KiB, past glibc's per-thread cache, so each one cost a trip through the
// allocator's shared bins). A class routes its operator new/delete through FreeList<T>: blocks
// freed on a thread wait there for the next object that thread makes, up to kKeep of them; the
// rest, and all of them when the thread ends, go back to the allocator. Under AddressSanitizer it
// is plain new/delete, so a use after free is still caught. Any thread (each has its own list).
#pragma once
#include <cstddef>
#include <new>

namespace fulcrum {

template <class T, size_t kKeep = 256>
class FreeList {
 public:
  static void* allocate(size_t n) {
#if !defined(__SANITIZE_ADDRESS__)
    List& l = list();
    if (n == sizeof(T) && l.head) {
      Node* b = l.head;
      l.head = b->next;
      --l.count;
      return b;
    }
#endif
    return ::operator new(n);
  }

  static void release(void* p, [[maybe_unused]] size_t n) {
#if !defined(__SANITIZE_ADDRESS__)
    if (n == sizeof(T) && !t_gone) {
      List& l = list();
      if (l.count < kKeep) {
        auto* b = static_cast<Node*>(p);
        b->next = l.head;
        l.head = b;
        ++l.count;
        return;
      }
    }
#endif
    ::operator delete(p);  // unsized: clang before 19 has no sized deallocation by default
  }

 private:
  struct Node {
    Node* next;
  };
  static_assert(sizeof(T) >= sizeof(Node));
  struct List {
    Node* head = nullptr;
    size_t count = 0;
    ~List() {
      t_gone = true;  // an object freed later in this thread's exit goes straight back
      while (head) {
        Node* b = head;
        head = b->next;
        ::operator delete(b);
      }
    }
  };
  static List& list() {
    thread_local List l;
    return l;
  }
  static inline thread_local bool t_gone = false;  // trivially destructible: readable to the end
};

}  // namespace fulcrum
