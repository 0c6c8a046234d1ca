// A doubly linked list threaded through its elements' own public `prev_` and `next_` pointers and
// headed by a plain pointer its owner holds (a listener's open connections): linking and
// unlinking allocate nothing, and an element leaves in O(1). The owner's thread only.
#pragma once

namespace fulcrum::ilist {

template <class T>
void push_front(T*& head, T* n) {
  n->prev_ = nullptr;
  n->next_ = head;
  if (head) head->prev_ = n;
  head = n;
}

template <class T>
void unlink(T*& head, T* n) {
  if (n->prev_)
    n->prev_->next_ = n->next_;
  else
    head = n->next_;
  if (n->next_) n->next_->prev_ = n->prev_;
  n->prev_ = n->next_ = nullptr;
}

}  // namespace fulcrum::ilist
