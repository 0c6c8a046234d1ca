#include "static/static_site.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "http/forward.h"
#include "http/local_response.h"
#include "http/router.h"

namespace fulcrum::staticfiles {
namespace {

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

size_t format_date(int64_t t, char (&out)[32]) {
  time_t tt = static_cast<time_t>(t);
  tm g;
  gmtime_r(&tt, &g);
  int n = std::snprintf(out, sizeof(out), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[g.tm_wday], g.tm_mday,
                        kMonths[g.tm_mon], g.tm_year + 1900, g.tm_hour, g.tm_min, g.tm_sec);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

// The Date field changes once a second: format it once a second per thread.
std::string_view date_now() {
  static thread_local char buf[32];
  static thread_local int64_t second = -1;
  static thread_local size_t len = 0;
  int64_t now = ::time(nullptr);
  if (now != second) {
    second = now;
    len = format_date(now, buf);
  }
  return {buf, len};
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

using http::Appender;  // the proxy's head writer: text and numbers into a Buffer

// "bytes=a-b" | "bytes=a-" | "bytes=-n" (RFC 9110 14.1.2). Several ranges are answered with the
// whole file (allowed: a server may ignore Range). Returns 0 no usable range, 1 range, -1 unsatisfiable.
int parse_range(std::string_view v, uint64_t size, uint64_t* first, uint64_t* last) {
  if (v.substr(0, 6) != "bytes=") return 0;
  v.remove_prefix(6);
  if (v.find(',') != std::string_view::npos) return 0;
  auto dash = v.find('-');
  if (dash == std::string_view::npos) return 0;
  std::string_view a = v.substr(0, dash), b = v.substr(dash + 1);
  uint64_t x = 0, y = 0;
  auto num = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 19) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && p == s.data() + s.size();
  };
  if (a.empty()) {  // suffix: the last y bytes
    if (!num(b, &y)) return 0;
    if (y == 0 || size == 0) return -1;
    *first = y >= size ? 0 : size - y;
    *last = size - 1;
    return 1;
  }
  if (!num(a, &x)) return 0;
  if (!b.empty() && (!num(b, &y) || y < x)) return 0;
  if (x >= size) return -1;
  *first = x;
  *last = b.empty() || y >= size ? size - 1 : y;
  return 1;
}

// RFC 9110 13.1.2: If-None-Match uses the weak comparison.
bool etag_matches(std::string_view list, std::string_view etag) {
  auto strip_weak = [](std::string_view t) { return t.substr(0, 2) == "W/" ? t.substr(2) : t; };
  etag = strip_weak(etag);
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == "*" || strip_weak(item) == etag) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string http_date(int64_t unix_seconds) {
  char buf[32];
  return std::string(buf, format_date(unix_seconds, buf));
}

bool parse_http_date(std::string_view s, int64_t* out) {
  // IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT"); the obsolete forms are rare enough that
  // a failed parse (= condition ignored, full response) is the safe answer.
  if (s.size() != 29 || s.substr(25) != " GMT" || s[3] != ',') return false;
  tm t{};
  auto two = [&](size_t at, int* v) {
    if (s[at] < '0' || s[at] > '9' || s[at + 1] < '0' || s[at + 1] > '9') return false;
    *v = (s[at] - '0') * 10 + (s[at + 1] - '0');
    return true;
  };
  int year_hi, year_lo;
  if (!two(5, &t.tm_mday) || !two(12, &year_hi) || !two(14, &year_lo) || !two(17, &t.tm_hour) ||
      !two(20, &t.tm_min) || !two(23, &t.tm_sec))
    return false;
  t.tm_year = year_hi * 100 + year_lo - 1900;
  t.tm_mon = -1;
  for (int m = 0; m < 12; ++m)
    if (s.substr(8, 3) == kMonths[m]) t.tm_mon = m;
  if (t.tm_mon < 0) return false;
  *out = static_cast<int64_t>(timegm(&t));
  return true;
}

bool StaticSite::clean_path(std::string_view path, std::string* out) {
  out->clear();
  if (path.empty() || path.front() != '/') return false;
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size()) return false;
      int h = hex(path[i + 1]), l = hex(path[i + 2]);
      if (h < 0 || l < 0) return false;
      c = static_cast<char>(h * 16 + l);
      i += 2;
    }
    if (c == '\0') return false;
    decoded.push_back(c);
  }
  // Segment by segment: "." and empty segments vanish, ".." is refused outright (not resolved),
  // so no spelling of a parent reference reaches the file system.
  size_t pos = 0;
  while (pos <= decoded.size()) {
    size_t slash = decoded.find('/', pos);
    if (slash == std::string::npos) slash = decoded.size();
    std::string_view seg(decoded.data() + pos, slash - pos);
    if (seg == "..") return false;
    if (!seg.empty() && seg != ".") {
      if (!out->empty()) out->push_back('/');
      out->append(seg);
    }
    pos = slash + 1;
  }
  return true;
}

