// Buffer: a window [start, end) of bytes in a block borrowed from a worker's BufferPool.
// Connections take a block only while they hold bytes and give it back when they go idle, so
// thousands of idle keep-alive connections cost no buffer memory and a busy one does not call
// malloc per request. Blocks are 16 KiB; a buffer that must hold more (a request head up to
// max_header_bytes) grows once into a 64 KiB block. Worker thread only.
#pragma once
#include <cstddef>
#include <cstring>
#include <string_view>
#include <vector>

namespace fulcrum {

class BufferPool {
 public:
  static constexpr size_t kSmall = 16 * 1024;
  static constexpr size_t kLarge = 64 * 1024;
  explicit BufferPool(size_t keep = 1024) : keep_(keep) {}
  ~BufferPool() {
    for (char* b : small_) delete[] b;
    for (char* b : large_) delete[] b;
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  char* get(size_t size) {
    auto& list = size == kLarge ? large_ : small_;
    if (list.empty()) return new char[size];
    char* b = list.back();
    list.pop_back();
    return b;
  }
  void put(char* b, size_t size) {
    auto& list = size == kLarge ? large_ : small_;
    if (list.size() < keep_) list.push_back(b);
    else delete[] b;
  }

 private:
  size_t keep_;
  std::vector<char*> small_;
  std::vector<char*> large_;
};

class Buffer {
 public:
  explicit Buffer(BufferPool& pool) : pool_(&pool) {}
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t size() const { return end_ - start_; }
  bool empty() const { return start_ == end_; }
  std::string_view view() const { return {data_ + start_, end_ - start_}; }
  const char* data() const { return data_ + start_; }
  size_t capacity() const { return cap_; }
  void consume(size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  // Room to write into at the end; moves pending bytes to the front when that makes room.
  char* space() {
    if (!data_) {
      data_ = pool_->get(BufferPool::kSmall);
      cap_ = BufferPool::kSmall;
    }
    if (end_ == cap_ && start_ > 0) compact();
    return data_ + end_;
  }
  size_t space_size() const { return data_ ? cap_ - end_ : BufferPool::kSmall; }
  bool full() const { return data_ && start_ == 0 && end_ == cap_; }
  void produced(size_t n) { end_ += n; }
  // Makes room for `n` more bytes (growing into a large block if needed); false if impossible.
  bool reserve(size_t n) {
    space();
    if (cap_ - end_ >= n) return true;
    compact();
    if (cap_ - end_ >= n) return true;
    return grow() && cap_ - end_ >= n;
  }
  bool append(std::string_view s) {
    if (s.empty()) return true;
    if (!reserve(s.size())) return false;
    std::memcpy(data_ + end_, s.data(), s.size());
    end_ += s.size();
    return true;
  }
  // Moves the bytes into a large block; false if already large.
  bool grow() {
    if (cap_ == BufferPool::kLarge) return false;
    char* large = pool_->get(BufferPool::kLarge);
    size_t n = size();
    if (n) std::memcpy(large, data_ + start_, n);
    if (data_) pool_->put(data_, cap_);
    data_ = large;
    cap_ = BufferPool::kLarge;
    start_ = 0;
    end_ = n;
    return true;
  }
  void compact() {
    if (start_ == 0) return;
    std::memmove(data_, data_ + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  // Gives the block back when empty (an idle connection holds none).
  void release_if_empty() {
    if (empty()) release();
  }
  void clear() { start_ = end_ = 0; }
  void release() {
    if (data_) pool_->put(data_, cap_);
    data_ = nullptr;
    cap_ = 0;
    start_ = end_ = 0;
  }

 private:
  BufferPool* pool_;
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace fulcrum
