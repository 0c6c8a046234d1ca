// Server contexts (see tls.h): one SSL_CTX per certificate; the first one's servername callback
// moves a handshake to the certificate its SNI names. Session tickets use keys of our own, shared
// by every worker (one context serves them all) and by the generations after a reload (kept by
// listener name), rotated every kRotate; a ticket stays valid for two rotations. Control thread
// builds; workers read, and take the ticket-key lock only in a handshake.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

#include "tls/tls.h"

namespace fulcrum::tls {

void SslCtxFree::operator()(SSL_CTX* c) const { SSL_CTX_free(c); }

namespace {

constexpr std::chrono::hours kRotate{1};
constexpr size_t kKeysKept = 3;  // the current key and two before it decrypt

std::string openssl_reason() {
  unsigned long e = ERR_get_error();  // the earliest error is the root cause
  ERR_clear_error();
  const char* r = e ? ERR_reason_error_string(e) : nullptr;
  return r ? r : "unknown OpenSSL error";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> cert_names(X509* x) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const ASN1_STRING* s = g->d.dNSName;
      names.push_back(lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<size_t>(ASN1_STRING_length(s))}));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {  // RFC 6125 6.4.4: the CN only when there is no DNS SAN
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0) names.push_back(lower(cn));
  }
  return names;
}

// "*.example.com" covers exactly one label: "a.example.com", not "example.com" nor "a.b.example.com".
bool wildcard_match(std::string_view pattern, std::string_view name) {
  if (pattern.size() < 3 || pattern.substr(0, 2) != "*.") return false;
  auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  return name.substr(dot) == pattern.substr(1);
}

// Loads cert and key into ctx; the reason on failure.
std::optional<std::string> load_pair(SSL_CTX* ctx, const config::TlsCert& c) {
  for (const std::string* f : {&c.cert, &c.key})
    if (::access(f->c_str(), R_OK) != 0)
      return "cannot read '" + *f + "': " + std::strerror(errno);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1)
    return "certificate '" + c.cert + "': " + openssl_reason();
  if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1)
    return "key '" + c.key + "' for certificate '" + c.cert + "': " + openssl_reason();
  if (SSL_CTX_check_private_key(ctx) != 1)
    return "key '" + c.key + "' does not match certificate '" + c.cert + "': " + openssl_reason();
  return std::nullopt;
}

}  // namespace

struct TicketKeys {
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    std::chrono::steady_clock::time_point made;
  };
  std::mutex mu;
  std::vector<Key> keys;  // newest first

  // The key to encrypt with, made anew when the current one is older than kRotate.
  Key current() {
    std::lock_guard lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (keys.empty() || now - keys.front().made >= kRotate) {
      Key k{};
      RAND_bytes(k.name, sizeof(k.name));
      RAND_bytes(k.aes, sizeof(k.aes));
      RAND_bytes(k.hmac, sizeof(k.hmac));
      k.made = now;
      keys.insert(keys.begin(), k);
      if (keys.size() > kKeysKept) keys.resize(kKeysKept);
    }
    return keys.front();
  }
  // 0 unknown, 1 the current key, 2 an older one (the client gets a new ticket).
  int find(const unsigned char* name, Key* out) {
    std::lock_guard lock(mu);
    for (size_t i = 0; i < keys.size(); ++i)
      if (std::memcmp(keys[i].name, name, 16) == 0) {
        *out = keys[i];
        return i == 0 ? 1 : 2;
      }
    return 0;
  }
};

namespace {
std::shared_ptr<TicketKeys> keys_for(const std::string& listener) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<TicketKeys>> all;
  std::lock_guard lock(mu);
  auto& k = all[listener];
  if (!k) k = std::make_shared<TicketKeys>();
  return k;
}
}  // namespace