std::string_view StaticSite::content_type(std::string_view name) {
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || name.find('/', dot) != std::string_view::npos)
    return "application/octet-stream";
  std::string_view ext = name.substr(dot + 1);
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"}, {"xml", "application/xml"},
      {"svg", "image/svg+xml"},             {"png", "image/png"},
      {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},                 {"webp", "image/webp"},
      {"avif", "image/avif"},               {"ico", "image/x-icon"},
      {"woff", "font/woff"},                {"woff2", "font/woff2"},
      {"ttf", "font/ttf"},                  {"otf", "font/otf"},
      {"pdf", "application/pdf"},           {"zip", "application/zip"},
      {"gz", "application/gzip"},           {"wasm", "application/wasm"},
      {"mp4", "video/mp4"},                 {"webm", "video/webm"},
      {"mp3", "audio/mpeg"},                {"ogg", "audio/ogg"},
      {"csv", "text/csv; charset=utf-8"},   {"md", "text/markdown; charset=utf-8"},
  };
  for (auto& [e, t] : kTypes)
    if (http::iequals(e, ext)) return t;
  return "application/octet-stream";
}

namespace {
std::atomic<uint64_t> g_next_site_id{1};
}  // namespace

StaticSite::StaticSite(const config::StaticSite& spec)
    : id_(g_next_site_id.fetch_add(1, std::memory_order_relaxed)), index_(spec.index) {
  root_ = Fd(::open(spec.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_) error_ = "static root '" + spec.root + "': " + strerror(errno);
  if (!spec.fallback.empty()) clean_path(spec.fallback, &fallback_);
}

int StaticSite::open_beneath(const std::string& rel, bool) const {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
  // RESOLVE_BENEATH: no absolute paths, no `..` above root, no symlink that leads out of it.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const char* p = rel.empty() ? "." : rel.c_str();
  return static_cast<int>(::syscall(SYS_openat2, root_.get(), p, &how, sizeof(how)));
}

FileReply StaticSite::serve(http::Method method, std::string_view path, std::span<const http::Header> headers,
                            bool close, Buffer& out, OpenFileCache* cache, TimePoint now) const {
  FileReply reply;
  bool head_only = method == http::Method::kHead;
  if (method != http::Method::kGet && method != http::Method::kHead) {
    reply.status = 405;
    http::write_local_response(out, 405, close, head_only, "Allow: GET, HEAD\r\n");
    return reply;
  }
  std::shared_ptr<const CachedFile> cached = cache ? cache->find(id_, path, now) : nullptr;
  Fd fd;
  struct stat st{};
  std::string name;
  if (!cached) {
    std::string rel;
    if (root_ && clean_path(path, &rel)) {
      fd = Fd(open_beneath(rel, true));
      if (fd && fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
        name = rel.empty() ? index_ : rel + "/" + index_;
        fd = Fd(open_beneath(name, true));
        if (fd && fstat(fd.get(), &st) != 0) fd.reset();
      } else {
        name = rel;
      }
      if (fd && !S_ISREG(st.st_mode)) fd.reset();
    }
    if (!fd && !fallback_.empty() && root_) {  // single-page applications: routes live in the browser
      name = fallback_;
      fd = Fd(open_beneath(fallback_, true));
      if (fd && (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))) fd.reset();
    }
    if (!fd) {  // not cached: a missing file is looked for again on every request
      reply.status = 404;
      http::write_local_response(out, 404, close, head_only);
      return reply;
    }
    if (cache) {
      auto file = std::make_shared<CachedFile>();
      file->st = st;
      file->name = std::move(name);
      size_t n = static_cast<size_t>(st.st_size);
      if (n <= OpenFileCache::kInlineMax) {
        file->body.resize(n);
        file->inline_body = n == 0 || ::pread(fd.get(), file->body.data(), n, 0) == static_cast<ssize_t>(n);
        if (!file->inline_body) file->body.clear();
      }
      file->fd = std::move(fd);
      cached = cache->put(id_, path, std::move(file), now);
    }
  }
  if (cached) st = cached->st;
  std::string_view type_name = cached ? std::string_view(cached->name) : std::string_view(name);

  uint64_t size = static_cast<uint64_t>(st.st_size);
  char etag[48];
  int etag_len = std::snprintf(etag, sizeof(etag), "\"%llx-%llx\"", static_cast<unsigned long long>(st.st_mtime),
                               static_cast<unsigned long long>(size));
  std::string_view etag_sv(etag, static_cast<size_t>(etag_len));
  char modified[32];
  std::string_view modified_sv(modified, format_date(st.st_mtime, modified));

  std::string_view inm, ims, range, if_range;
  for (const http::Header& h : headers) {
    switch (h.token) {
      case http::HeaderToken::kIfNoneMatch: inm = h.value; break;
      case http::HeaderToken::kIfModifiedSince: ims = h.value; break;
      case http::HeaderToken::kRange: range = h.value; break;
      case http::HeaderToken::kIfRange: if_range = h.value; break;
      default: break;
    }
  }
  // RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it.
  bool not_modified = false;
  int64_t since = 0;
  if (!inm.empty()) not_modified = etag_matches(inm, etag_sv);
  else if (!ims.empty() && parse_http_date(ims, &since)) not_modified = st.st_mtime <= since;

  Appender a{out};
  if (not_modified) {
    reply.status = 304;
    a << "HTTP/1.1 304 Not Modified\r\nETag: " << etag_sv << "\r\nLast-Modified: " << modified_sv
      << "\r\nDate: " << date_now() << "\r\n" << (close ? "Connection: close\r\n" : "") << "\r\n";
    return reply;
  }
  uint64_t first = 0, last = size ? size - 1 : 0;
  int r = range.empty() || method != http::Method::kGet ? 0 : parse_range(range, size, &first, &last);
  if (r != 0 && !if_range.empty() && if_range != etag_sv && if_range != modified_sv) r = 0;  // RFC 9110 13.1.5
  if (r < 0) {
    reply.status = 416;
    a << "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */" << size
      << "\r\nContent-Length: 0\r\nDate: " << date_now() << "\r\n" << (close ? "Connection: close\r\n" : "")
      << "\r\n";
    return reply;
  }
  reply.status = r > 0 ? 206 : 200;
  reply.offset = r > 0 ? first : 0;
  reply.length = r > 0 ? last - first + 1 : size;
  a << (r > 0 ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n") << "Content-Type: " << content_type(type_name)
    << "\r\nContent-Length: " << reply.length << "\r\n";
  if (r > 0) a << "Content-Range: bytes " << first << "-" << last << "/" << size << "\r\n";
  a << "Last-Modified: " << modified_sv << "\r\nETag: " << etag_sv << "\r\nAccept-Ranges: bytes\r\nDate: " << date_now()
    << "\r\n" << (close ? "Connection: close\r\n" : "") << "\r\n";
  if (head_only || reply.length == 0) return reply;
  if (cached && cached->inline_body && a.ok &&
      out.append(std::string_view(cached->body).substr(reply.offset, reply.length))) {
    reply.length = 0;  // the body went with the head: one write
  } else if (cached) {
    reply.cached = std::move(cached);
  } else {
    reply.file = std::move(fd);
  }
  return reply;
}

}  // namespace fulcrum::staticfiles
