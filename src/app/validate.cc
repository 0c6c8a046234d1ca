#include "app/validate.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "lb/balancer.h"
#include "tls/tls.h"
#include "protect/rules.h"

namespace fulcrum::app {
namespace {

std::string words() {
  std::string out;
  for (auto& a : lb::algorithms()) {
    if (!out.empty()) out += ", ";
    out += a.word;
  }
  return out;
}

bool is_l4(config::Protocol p) { return p == config::Protocol::kTcp || p == config::Protocol::kUdp; }

bool is_loopback(const SocketAddress& a) {
  std::string_view ip = a.ip_bytes();
  if (a.family() == AF_INET) return ip.size() == 4 && static_cast<unsigned char>(ip[0]) == 127;
  static constexpr char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a.family() == AF_INET6 && ip == std::string_view(kV6Loopback, 16);
}

}  // namespace

std::optional<config::ConfigError> validate(const config::Config& cfg) {
  // The admin API drains servers and reloads the config: never open to the network by accident
  // (the loader says so too; this covers configs built in code, such as the demo's).
  if (cfg.admin && cfg.admin->token_file.empty() && !is_loopback(cfg.admin->listen))
    return cfg.error_at(cfg.admin->listen_mark, "admin listen " + cfg.admin->listen.to_string() +
                                                    " is not a loopback address: set token_file, or listen on 127.0.0.1");
  for (auto& b : cfg.backends) {
    const lb::Algorithm* a = lb::find_algorithm(b.balance);
    if (a == nullptr)
      return cfg.error_at(b.balance_mark, "unknown balance '" + b.balance + "' (one of: " + words() + ")");
  }
  // Certificates and keys are read now, so `check` names the file a listener cannot use.
  for (auto& l : cfg.listeners)
    for (auto& c : l.tls)
      if (auto why = tls::check_cert(c)) return cfg.error_at(c.mark, "listener '" + l.name + "': " + *why);
  for (auto& b : cfg.backends)
    if (b.tls && !b.tls->ca.empty() && ::access(b.tls->ca.c_str(), R_OK) != 0)
      return cfg.error_at(b.tls->mark, "backend '" + b.name + "': cannot read ca '" + b.tls->ca + "'");
  // An algorithm that hashes a header, cookie, query parameter or path needs an HTTP request.
  for (auto& l : cfg.listeners) {
    if (!is_l4(l.protocol)) continue;
    const config::Backend* b = cfg.find_backend(l.backend);
    if (b == nullptr) continue;
    const lb::Algorithm* a = lb::find_algorithm(b->balance);
    bool l7_key = b->balance == "hash" && b->hash_key.kind != config::HashKey::Kind::kIp;
    if (a && (a->needs & lb::kNeedsL7) && l7_key)
      return cfg.error_at(l.backend_mark, "listener '" + l.name + "' is " + config::protocol_name(l.protocol) +
                                              " but backend '" + b->name +
                                              "' hashes on an HTTP field (hash_key); use hash_key: ip or an http listener");
    if (b->sticky)
      return cfg.error_at(l.backend_mark, "listener '" + l.name + "' is " + config::protocol_name(l.protocol) +
                                              " but backend '" + b->name + "' uses a sticky cookie, which needs http");
  }
  // Protect rules are RE2: one that does not compile is refused here, at the rule.
  for (auto& l : cfg.listeners) {
    if (!l.protect || l.protect->rules.empty()) continue;
    std::optional<protect::Rules::BuildError> err;
    if (!protect::Rules::build(l.protect->rules, &err) && err)
      return cfg.error_at(err->mark, "listener '" + l.name + "': " + err->message);
  }
  // A limit that is written but not enforced would be worse than none: refuse until it is built.
  // http, https, forward_proxy and tcp listeners enforce all of protect (src/protect); udp and dns
  // none of the limits. In validate(), so that `fulcrum check` says so too.
  for (auto& l : cfg.listeners) {
    if (!l.protect || (l.protocol != config::Protocol::kUdp && l.protocol != config::Protocol::kDns)) continue;
    const config::Protect& p = *l.protect;
    const char* missing = p.rate                   ? "rate"
                          : p.max_conns_per_client ? "max_conns_per_client"
                          : !p.allow.empty()       ? "allow"
                          : !p.deny.empty()        ? "deny"
                                                   : nullptr;
    if (missing)
      return cfg.error_at(p.mark, "listener '" + l.name + "': protect." + missing + " is not enforced on " +
                                      config::protocol_name(l.protocol) +
                                      " listeners in this build yet (http, https, forward_proxy and tcp listeners enforce it)");
  }
  return std::nullopt;
}

std::optional<config::ConfigError> check_runnable(const config::Config& cfg) {
  for (auto& l : cfg.listeners)
    for (auto& r : l.routes) {
      if (r.static_site) {
        struct stat st{};
        if (::stat(r.static_site->root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
          return cfg.error_at(r.static_site->mark, "listener '" + l.name + "': static root '" + r.static_site->root +
                                                       "' is not a readable folder");
      }
    }
  return std::nullopt;
}

}  // namespace fulcrum::app
