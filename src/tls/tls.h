// TLS with OpenSSL 3: server contexts for `protocol: https` listeners (several certificates chosen
// by SNI, ALPN h2 and http/1.1, stateless session tickets whose keys all workers share), client
// contexts for backends with `tls:`, and the non-blocking transport over a socket. Contexts are
// built on the control thread at start and reload, one set per config generation, and are then
// read-only and shared by that generation's workers (SSL_CTX is safe for that); a transport
// belongs to one worker.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/result.h"
#include "core/transport.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace fulcrum::tls {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const;
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

struct TicketKeys;

// Why a certificate and key cannot be used (missing, unreadable, not PEM, key not matching), or
// nullopt. For `fulcrum check`.
std::optional<std::string> check_cert(const config::TlsCert& cert);

class ServerContext {
 public:
  // `listener` names the ticket keys, kept across reloads so that tickets survive them.
  static Result<std::shared_ptr<const ServerContext>> build(const std::string& listener,
                                                            const std::vector<config::TlsCert>& certs, bool h2);
  ~ServerContext();
  // A new server-side SSL for an accepted socket; nullptr when out of memory.
  SSL* new_ssl(int fd) const;

  struct Cert {
    SslCtxPtr ctx;
    std::vector<std::string> names;  // DNS names from the SAN (or the CN), lower case
  };
  // The certificate for an SNI name: an exact name, else a wildcard, else the first (default).
  const Cert& select(std::string_view server_name) const;

 private:
  ServerContext() = default;
  std::vector<Cert> certs_;
  std::shared_ptr<TicketKeys> keys_;
  bool h2_ = false;
  friend struct Callbacks;
};

class ClientContext {
 public:
  static Result<std::shared_ptr<const ClientContext>> build(const config::BackendTls& spec);
  SSL* new_ssl(int fd) const;

 private:
  SslCtxPtr ctx_;
  std::string sni_;
};

// TLS over a non-blocking socket (the socket is not owned; the SSL is).
class TlsTransport final : public Transport {
 public:
  TlsTransport(SSL* ssl, bool server);
  ~TlsTransport() override;
  ssize_t read(char* buf, size_t n) override;
  ssize_t write2(std::string_view a, std::string_view b, bool more = false) override;
  ssize_t send_file(int file, uint64_t offset, size_t n) override;
  void shutdown_write() override;
  int handshake() override;
  bool peek_unsafe() override;
  bool short_read_drains() const override { return false; }
  bool any_edge_retries_both() const override { return true; }
  std::string_view alpn() const override;
  // OpenSSL's reason for the last failure (logs).
  const std::string& error() const { return error_; }

 private:
  ssize_t fail(int ret, const char* what);
  SSL* ssl_;
  bool shut_ = false;
  std::string error_;
};

}  // namespace fulcrum::tls