struct Callbacks {
  static const ServerContext* self(SSL* s) {
    return static_cast<const ServerContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(s)));
  }

  static int servername(SSL* s, int*, void*) {
    const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK;
    const ServerContext* sc = self(s);
    const ServerContext::Cert& c = sc->select(name);
    if (c.ctx.get() != SSL_get_SSL_CTX(s)) SSL_set_SSL_CTX(s, c.ctx.get());
    return SSL_TLSEXT_ERR_OK;
  }

  // RFC 7301: our preference (h2 first) among what the client offers.
  static int alpn(SSL* s, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                  unsigned int inlen, void*) {
    const ServerContext* sc = self(s);
    static const unsigned char kH2[] = "\x02h2\x08http/1.1";
    static const unsigned char kH1[] = "\x08http/1.1";
    const unsigned char* ours = sc->h2_ ? kH2 : kH1;
    unsigned int ours_len = sc->h2_ ? sizeof(kH2) - 1 : sizeof(kH1) - 1;
    unsigned char* sel = nullptr;
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
      return SSL_TLSEXT_ERR_NOACK;  // no overlap: go on without ALPN (HTTP/1.1)
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }

  static int ticket(SSL* s, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* mctx,
                    int enc) {
    const ServerContext* sc = self(s);
    TicketKeys::Key k;
    int r = 1;
    if (enc) {
      k = sc->keys_->current();
      if (RAND_bytes(iv, 16) != 1) return -1;
      std::memcpy(name, k.name, 16);
    } else {
      r = sc->keys_->find(name, &k);
      if (r == 0) return 0;  // unknown or expired: a full handshake
    }
    char digest[] = "sha256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
                           OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(mctx, params) != 1) return -1;
    int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv)
                 : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv);
    return ok == 1 ? r : -1;
  }
};

std::optional<std::string> check_cert(const config::TlsCert& cert) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return "out of memory";
  return load_pair(ctx.get(), cert);
}

ServerContext::~ServerContext() = default;

Result<std::shared_ptr<const ServerContext>> ServerContext::build(const std::string& listener,
                                                                 const std::vector<config::TlsCert>& certs, bool h2) {
  std::shared_ptr<ServerContext> sc(new ServerContext());
  sc->h2_ = h2;
  sc->keys_ = keys_for(listener);
  for (const config::TlsCert& c : certs) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return Error{0, "listener '" + listener + "': SSL_CTX_new: " + openssl_reason()};
    if (auto why = load_pair(ctx.get(), c)) return Error{0, "listener '" + listener + "': " + *why};
    SSL_CTX* x = ctx.get();
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_COMPRESSION | SSL_OP_ENABLE_KTLS);
    // RELEASE_BUFFERS: an idle keep-alive connection gives its record buffers (~34 KiB) back, as
    // our own buffers do (nginx does the same).
    SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    // Read ahead: one read(2) takes what the socket has (several records), where OpenSSL would
    // otherwise read each record's 5-byte header and then its body: two system calls a record.
    // Our reads go on until EAGAIN (short_read_drains() is false), so nothing waits unseen in
    // OpenSSL's buffer; a pooled connection's check peeks through it (SSL_peek).
    SSL_CTX_set_read_ahead(x, 1);
    // Stateless tickets only: no server-side cache to lock or to lose on another worker.
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(x, 1);
    static const unsigned char kSidCtx[] = "fulcrum";
    SSL_CTX_set_session_id_context(x, kSidCtx, sizeof(kSidCtx) - 1);
    SSL_CTX_set_app_data(x, sc.get());
    SSL_CTX_set_alpn_select_cb(x, &Callbacks::alpn, nullptr);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(x, &Callbacks::ticket);
    SSL_CTX_set_tlsext_servername_callback(x, &Callbacks::servername);
    Cert cert;
    cert.names = cert_names(SSL_CTX_get0_certificate(x));
    cert.ctx = std::move(ctx);
    sc->certs_.push_back(std::move(cert));
  }
  if (sc->certs_.empty()) return Error{0, "listener '" + listener + "': no certificate"};
  return std::shared_ptr<const ServerContext>(std::move(sc));
}

const ServerContext::Cert& ServerContext::select(std::string_view server_name) const {
  std::string name = lower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (const Cert& c : certs_)
    if (std::find(c.names.begin(), c.names.end(), name) != c.names.end()) return c;
  for (const Cert& c : certs_)
    for (const std::string& n : c.names)
      if (wildcard_match(n, name)) return c;
  return certs_.front();
}

SSL* ServerContext::new_ssl(int fd) const {
  SSL* s = SSL_new(certs_.front().ctx.get());
  if (!s) return nullptr;
  SSL_set_fd(s, fd);
  SSL_set_accept_state(s);
  return s;
}

}  // namespace fulcrum::tls
