// See open_file_cache.h.
#include "static/open_file_cache.h"

#include <cstring>

namespace fulcrum::staticfiles {

void OpenFileCache::make_key(uint64_t site, std::string_view path) {
  key_.clear();
  key_.append(reinterpret_cast<const char*>(&site), sizeof(site));
  key_.append(path);
}

std::shared_ptr<const CachedFile> OpenFileCache::find(uint64_t site, std::string_view path, TimePoint now) {
  make_key(site, path);
  auto it = map_.find(key_);
  if (it == map_.end() || now - it->second.opened >= kValid) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.file;
}

std::shared_ptr<const CachedFile> OpenFileCache::put(uint64_t site, std::string_view path,
                                                     std::shared_ptr<CachedFile> file, TimePoint now) {
  make_key(site, path);
  auto it = map_.find(key_);
  if (it != map_.end()) {
    it->second.file = std::move(file);
    it->second.opened = now;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.file;
  }
  if (map_.size() >= kMaxEntries) {
    const std::string* victim = lru_.back();
    lru_.pop_back();
    map_.erase(*victim);
  }
  auto [at, fresh] = map_.emplace(key_, Entry{std::move(file), now, {}});
  lru_.push_front(&at->first);
  at->second.lru = lru_.begin();
  return at->second.file;
}

}  // namespace fulcrum::staticfiles
