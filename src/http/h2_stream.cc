// The client side of an HTTP/2 stream's exchange, as ClientConn sees it (see h2_session.h): reads
// give the request as HTTP/1.1 bytes; writes take ClientConn's HTTP/1.1 response, whose head is
// parsed (strictly, as any backend's) into a HEADERS frame and whose body, unframed, becomes DATA
// under flow control. Worker thread only.
#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/free_list.h"
#include "http/h2_session.h"

namespace fulcrum::http {
namespace {

// Response bytes a stream holds for nghttp2 before ClientConn is told "no room" (EAGAIN): like a
// socket's send buffer, it makes a slow client hold back the backend rather than our memory.
constexpr size_t kStreamBuffer = 64 * 1024;

class StreamTransport final : public Transport {
 public:
  explicit StreamTransport(H2Stream* s) : s_(s) {}
  ~StreamTransport() override;
  static void* operator new(size_t n) { return FreeList<StreamTransport>::allocate(n); }  // one per stream
  static void operator delete(void* p, size_t n) { FreeList<StreamTransport>::release(p, n); }
  ssize_t read(char* buf, size_t n) override;
  ssize_t write2(std::string_view a, std::string_view b, bool more = false) override;
  ssize_t send_file(int file, uint64_t offset, size_t n) override;
  void shutdown_write() override;
  bool peek_unsafe() override { return false; }

 private:
  size_t feed(std::string_view part);
  bool feed_body(std::string_view bytes);
  H2Stream* s_;
  bool shut_ = false;
};

StreamTransport::~StreamTransport() {
  H2Stream* s = s_;
  s->conn = nullptr;
  s->conn_gone = true;
  if (!s->session) {  // the session went first: the stream is ours to free
    free_h2_stream(s);
    return;
  }
  // Closed without a whole response: the client must not take a part for all of it.
  if (!s->closed && !s->resp_end) s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
  s->session->stream_released(s);
}

ssize_t StreamTransport::read(char* buf, size_t n) {
  H2Stream* s = s_;
  if (!s->session || s->reset || (s->closed && !s->req_end)) {
    errno = ECONNRESET;
    return -1;
  }
  size_t avail = s->req.size() - s->req_off;
  if (avail == 0) {
    if (s->req_end || shut_) return 0;
    errno = EAGAIN;
    return -1;
  }
  size_t k = std::min(avail, n);
  std::memcpy(buf, s->req.data() + s->req_off, k);
  s->req_off += k;
  if (s->req_off == s->req.size()) {
    s->req.clear();
    s->req_off = 0;
  }
  s->session->consumed(*s, k);
  return static_cast<ssize_t>(k);
}

ssize_t StreamTransport::write2(std::string_view a, std::string_view b, bool) {
  H2Stream* s = s_;
  if (!s->session || s->closed || s->reset || shut_) {
    errno = EPIPE;
    return -1;
  }
  size_t total = 0;
  for (std::string_view part : {a, b}) {
    if (part.empty()) continue;
    size_t used = feed(part);
    total += used;
    if (s->reset) {
      errno = EPIPE;
      return -1;
    }
    if (used < part.size()) break;
  }
  if (total == 0 && !(a.empty() && b.empty())) {
    s->deferred_writer = true;
    errno = EAGAIN;
    return -1;
  }
  if (total > 0) s->session->response_ready(*s);
  return static_cast<ssize_t>(total);
}

// Takes what fits; the head whole (a head is bounded by ClientConn's buffer).
size_t StreamTransport::feed(std::string_view part) {
  H2Stream* s = s_;
  if (s->head_done) {
    size_t held = s->data.size() - s->data_off;
    if (held >= kStreamBuffer) return 0;
    size_t take = std::min(part.size(), kStreamBuffer - held);
    if (!feed_body(part.substr(0, take))) s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
    return take;
  }
  s->head.append(part);
  while (!s->head_done) {
    ResponseParser parser;
    ResponseHead head;
    ParseResult pr = parser.parse(s->head, s->session->fields(), &head, s->req_method);
    if (pr.need_more()) return part.size();
    if (pr.failed() || head.status == 101) {  // 101: HTTP/2 has no Upgrade (RFC 9113 8.6)
      s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
      return part.size();
    }
    if (head.informational()) {  // interim responses (100 Continue, 103) are not passed on
      s->head.erase(0, pr.consumed);
      if (s->head.empty()) return part.size();
      continue;
    }
    s->head_done = true;
    s->body = head.body;
    s->left = head.content_length;
    s->session->submit_response(*s, head);
    s->head.erase(0, pr.consumed);  // what is left is body
    if (!s->head.empty() && !feed_body(s->head)) s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
    s->head.clear();
  }
  return part.size();
}

// The body without HTTP/1.1 framing. False on a bad chunked body.
bool StreamTransport::feed_body(std::string_view bytes) {
  H2Stream* s = s_;
  switch (s->body) {
    case BodyKind::kNone: return true;  // nothing belongs to the message
    case BodyKind::kContentLength: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(s->left, bytes.size()));
      s->data.append(bytes.substr(0, n));
      s->left -= n;
      if (s->left == 0) s->resp_end = true;
      return true;
    }
    case BodyKind::kChunked:
      while (!bytes.empty() && !s->resp_end) {
        ChunkStep st = s->chunks.decode(bytes);
        bytes.remove_prefix(st.consumed);
        if (st.event == ChunkEvent::kData) s->data.append(st.bytes);
        if (st.event == ChunkEvent::kDone) s->resp_end = true;
        if (st.event == ChunkEvent::kError) return false;
        if (st.event == ChunkEvent::kNeedMore) break;
      }
      return true;
    case BodyKind::kUntilClose:
    case BodyKind::kTunnel: s->data.append(bytes); return true;
  }
  return true;
}

// No sendfile into memory: the file is read in pieces as the stream has room.
ssize_t StreamTransport::send_file(int file, uint64_t offset, size_t n) {
  char chunk[16384];
  ssize_t got = ::pread(file, chunk, std::min(n, sizeof(chunk)), static_cast<off_t>(offset));
  if (got <= 0) return got;
  return write2({chunk, static_cast<size_t>(got)}, {});
}

void StreamTransport::shutdown_write() {
  if (shut_) return;
  shut_ = true;
  H2Stream* s = s_;
  if (!s->session || s->closed || s->reset) return;
  if (!s->head_done) return s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
  // The end of the response: for a body delimited by the close, that is now; a framed body
  // that stops short is cut off, which the client must learn.
  if (!s->resp_end && (s->body == BodyKind::kUntilClose || s->body == BodyKind::kNone)) s->resp_end = true;
  if (!s->resp_end) return s->session->reset_stream(*s, NGHTTP2_INTERNAL_ERROR);
  s->session->response_ready(*s);
}

}  // namespace

std::unique_ptr<Transport> make_stream_transport(H2Stream* s) { return std::make_unique<StreamTransport>(s); }

bool submit_h2_head(H2Stream* s, const ResponseHead& head, const ResponseForward& fwd) {
  if (!s->session || s->closed || s->reset || s->head_done || !s->head.empty()) return false;
  if (head.informational() || head.body == BodyKind::kTunnel) return false;  // the text path resets these
  s->head_done = true;
  s->body = head.body;
  s->left = head.content_length;
  s->session->submit_response(*s, head, &fwd);
  return true;
}

}  // namespace fulcrum::http
