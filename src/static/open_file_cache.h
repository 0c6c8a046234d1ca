// Files a worker served recently, kept open — and the small ones in memory — so that a popular
// file costs no open/fstat/close per request, and a small one leaves with its head in one write
// (nginx's open_file_cache, on by default here). An entry is trusted for kValid after it was
// opened; the first request after that resolves the path again (the same safe openat2 under
// root) and replaces it, so a file changed, removed or re-linked on disk is seen within a second.
// Keyed by the site (a StaticSite's id: sites of one config, or of a reload, never share entries)
// and the request path as received. LRU, at most kMaxEntries. One per worker; worker thread only.
// A hit allocates nothing (the key is built in a reused string).
#pragma once
#include <sys/stat.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/event_loop.h"
#include "core/fd.h"

namespace fulcrum::staticfiles {

struct CachedFile {
  Fd fd;
  struct stat st {};
  std::string name;          // the file served, relative to root (an index, the fallback): its type
  std::string body;          // the whole file, when inline
  bool inline_body = false;  // size <= kInlineMax and read whole when opened
};

class OpenFileCache {
 public:
  static constexpr size_t kMaxEntries = 256;
  static constexpr size_t kInlineMax = 8 * 1024;
  static constexpr Millis kValid{1000};

  // The entry for (site, path) opened less than kValid ago; null otherwise.
  std::shared_ptr<const CachedFile> find(uint64_t site, std::string_view path, TimePoint now);
  // Stores `file` for (site, path) (replacing an older entry), evicting the least recently used.
  std::shared_ptr<const CachedFile> put(uint64_t site, std::string_view path, std::shared_ptr<CachedFile> file,
                                        TimePoint now);
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    std::shared_ptr<const CachedFile> file;
    TimePoint opened;
    std::list<const std::string*>::iterator lru;
  };
  void make_key(uint64_t site, std::string_view path);
  std::string key_;  // reused: no allocation to look up
  std::unordered_map<std::string, Entry> map_;
  std::list<const std::string*> lru_;  // front: most recently used; points at map_'s keys
};

}  // namespace fulcrum::staticfiles
