// TlsTransport and client contexts (see tls.h). Worker thread only, but for ClientContext::build
// (control thread).
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "tls/tls.h"

namespace fulcrum::tls {

// ---- client contexts ------------------------------------------------------------------------

Result<std::shared_ptr<const ClientContext>> ClientContext::build(const config::BackendTls& spec) {
  auto cc = std::make_shared<ClientContext>();
  cc->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!cc->ctx_) return Error{0, "SSL_CTX_new failed"};
  SSL_CTX* x = cc->ctx_.get();
  SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
  SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(x, 1);  // as the server side (server_context.cc): one read(2) for several records
  if (spec.verify) {
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER, nullptr);
    if (!spec.ca.empty()) {
      if (SSL_CTX_load_verify_locations(x, spec.ca.c_str(), nullptr) != 1) {
        unsigned long e = ERR_get_error();
        ERR_clear_error();
        // Some reasons have no string (a missing file's system error): never append a null.
        const char* r = e ? ERR_reason_error_string(e) : nullptr;
        return Error{0, "ca '" + spec.ca + "': " + (r ? r : "unreadable")};
      }
    } else {
      SSL_CTX_set_default_verify_paths(x);
    }
  }
  cc->sni_ = spec.sni;
  return std::shared_ptr<const ClientContext>(std::move(cc));
}

SSL* ClientContext::new_ssl(int fd) const {
  SSL* s = SSL_new(ctx_.get());
  if (!s) return nullptr;
  SSL_set_fd(s, fd);
  SSL_set_connect_state(s);
  if (!sni_.empty()) {
    SSL_set_tlsext_host_name(s, sni_.c_str());
    // With verification, the certificate must name the server we meant (RFC 9110 4.3.4).
    if (SSL_get_verify_mode(s) & SSL_VERIFY_PEER) SSL_set1_host(s, sni_.c_str());
  }
  return s;
}

// ---- transport -------------------------------------------------------------------------------

TlsTransport::TlsTransport(SSL* ssl, bool) : ssl_(ssl) {}

TlsTransport::~TlsTransport() { SSL_free(ssl_); }

// Maps an SSL_ERROR to errno: EAGAIN while OpenSSL waits for the socket (either direction: the
// owner retries both on any edge), 0 for the peer's close_notify, ECONNRESET otherwise.
ssize_t TlsTransport::fail(int ret, const char* what) {
  int e = SSL_get_error(ssl_, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: errno = EAGAIN; return -1;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
      if (errno == 0) errno = ECONNRESET;
      error_ = std::string(what) + ": " + std::strerror(errno);
      ERR_clear_error();
      return -1;
    default: {
      unsigned long err = ERR_get_error();
      ERR_clear_error();
      const char* r = err ? ERR_reason_error_string(err) : nullptr;
      error_ = std::string(what) + ": " + (r ? r : "TLS error");
      // A refused handshake (no shared cipher or version, a bad certificate) says why once in a while.
      if (!SSL_is_init_finished(ssl_))
        FULCRUM_LOG_LIMITED(kInfo, "tls %s handshake failed: %s", SSL_is_server(ssl_) ? "client" : "backend",
                            error_.c_str());
      errno = EPROTO;
      return -1;
    }
  }
}

int TlsTransport::handshake() {
  if (SSL_is_init_finished(ssl_)) return 1;
  errno = 0;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) return 1;
  ssize_t f = fail(r, "handshake");
  if (f < 0 && errno == EAGAIN) return 0;
  if (f == 0) errno = ECONNRESET;
  return -1;
}

ssize_t TlsTransport::read(char* buf, size_t n) {
  size_t got = 0;
  errno = 0;
  int r = SSL_read_ex(ssl_, buf, n, &got);
  if (r == 1) return static_cast<ssize_t>(got);
  return fail(r, "read");
}

// A head and its first body bytes go in one record when they fit (one write, one MAC), else as
// two writes. A retry after EAGAIN comes with the same bytes at the front (the caller consumes
// nothing until a write succeeds), which is what SSL_write asks of a retry; the buffer may move.
ssize_t TlsTransport::write2(std::string_view a, std::string_view b, bool) {
  if (shut_) {
    errno = EPIPE;
    return -1;
  }
  static thread_local char joined[16384];
  if (!a.empty() && !b.empty() && a.size() < sizeof(joined)) {
    size_t n = std::min(a.size() + b.size(), sizeof(joined));
    std::memcpy(joined, a.data(), a.size());
    std::memcpy(joined + a.size(), b.data(), n - a.size());
    a = std::string_view(joined, n);
    b = {};
  }
  size_t total = 0;
  for (std::string_view part : {a, b}) {
    if (part.empty()) continue;
    size_t w = 0;
    errno = 0;
    int r = SSL_write_ex(ssl_, part.data(), part.size(), &w);
    if (r != 1) {
      if (total > 0) return static_cast<ssize_t>(total);
      ssize_t f = fail(r, "write");
      if (f == 0) errno = EPIPE;
      return -1;
    }
    total += w;
    if (w < part.size()) break;
  }
  return static_cast<ssize_t>(total);
}

// sendfile(2) cannot encrypt: kernel TLS can (SSL_sendfile) when the kernel offers it for this
// cipher; otherwise the file goes through a buffer. A retry after EAGAIN reads the same bytes
// again from the same offset, which is what SSL_write requires of a retry.
ssize_t TlsTransport::send_file(int file, uint64_t offset, size_t n) {
  if (BIO_get_ktls_send(SSL_get_wbio(ssl_))) {
    errno = 0;
    ossl_ssize_t w = SSL_sendfile(ssl_, file, static_cast<off_t>(offset), n, 0);
    if (w >= 0) return w;
    return fail(static_cast<int>(w), "sendfile");
  }
  static thread_local char chunk[16384];
  size_t want = std::min(n, sizeof(chunk));
  ssize_t got = ::pread(file, chunk, want, static_cast<off_t>(offset));
  if (got <= 0) {
    if (got == 0) return 0;
    return -1;
  }
  return write2({chunk, static_cast<size_t>(got)}, {});
}

void TlsTransport::shutdown_write() {
  if (shut_) return;
  shut_ = true;
  if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);  // close_notify; we do not wait for theirs
  ERR_clear_error();
  ::shutdown(SSL_get_fd(ssl_), SHUT_WR);
}

// A pooled connection: records that came while idle may be only TLS 1.3 session tickets; reading
// processes them. Application bytes, a close or an error make it unusable.
bool TlsTransport::peek_unsafe() {
  char byte;
  size_t got = 0;
  errno = 0;
  int r = SSL_peek_ex(ssl_, &byte, 1, &got);
  if (r == 1) return true;
  ssize_t f = fail(r, "peek");
  return !(f < 0 && errno == EAGAIN);
}

std::string_view TlsTransport::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

}  // namespace fulcrum::tls
