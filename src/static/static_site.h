// Static files served by fulcrum itself (SPEC: Static files): safe path resolution under `root`
// (openat2 with RESOLVE_BENEATH, so neither `..` nor a symlink can leave it), Content-Type from
// the extension, ETag and Last-Modified with 304s, single byte ranges with 206/416, HEAD, an index
// file for directories and an optional fallback file for single-page applications. It prepares a
// response head and an open file; the connection sends the body with sendfile(2). Built once per
// config, read by every worker (no state changes after construction).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <memory>

#include "config/config.h"
#include "core/buffer.h"
#include "core/fd.h"
#include "http/h1_parser.h"
#include "static/open_file_cache.h"

namespace fulcrum::staticfiles {

struct FileReply {
  int status = 404;
  Fd file;                                   // open when a body is to be sent
  std::shared_ptr<const CachedFile> cached;  // or this one's descriptor (the cache's; not to close)
  uint64_t offset = 0;                       // body range in the file (the connection sending it
  uint64_t length = 0;                       // moves it on); 0 also when the body went with the head
  int fd() const { return file ? file.get() : cached ? cached->fd.get() : -1; }
};

class StaticSite {
 public:
  explicit StaticSite(const config::StaticSite& spec);
  bool ok() const { return root_.valid(); }
  const std::string& error() const { return error_; }

  // Resolves `path` (the request path as received, percent-encoded, without the query) and
  // appends the response head to `out` (with "Connection: close" when close is set). The reply's
  // file and range say what body follows; HEAD gets the head alone. With a `cache` (the worker's),
  // a file opened less than a second ago is served from it, and a small body is appended to
  // `out` after the head. Never throws.
  FileReply serve(http::Method method, std::string_view path, std::span<const http::Header> headers, bool close,
                  Buffer& out, OpenFileCache* cache = nullptr, TimePoint now = {}) const;

  // Percent-decodes and checks a request path: false for NUL, `..` segments, or bad escapes.
  // `out` gets the path relative to root ("" for the root itself). Exposed for tests.
  static bool clean_path(std::string_view path, std::string* out);
  static std::string_view content_type(std::string_view file_name);

 private:
  int open_beneath(const std::string& rel, bool follow_dirs) const;
  uint64_t id_;  // unique per StaticSite made: its entries in an OpenFileCache
  Fd root_;
  std::string index_;
  std::string fallback_;  // relative to root, "" for none
  std::string error_;
};

// RFC 9110 5.6.7 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and back; false on bad text.
std::string http_date(int64_t unix_seconds);
bool parse_http_date(std::string_view text, int64_t* unix_seconds);

}  // namespace fulcrum::staticfiles
