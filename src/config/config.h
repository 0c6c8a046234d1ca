// The parsed configuration: a plain, immutable value. The loader builds it once; the running
// program holds it as shared_ptr<const Config> and swaps it whole on reload. Every element keeps
// the Mark of the YAML node it came from, so later checks can say FILE:LINE:COL.
// Read by any thread once built; never mutated after load.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/address.h"

namespace fulcrum::config {

using Millis = std::chrono::milliseconds;

struct Mark {
  int line = 0;  // 1-based; 0 when unknown
  int col = 0;   // 1-based
};

// A config error, printed "FILE:LINE:COL: message".
struct ConfigError {
  std::string file;
  Mark mark;
  std::string message;
  std::string to_string() const;
};

struct Cidr {
  int family = 0;            // AF_INET or AF_INET6
  unsigned char bytes[16]{};  // network address, host bits zero
  int prefix = 0;
  std::string text;
  bool contains(const SocketAddress& addr) const;
};

struct Rate {
  double per_second = 0;  // "200/s", "6000/m" -> 100/s
};

struct Rule {
  std::string path_regex;  // RE2, on the request target as received
  std::string header;      // header name, with `regex` on its value
  std::string query;       // query parameter name, with `regex` on its value
  std::string regex;
  std::string action = "deny";  // deny | allow
  Mark mark;
};

struct Protect {
  std::optional<Rate> rate;
  uint32_t burst = 0;  // 0 = same as one second of rate
  uint32_t max_conns_per_client = 0;
  Millis header_timeout{10000};
  Millis idle_timeout{60000};
  uint64_t max_header_bytes = 32 * 1024;
  uint64_t max_body_bytes = 0;  // 0 = unlimited
  std::vector<Cidr> allow;
  std::vector<Cidr> deny;
  std::vector<Rule> rules;
  // Where rate and connection counts live: "" = in this process; "host:port" = a Redis server
  // shared with other fulcrum instances (`store: { redis: 127.0.0.1:6379 }`).
  std::string store_redis;
  Mark store_mark;
  Mark mark;
};

struct TlsCert {
  std::string cert;  // resolved against the config file's folder
  std::string key;
  Mark mark;
};

struct StaticSite {
  std::string root;  // resolved against the config file's folder
  std::string index = "index.html";
  std::string fallback;  // "" = none
  Mark mark;
};

struct Cache {
  uint64_t size = 64ull * 1024 * 1024;
  Millis default_ttl{0};
  Mark mark;
};

struct KeyValue {
  std::string key;
  std::string value;
};

struct Match {
  std::string host;
  std::string path_prefix;
  std::string path_regex;
  std::vector<std::string> methods;
  std::vector<KeyValue> headers;
  std::vector<KeyValue> query;
  std::vector<KeyValue> cookies;
  Mark mark;
};

struct Route {
  std::optional<Match> match;  // none = matches everything
  std::string backend;         // exactly one of backend / static
  Mark backend_mark;
  std::optional<StaticSite> static_site;
  std::optional<Cache> cache;
  Mark mark;
};

struct DnsZone {
  std::string name;  // lower case, no trailing dot
  std::string backend;
  Mark backend_mark;
  uint32_t ttl = 30;
  uint32_t answers = 0;  // 0 = all
  Mark mark;
};

struct Acl {
  std::vector<std::string> deny;  // exact names and "*.suffix"
  std::vector<uint16_t> allow_ports;  // empty = any
  Mark mark;
};

enum class Protocol { kHttp, kHttps, kTcp, kUdp, kDns, kForwardProxy };
const char* protocol_name(Protocol p);

enum class ProxyProtocol { kOff, kV1, kV2 };

struct Listener {
  std::string name;
  SocketAddress bind;
  Mark bind_mark;
  Protocol protocol = Protocol::kHttp;
  Mark protocol_mark;
  std::vector<TlsCert> tls;
  std::optional<Protect> protect;
  std::vector<Route> routes;         // http, https
  std::string backend;               // tcp, udp
  Mark backend_mark;
  ProxyProtocol proxy_protocol = ProxyProtocol::kOff;  // tcp
  std::optional<Millis> idle_timeout;                  // udp (default 30s), tcp (default none)
  std::vector<DnsZone> zones;                          // dns
  std::optional<Acl> acl;                              // forward_proxy
  std::optional<Cache> cache;                          // forward_proxy
  Mark mark;
};

// balance: hash — which part of the request is hashed.
struct HashKey {
  enum class Kind { kIp, kHeader, kCookie, kQuery, kPath };
  Kind kind = Kind::kIp;
  std::string name;  // for header / cookie / query
  Mark mark;
};

struct Sticky {
  std::string cookie;
  Mark mark;
};

struct Passive {
  uint32_t consecutive_errors = 5;
  Millis eject{30000};
};

struct Agent {
  uint16_t port = 0;  // 0: every server has its own agent_port
  Millis interval{2000};
  Mark mark;
};

struct Health {
  std::string check = "none";  // icmp | tcp | tcp_half_open | http | none
  Mark check_mark;
  std::string path = "/";
  std::string host;
  std::vector<int> expect_status{200};
  std::string expect_body;
  Millis interval{2000};
  Millis timeout{1000};
  uint32_t rise = 2;
  uint32_t fall = 3;
  std::optional<Passive> passive;
  std::optional<Agent> agent;
  Millis slow_start{0};
  Mark mark;
};

struct BackendTls {
  bool verify = true;
  std::string sni;
  std::string ca;  // PEM file of trusted CAs, resolved against the config file's folder; "" = system store
  Mark mark;
};

struct Server {
  std::string name;
  SocketAddress address;
  std::string address_text;  // as written, for the API
  uint32_t weight = 1;       // 0-256; 0 = takes no new traffic
  bool backup = false;
  uint16_t agent_port = 0;  // 0: health.agent.port
  Mark agent_port_mark;
  Mark mark;
};

struct Backend {
  std::string name;
  std::string balance = "round_robin";  // validated against lb's registry after loading
  Mark balance_mark;
  HashKey hash_key;
  std::optional<Sticky> sticky;
  uint32_t retries = 2;
  Millis connect_timeout{2000};
  Millis response_timeout{30000};
  uint32_t max_conns_per_server = 0;
  Millis queue_timeout{5000};
  Health health;
  std::optional<BackendTls> tls;
  std::vector<Server> servers;
  Mark mark;
};

struct Admin {
  SocketAddress listen;
  Mark listen_mark;
  std::string token_file;  // resolved against the config file's folder; "" = none
  Mark mark;
};

struct AccessLog {
  std::string path = "off";  // stdout | stderr | off | a file (resolved)
  std::string format = "json";  // json | combined
};

struct Config {
  std::string file;  // the path it was loaded from
  std::string dir;   // its folder, for relative paths
  uint32_t workers = 0;  // 0 = auto: one per core
  Millis shutdown_grace{10000};
  std::optional<Admin> admin;
  AccessLog access_log;
  std::vector<Listener> listeners;
  std::vector<Backend> backends;

  const Backend* find_backend(std::string_view name) const;
  ConfigError error_at(Mark mark, std::string message) const { return {file, mark, std::move(message)}; }
};

// Parse helpers, shared with other modules' checks and tests. Return false on bad text.
bool parse_duration(std::string_view text, Millis* out);  // 250ms, 2s, 1m, 1h; bare 0
bool parse_size(std::string_view text, uint64_t* out);    // 512, 512B, 64KiB, 1MiB, 2GiB, 1KB
bool parse_cidr(std::string_view text, Cidr* out);        // 10.0.0.0/8, ::1/128, 1.2.3.4

}  // namespace fulcrum::config
