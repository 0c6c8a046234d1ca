// Tests of src/config/loader.cc: valid configs and the values they give, and every refusal with
// the FILE:LINE:COL it points at. Single-threaded; load_file tests write to a temp folder.
#include "config/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fulcrum::config {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kFile = "/srv/lb/t.yaml";

// Raw strings here open with a newline so the YAML lines up; drop it, so that line 1 of the
// config is the first line written and the expected line numbers read off the test directly.
std::string_view trim(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

// "OK" or "FILE:LINE:COL: message".
std::string error_of(std::string_view yaml) {
  LoadResult r = load_text(trim(yaml), kFile);
  if (auto* e = std::get_if<ConfigError>(&r)) return e->to_string();
  return "OK";
}

std::shared_ptr<const Config> load_ok(std::string_view yaml) {
  LoadResult r = load_text(trim(yaml), kFile);
  if (auto* e = std::get_if<ConfigError>(&r)) {
    ADD_FAILURE() << "refused: " << e->to_string();
    return nullptr;
  }
  return std::get<std::shared_ptr<const Config>>(r);
}

// A backend to point at, appended after the part under test so its line numbers stay put.
constexpr std::string_view kApp = R"(
backends:
  - name: app
    servers:
      - { name: a1, address: 127.0.0.1:9001 }
)";

std::string with_app(std::string_view yaml) { return std::string(trim(yaml)) + std::string(kApp); }

// ---------------------------------------------------------------- the SPEC's example, whole

// The example config from SPEC.md, verbatim, plus the backends it names but does not define.
constexpr std::string_view kSpecExample = R"(
workers: auto                 # event-loop threads; auto = one per core
shutdown_grace: 10s
admin:
  listen: 127.0.0.1:9090      # dashboard, metrics and JSON API (see below)
  token_file: admin.token     # optional; required when listen is not a loopback address
access_log: { path: stdout, format: json }   # path: stdout | stderr | a file | off; format: json | combined

listeners:
  - name: web
    bind: 0.0.0.0:8080
    protocol: http            # http | https | tcp | udp | dns | forward_proxy
    protect:                  # DoS / abuse filtering, per listener
      rate: 200/s             # per client IP, token bucket; over it: 429 with Retry-After (tcp: connection refused)
      burst: 400
      max_conns_per_client: 100
      header_timeout: 10s     # whole request head must arrive in this time (slowloris)
      idle_timeout: 60s
      max_header_bytes: 32KiB # over it: 431
      max_body_bytes: 10MiB   # over it: 413
      allow: []               # CIDRs; when non-empty, only these may connect
      deny: [ 192.0.2.0/24 ]  # CIDRs refused at accept
      rules:                  # L7 filters, RE2 syntax, on the target as received (before any normalising); first match wins; deny -> 403
        - { path_regex: '\.\./', action: deny }
        - { header: User-Agent, regex: 'sqlmap', action: deny }
    routes:                   # first match wins; a route with no match block matches everything
      - match: { path_prefix: /static/ }
        static: { root: ./public, index: index.html }   # served by fulcrum itself
      - match: { path_prefix: /api/, methods: [GET, POST], headers: { X-Canary: "1" } }
        backend: api-canary
      - match: { host: img.example.com, path_regex: '\.(png|jpg)$', query: { v: "2" }, cookies: { beta: "1" } }
        backend: images
        cache: { size: 256MiB, default_ttl: 0s }         # see Caching
      - backend: app

  - name: secure
    bind: 0.0.0.0:8443
    protocol: https
    tls:                      # https only; several certificates, chosen by SNI; first is the default
      - { cert: certs/site.pem, key: certs/site.key }
      - { cert: /etc/ssl/other.pem, key: /etc/ssl/other.key }
    routes:
      - backend: app

  - { name: pg,  bind: 0.0.0.0:15432, protocol: tcp, backend: db, proxy_protocol: v2 }   # proxy_protocol optional: off | v1 | v2
  - { name: game, bind: 0.0.0.0:7777, protocol: udp, backend: game, idle_timeout: 30s }
  - name: dns
    bind: 0.0.0.0:8053        # UDP and TCP
    protocol: dns
    zones:
      - { name: www.example.com, backend: app, ttl: 30, answers: 2 }
  - name: egress
    bind: 127.0.0.1:3128
    protocol: forward_proxy   # absolute-URI requests and CONNECT tunnels
    acl: { deny: [ "*.blocked.example", "ads.example.com" ], allow_ports: [80, 443] }
    cache: { size: 64MiB }

backends:
  - name: app
    balance: least_time       # see Balancing
    hash_key: ip              # for balance: hash — ip | header:NAME | cookie:NAME | query:NAME | path
    sticky: { cookie: FULCRUM_SERVER }   # optional cookie-insert persistence
    retries: 2                # other servers tried on connect failure; idempotent requests also on reset before response
    connect_timeout: 2s
    response_timeout: 30s
    max_conns_per_server: 0   # 0 = unlimited; over it requests queue up to queue_timeout, then 503
    queue_timeout: 5s
    health:
      check: http             # icmp | tcp | tcp_half_open | http | none
      path: /health
      host: app.internal
      expect_status: [200]
      expect_body: '"status":"UP"'   # optional substring the body must contain
      interval: 2s
      timeout: 1s
      rise: 2                 # consecutive passes to come back
      fall: 3                 # consecutive failures to be removed
      passive: { consecutive_errors: 5, eject: 30s }  # optional: errors seen on live traffic eject a server
      agent: { port: 9999, interval: 2s }  # optional: each server reports its own load (see Server-reported load)
      slow_start: 10s         # optional: weight ramps up after a server comes back
    servers:
      - { name: app1, address: 127.0.0.1:9001, weight: 3 }
      - { name: app2, address: 127.0.0.1:9002 }
      - { name: spare1, address: 127.0.0.1:9003, backup: true }
  - { name: api-canary, servers: [ { name: c1, address: 127.0.0.1:9101 } ] }
  - { name: images, balance: hash, hash_key: "header:X-Image", servers: [ { name: i1, address: 127.0.0.1:9201 } ] }
  - { name: db, servers: [ { name: db1, address: 127.0.0.1:5432 } ] }
  - { name: game, servers: [ { name: g1, address: 127.0.0.1:7000 } ] }
)";

TEST(LoaderSpecExample, LoadsWithEveryValue) {
  auto cfg = load_ok(kSpecExample);
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->file, kFile);
  EXPECT_EQ(cfg->dir, "/srv/lb");
  EXPECT_EQ(cfg->workers, 0u);
  EXPECT_EQ(cfg->shutdown_grace, Millis(10000));
  ASSERT_TRUE(cfg->admin);
  EXPECT_EQ(cfg->admin->listen.to_string(), "127.0.0.1:9090");
  EXPECT_EQ(cfg->admin->token_file, "/srv/lb/admin.token");
  EXPECT_EQ(cfg->admin->listen_mark.line, 4);
  EXPECT_EQ(cfg->admin->listen_mark.col, 11);
  EXPECT_EQ(cfg->access_log.path, "stdout");
  EXPECT_EQ(cfg->access_log.format, "json");

  ASSERT_EQ(cfg->listeners.size(), 6u);
  const Listener& web = cfg->listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.bind.to_string(), "0.0.0.0:8080");
  EXPECT_EQ(web.protocol, Protocol::kHttp);
  EXPECT_EQ(web.mark.line, 9);
  EXPECT_EQ(web.mark.col, 5);
  ASSERT_TRUE(web.protect);
  const Protect& p = *web.protect;
  ASSERT_TRUE(p.rate);
  EXPECT_DOUBLE_EQ(p.rate->per_second, 200);
  EXPECT_EQ(p.burst, 400u);
  EXPECT_EQ(p.max_conns_per_client, 100u);
  EXPECT_EQ(p.header_timeout, Millis(10000));
  EXPECT_EQ(p.idle_timeout, Millis(60000));
  EXPECT_EQ(p.max_header_bytes, 32u * 1024);
  EXPECT_EQ(p.max_body_bytes, 10u * 1024 * 1024);
  EXPECT_TRUE(p.allow.empty());
  ASSERT_EQ(p.deny.size(), 1u);
  EXPECT_EQ(p.deny[0].text, "192.0.2.0/24");
  EXPECT_EQ(p.deny[0].prefix, 24);
  ASSERT_EQ(p.rules.size(), 2u);
  EXPECT_EQ(p.rules[0].path_regex, "\\.\\./");
  EXPECT_EQ(p.rules[0].action, "deny");
  EXPECT_EQ(p.rules[1].header, "User-Agent");
  EXPECT_EQ(p.rules[1].regex, "sqlmap");
  EXPECT_EQ(p.rules[1].mark.line, 24);

  ASSERT_EQ(web.routes.size(), 4u);
  const Route& st = web.routes[0];
  ASSERT_TRUE(st.match);
  EXPECT_EQ(st.match->path_prefix, "/static/");
  ASSERT_TRUE(st.static_site);
  EXPECT_EQ(st.static_site->root, "/srv/lb/public");
  EXPECT_EQ(st.static_site->index, "index.html");
  EXPECT_TRUE(st.backend.empty());
  const Route& api = web.routes[1];
  EXPECT_EQ(api.backend, "api-canary");
  EXPECT_EQ(api.backend_mark.line, 29);
  EXPECT_EQ(api.backend_mark.col, 18);
  EXPECT_EQ(api.match->methods, (std::vector<std::string>{"GET", "POST"}));
  ASSERT_EQ(api.match->headers.size(), 1u);
  EXPECT_EQ(api.match->headers[0].key, "X-Canary");
  EXPECT_EQ(api.match->headers[0].value, "1");
  const Route& img = web.routes[2];
  EXPECT_EQ(img.match->host, "img.example.com");
  EXPECT_EQ(img.match->path_regex, "\\.(png|jpg)$");
  EXPECT_EQ(img.match->query[0].key, "v");
  EXPECT_EQ(img.match->query[0].value, "2");
  EXPECT_EQ(img.match->cookies[0].key, "beta");
  ASSERT_TRUE(img.cache);
  EXPECT_EQ(img.cache->size, 256ull << 20);
  EXPECT_EQ(img.cache->default_ttl, Millis(0));
  EXPECT_FALSE(web.routes[3].match);
  EXPECT_EQ(web.routes[3].backend, "app");

  const Listener& secure = cfg->listeners[1];
  EXPECT_EQ(secure.protocol, Protocol::kHttps);
  ASSERT_EQ(secure.tls.size(), 2u);
  EXPECT_EQ(secure.tls[0].cert, "/srv/lb/certs/site.pem");
  EXPECT_EQ(secure.tls[0].key, "/srv/lb/certs/site.key");
  EXPECT_EQ(secure.tls[1].cert, "/etc/ssl/other.pem");

  const Listener& pg = cfg->listeners[2];
  EXPECT_EQ(pg.protocol, Protocol::kTcp);
  EXPECT_EQ(pg.backend, "db");
  EXPECT_EQ(pg.proxy_protocol, ProxyProtocol::kV2);
  EXPECT_EQ(pg.backend_mark.line, 44);
  EXPECT_EQ(pg.backend_mark.col, 63);
  EXPECT_FALSE(pg.idle_timeout);

  const Listener& game = cfg->listeners[3];
  EXPECT_EQ(game.protocol, Protocol::kUdp);
  ASSERT_TRUE(game.idle_timeout);
  EXPECT_EQ(*game.idle_timeout, Millis(30000));

  const Listener& dns = cfg->listeners[4];
  EXPECT_EQ(dns.protocol, Protocol::kDns);
  ASSERT_EQ(dns.zones.size(), 1u);
  EXPECT_EQ(dns.zones[0].name, "www.example.com");
  EXPECT_EQ(dns.zones[0].backend, "app");
  EXPECT_EQ(dns.zones[0].ttl, 30u);
  EXPECT_EQ(dns.zones[0].answers, 2u);

  const Listener& egress = cfg->listeners[5];
  EXPECT_EQ(egress.protocol, Protocol::kForwardProxy);
  ASSERT_TRUE(egress.acl);
  EXPECT_EQ(egress.acl->deny, (std::vector<std::string>{"*.blocked.example", "ads.example.com"}));
  EXPECT_EQ(egress.acl->allow_ports, (std::vector<uint16_t>{80, 443}));
  ASSERT_TRUE(egress.cache);
  EXPECT_EQ(egress.cache->size, 64ull << 20);

  ASSERT_EQ(cfg->backends.size(), 5u);
  const Backend& app = cfg->backends[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.balance, "least_time");
  EXPECT_EQ(app.balance_mark.line, 59);
  EXPECT_EQ(app.balance_mark.col, 14);
  EXPECT_EQ(app.hash_key.kind, HashKey::Kind::kIp);
  ASSERT_TRUE(app.sticky);
  EXPECT_EQ(app.sticky->cookie, "FULCRUM_SERVER");
  EXPECT_EQ(app.retries, 2u);
  EXPECT_EQ(app.connect_timeout, Millis(2000));
  EXPECT_EQ(app.response_timeout, Millis(30000));
  EXPECT_EQ(app.max_conns_per_server, 0u);
  EXPECT_EQ(app.queue_timeout, Millis(5000));
  const Health& h = app.health;
  EXPECT_EQ(h.check, "http");
  EXPECT_EQ(h.path, "/health");
  EXPECT_EQ(h.host, "app.internal");
  EXPECT_EQ(h.expect_status, (std::vector<int>{200}));
  EXPECT_EQ(h.expect_body, "\"status\":\"UP\"");
  EXPECT_EQ(h.interval, Millis(2000));
  EXPECT_EQ(h.timeout, Millis(1000));
  EXPECT_EQ(h.rise, 2u);
  EXPECT_EQ(h.fall, 3u);
  ASSERT_TRUE(h.passive);
  EXPECT_EQ(h.passive->consecutive_errors, 5u);
  EXPECT_EQ(h.passive->eject, Millis(30000));
  ASSERT_TRUE(h.agent);
  EXPECT_EQ(h.agent->port, 9999);
  EXPECT_EQ(h.agent->interval, Millis(2000));
  EXPECT_EQ(h.slow_start, Millis(10000));
  ASSERT_EQ(app.servers.size(), 3u);
  EXPECT_EQ(app.servers[0].name, "app1");
  EXPECT_EQ(app.servers[0].address.to_string(), "127.0.0.1:9001");
  EXPECT_EQ(app.servers[0].address_text, "127.0.0.1:9001");
  EXPECT_EQ(app.servers[0].weight, 3u);
  EXPECT_FALSE(app.servers[0].backup);
  EXPECT_EQ(app.servers[1].weight, 1u);
  EXPECT_TRUE(app.servers[2].backup);

  const Backend* images = cfg->find_backend("images");
  ASSERT_TRUE(images);
  EXPECT_EQ(images->hash_key.kind, HashKey::Kind::kHeader);
  EXPECT_EQ(images->hash_key.name, "X-Image");
}

// ---------------------------------------------------------------- valid configs: defaults and shapes

TEST(LoaderValid, DefaultsOfAMinimalConfig) {
  auto cfg = load_ok(with_app(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes: [ { backend: app } ]
)"));
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->workers, 0u);
  EXPECT_EQ(cfg->shutdown_grace, Millis(10000));
  EXPECT_FALSE(cfg->admin);
  EXPECT_EQ(cfg->access_log.path, "off");
  const Listener& l = cfg->listeners.at(0);
  EXPECT_EQ(l.protocol, Protocol::kHttp);
  EXPECT_EQ(l.protocol_mark.line, l.mark.line);  // no protocol written: points at the listener
  EXPECT_FALSE(l.protect);
  const Backend& b = cfg->backends.at(0);
  EXPECT_EQ(b.balance, "round_robin");
  EXPECT_EQ(b.balance_mark.line, 7);  // no balance written: points at the backend
  EXPECT_EQ(b.balance_mark.col, 5);
  EXPECT_EQ(b.health.check, "none");
  EXPECT_EQ(b.retries, 2u);
  EXPECT_EQ(b.servers.at(0).weight, 1u);
  EXPECT_FALSE(b.servers.at(0).backup);
  EXPECT_FALSE(b.sticky);
  EXPECT_FALSE(b.tls);
}

TEST(LoaderValid, WorkersNumberAndFlowStyleListener) {
  auto cfg = load_ok(R"(
workers: 4
listeners:
  - { name: pg, bind: 0.0.0.0:15432, protocol: tcp, backend: db }
backends:
  - name: db
    servers: [ { name: db1, address: "127.0.0.1:5432", weight: 256 }, { name: db2, address: "[::1]:5432", weight: 0 } ]
)");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->workers, 4u);
  EXPECT_EQ(cfg->listeners[0].backend, "db");
  EXPECT_EQ(cfg->listeners[0].backend_mark.line, 3);
  EXPECT_EQ(cfg->listeners[0].backend_mark.col, 62);
  EXPECT_EQ(cfg->listeners[0].proxy_protocol, ProxyProtocol::kOff);
  EXPECT_EQ(cfg->backends[0].servers[0].weight, 256u);
  EXPECT_EQ(cfg->backends[0].servers[1].weight, 0u);
  EXPECT_EQ(cfg->backends[0].servers[1].address.to_string(), "[::1]:5432");
}

TEST(LoaderValid, RelativePathsTakenFromTheConfigFolder) {
  auto cfg = load_ok(with_app(R"(
admin: { listen: "[::1]:9090", token_file: ../secrets/token }
access_log: { path: logs/access.log, format: combined }
listeners:
  - name: web
    bind: "*:8443"
    protocol: https
    tls: [ { cert: /abs/site.pem, key: ./k/site.key } ]
    routes:
      - { match: { path_prefix: / }, static: { root: site/, fallback: /index.html } }
)"));
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->admin->token_file, "/srv/secrets/token");
  EXPECT_EQ(cfg->access_log.path, "/srv/lb/logs/access.log");
  EXPECT_EQ(cfg->access_log.format, "combined");
  const Listener& l = cfg->listeners[0];
  EXPECT_EQ(l.bind.to_string(), "0.0.0.0:8443");
  EXPECT_EQ(l.tls[0].cert, "/abs/site.pem");
  EXPECT_EQ(l.tls[0].key, "/srv/lb/k/site.key");
  EXPECT_EQ(l.routes[0].static_site->root, "/srv/lb/site/");
  EXPECT_EQ(l.routes[0].static_site->fallback, "/index.html");
}

TEST(LoaderValid, StderrAndOffAccessLogsAreNotPaths) {
  auto cfg = load_ok(with_app("access_log: { path: stderr }\n"));
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->access_log.path, "stderr");
  cfg = load_ok(with_app("access_log: { path: off }\n"));
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->access_log.path, "off");
}

TEST(LoaderValid, ZoneNamesLowerCasedWithoutTrailingDot) {
  auto cfg = load_ok(with_app(R"(
listeners:
  - name: dns
    bind: ":8053"
    protocol: dns
    zones:
      - { name: WWW.Example.COM., backend: app }
)"));
  ASSERT_TRUE(cfg);
  const DnsZone& z = cfg->listeners[0].zones[0];
  EXPECT_EQ(z.name, "www.example.com");
  EXPECT_EQ(z.ttl, 30u);
  EXPECT_EQ(z.answers, 0u);
  EXPECT_EQ(z.backend_mark.line, 6);
  EXPECT_EQ(z.backend_mark.col, 44);
}

TEST(LoaderValid, RatePerMinuteBecomesPerSecond) {
  auto cfg = load_ok(with_app(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    protect: { rate: 6000/m, allow: [ 10.0.0.0/8, "2001:db8::/32" ] }
    routes: [ { backend: app } ]
)"));
  ASSERT_TRUE(cfg);
  const Protect& p = *cfg->listeners[0].protect;
  EXPECT_DOUBLE_EQ(p.rate->per_second, 100);
  ASSERT_EQ(p.allow.size(), 2u);
  EXPECT_EQ(p.allow[1].family, AF_INET6);
}

TEST(LoaderValid, HashKeysOfEveryKind) {
  auto cfg = load_ok(R"(
backends:
  - { name: a, hash_key: ip, servers: [ { name: s, address: 127.0.0.1:1 } ] }
  - { name: b, hash_key: path, servers: [ { name: s, address: 127.0.0.1:1 } ] }
  - { name: c, hash_key: "header:X-User", servers: [ { name: s, address: 127.0.0.1:1 } ] }
  - { name: d, hash_key: "cookie:sid", servers: [ { name: s, address: 127.0.0.1:1 } ] }
  - { name: e, hash_key: "query:uid", servers: [ { name: s, address: 127.0.0.1:1 } ] }
)");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->backends[0].hash_key.kind, HashKey::Kind::kIp);
  EXPECT_EQ(cfg->backends[1].hash_key.kind, HashKey::Kind::kPath);
  EXPECT_EQ(cfg->backends[2].hash_key.kind, HashKey::Kind::kHeader);
  EXPECT_EQ(cfg->backends[2].hash_key.name, "X-User");
  EXPECT_EQ(cfg->backends[3].hash_key.kind, HashKey::Kind::kCookie);
  EXPECT_EQ(cfg->backends[3].hash_key.name, "sid");
  EXPECT_EQ(cfg->backends[4].hash_key.kind, HashKey::Kind::kQuery);
  EXPECT_EQ(cfg->backends[4].hash_key.name, "uid");
  EXPECT_EQ(cfg->backends[2].hash_key.mark.line, 4);
  EXPECT_EQ(cfg->backends[2].hash_key.mark.col, 26);
}

TEST(LoaderValid, UnquotedHashKeyInBlockStyle) {
  auto cfg = load_ok(R"(
backends:
  - name: a
    balance: hash
    hash_key: cookie:session_id
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->backends[0].balance, "hash");
  EXPECT_EQ(cfg->backends[0].balance_mark.line, 3);
  EXPECT_EQ(cfg->backends[0].balance_mark.col, 14);
  EXPECT_EQ(cfg->backends[0].hash_key.kind, HashKey::Kind::kCookie);
  EXPECT_EQ(cfg->backends[0].hash_key.name, "session_id");
}

TEST(LoaderValid, BalanceWordIsStoredNotJudged) {
  // lb's registry refuses unknown words after loading, pointing at balance_mark.
  auto cfg = load_ok(
      "backends:\n  - { name: a, balance: fastest, servers: [ { name: s, address: 127.0.0.1:1 } ] }\n");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->backends[0].balance, "fastest");
  EXPECT_EQ(cfg->backends[0].balance_mark.line, 2);
  EXPECT_EQ(cfg->backends[0].balance_mark.col, 25);
}

TEST(LoaderValid, ServerHostNamesAreResolved) {
  auto cfg = load_ok(R"(
backends:
  - name: app
    servers: [ { name: s, address: "localhost:9001" } ]
)");
  ASSERT_TRUE(cfg);
  const Server& s = cfg->backends[0].servers[0];
  EXPECT_EQ(s.address_text, "localhost:9001");
  EXPECT_EQ(s.address.port(), 9001);
  EXPECT_TRUE(s.address.family() == AF_INET || s.address.family() == AF_INET6);
}

TEST(LoaderValid, EmptyMatchMatchesEverythingAndBackendTlsParses) {
  auto cfg = load_ok(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes: [ { match: {}, backend: app } ]
backends:
  - name: app
    tls: { verify: false, sni: app.internal }
    health: { check: tcp, interval: 500ms, timeout: 500ms }
    servers: [ { name: s, address: 127.0.0.1:1, backup: no }, { name: t, address: 127.0.0.1:2, backup: true } ]
)");
  ASSERT_TRUE(cfg);
  EXPECT_FALSE(cfg->listeners[0].routes[0].match);
  ASSERT_TRUE(cfg->backends[0].tls);
  EXPECT_FALSE(cfg->backends[0].tls->verify);
  EXPECT_EQ(cfg->backends[0].tls->sni, "app.internal");
  EXPECT_EQ(cfg->backends[0].health.check, "tcp");
  EXPECT_EQ(cfg->backends[0].health.check_mark.line, 8);
  EXPECT_EQ(cfg->backends[0].health.check_mark.col, 22);
  EXPECT_FALSE(cfg->backends[0].servers[0].backup);
  EXPECT_TRUE(cfg->backends[0].servers[1].backup);
}

TEST(LoaderValid, BackendTlsCaIsAPathFromTheConfigFolder) {
  auto cfg = load_ok(R"(
listeners:
  - { name: web, bind: 127.0.0.1:8080, routes: [ { backend: app } ] }
backends:
  - name: app
    tls: { sni: app.internal, ca: certs/ca.pem }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)");
  ASSERT_TRUE(cfg);
  ASSERT_TRUE(cfg->backends[0].tls);
  EXPECT_TRUE(cfg->backends[0].tls->verify);  // on unless turned off
  EXPECT_EQ(cfg->backends[0].tls->ca, cfg->dir + "/certs/ca.pem");
}

TEST(LoaderValid, TcpAndUdpMayShareAPort) {
  EXPECT_EQ(error_of(R"(
listeners:
  - { name: t, bind: 0.0.0.0:7777, protocol: tcp, backend: app }
  - { name: u, bind: 0.0.0.0:7777, protocol: udp, backend: app }
  - { name: any1, bind: 127.0.0.1:0, routes: [ { backend: app } ] }
  - { name: any2, bind: 127.0.0.1:0, routes: [ { backend: app } ] }
backends:
  - { name: app, servers: [ { name: s, address: 127.0.0.1:1 } ] }
)"),
            "OK");
}

// ---------------------------------------------------------------- files

class LoaderFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fulcrum-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, std::string_view text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(LoaderFile, LoadsAndRemembersFileAndFolder) {
  std::string path = write("f.yaml", with_app(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes: [ { static: { root: www } } ]
)"));
  LoadResult r = load_file(path);
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<const Config>>(r))
      << std::get<ConfigError>(r).to_string();
  auto cfg = std::get<std::shared_ptr<const Config>>(r);
  EXPECT_EQ(cfg->file, path);
  EXPECT_EQ(cfg->dir, dir_);
  EXPECT_EQ(cfg->listeners[0].routes[0].static_site->root, dir_ + "/www");
}

TEST_F(LoaderFile, MissingFileNamesItWithStrerror) {
  std::string path = dir_ + "/nope.yaml";
  LoadResult r = load_file(path);
  ASSERT_TRUE(std::holds_alternative<ConfigError>(r));
  const ConfigError& e = std::get<ConfigError>(r);
  EXPECT_EQ(e.mark.line, 0);
  EXPECT_EQ(e.mark.col, 0);
  EXPECT_EQ(e.to_string(), path + ":0:0: cannot read " + path + ": No such file or directory");
}

TEST_F(LoaderFile, AFolderIsNotAConfig) {
  LoadResult r = load_file(dir_);
  ASSERT_TRUE(std::holds_alternative<ConfigError>(r));
  EXPECT_THAT(std::get<ConfigError>(r).to_string(),
              StartsWith(dir_ + ":0:0: cannot read " + dir_ + ": Is a directory"));
}

TEST_F(LoaderFile, ErrorsCarryTheFilePath) {
  std::string path = write("bad.yaml", "workers: lots\n");
  LoadResult r = load_file(path);
  ASSERT_TRUE(std::holds_alternative<ConfigError>(r));
  EXPECT_EQ(std::get<ConfigError>(r).to_string(),
            path + ":1:10: 'workers' must be auto or 1-256, got 'lots'");
}

// ---------------------------------------------------------------- YAML shape

TEST(LoaderSyntax, ParserErrorsBecomeConfigErrors) {
  EXPECT_THAT(error_of(R"(
listeners:
  - name: web
     bind: 1.2.3.4:80
)"),
              StartsWith("/srv/lb/t.yaml:3:10: YAML syntax error: "));
  EXPECT_THAT(error_of("a: [1, 2\nb: 3\n"), StartsWith("/srv/lb/t.yaml:2:2: YAML syntax error: "));
  EXPECT_THAT(error_of("listeners: *nowhere\n"), HasSubstr("YAML syntax error"));
}

TEST(LoaderSyntax, EmptyOrNotAMap) {
  EXPECT_EQ(error_of(""), "/srv/lb/t.yaml:1:1: config is empty: expected a map with listeners and backends");
  EXPECT_EQ(error_of("# only a comment\n"),
            "/srv/lb/t.yaml:1:1: config is empty: expected a map with listeners and backends");
  EXPECT_EQ(error_of("- a\n- b\n"), "/srv/lb/t.yaml:1:1: expected a map, got a list");
}

TEST(LoaderSyntax, UnknownKeysEverywhere) {
  EXPECT_EQ(error_of(R"(
workers: 2
listener: []
)"),
            "/srv/lb/t.yaml:2:1: unknown key 'listener' in config (did you mean 'listeners'?)");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bnd: 1.2.3.4:80
)")),
            "/srv/lb/t.yaml:3:5: unknown key 'bnd' in listener (did you mean 'bind'?)");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: 1.2.3.4:80, foo: 1, routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:36: unknown key 'foo' in listener");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, intervl: 2s }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:27: unknown key 'intervl' in health (did you mean 'interval'?)");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s, address: 127.0.0.1:1, wieght: 2 } ]
)"),
            "/srv/lb/t.yaml:3:49: unknown key 'wieght' in server (did you mean 'weight'?)");
}

TEST(LoaderSyntax, DuplicateKeyPointsAtTheSecond) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes: [ { backend: app } ]
    bind: 1.2.3.4:81
)")),
            "/srv/lb/t.yaml:5:5: duplicate key 'bind' in listener (first at line 3)");
}

TEST(LoaderSyntax, WrongTypes) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: [ 1, 2 ]
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:14: expected a map for 'protect', got a list");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: { name: s, address: 127.0.0.1:1 }
)"),
            "/srv/lb/t.yaml:3:14: expected a list for 'servers', got a map");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s, address: 127.0.0.1:1, weight: heavy } ]
)"),
            "/srv/lb/t.yaml:3:57: expected a number for 'weight', got 'heavy'");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: [s], address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:24: expected a string for 'name', got a list");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s, address: 127.0.0.1:1, backup: maybe } ]
)"),
            "/srv/lb/t.yaml:3:57: expected true or false for 'backup', got 'maybe'");
  EXPECT_EQ(error_of("listeners: 3\n"), "/srv/lb/t.yaml:1:12: expected a list for 'listeners', got '3'");
}

TEST(LoaderSyntax, EmptyValueBorrowsTheKeysMark) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind:
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:3:5: expected a string for 'bind', got nothing");
}

TEST(LoaderSyntax, MissingKeyPointsAtItsMap) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - bind: 1.2.3.4:80
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:2:5: missing 'name' in listener");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s } ]
)"),
            "/srv/lb/t.yaml:3:16: missing 'address' in server");
  EXPECT_EQ(error_of("backends:\n  - name: app\n"), "/srv/lb/t.yaml:2:5: missing 'servers' in backend");
}

// ---------------------------------------------------------------- values

TEST(LoaderValues, BadDuration) {
  EXPECT_EQ(error_of("shutdown_grace: 2x\n"),
            "/srv/lb/t.yaml:1:17: bad duration '2x': expected e.g. 250ms, 2s, 1m");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    connect_timeout: 1.5s
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:22: bad duration '1.5s': expected e.g. 250ms, 2s, 1m");
}

TEST(LoaderValues, ZeroWhereZeroIsImpossible) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, interval: 0 }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:37: 'interval' must be more than 0");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    connect_timeout: 0s
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:22: 'connect_timeout' must be more than 0");
}

TEST(LoaderValues, BadSize) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { max_body_bytes: 10MB, max_header_bytes: 32kb }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:56: bad size '32kb': expected e.g. 512KiB, 64MiB, 1GiB or bytes");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes: [ { backend: app, cache: { size: 0 } } ]
)")),
            "/srv/lb/t.yaml:4:46: 'size' must be more than 0");
}

TEST(LoaderValues, BadBindAddresses) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: "localhost:80", routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:24: bad address 'localhost:80': not a numeric IP");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: 1.2.3.4, routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:24: bad address '1.2.3.4': expected host:port");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: "1.2.3.4:70000", routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:24: bad address '1.2.3.4:70000': port must be 0-65535");
}

TEST(LoaderValues, BadServerAddresses) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: 127.0.0.1 }
)"),
            "/srv/lb/t.yaml:4:29: bad address '127.0.0.1': expected host:port");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: 127.0.0.1:0 }
)"),
            "/srv/lb/t.yaml:4:29: server address '127.0.0.1:0' needs a port other than 0");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: "*:80" }
)"),
            "/srv/lb/t.yaml:4:29: server address '*:80' is not a host to connect to");
  EXPECT_THAT(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: "no-such-host.invalid:80" }
)"),
              StartsWith("/srv/lb/t.yaml:4:29: bad address 'no-such-host.invalid:80': cannot resolve"));
}

TEST(LoaderValues, BadCidr) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect:
      deny: [ 192.0.2.0/24, 10.0.0.0/33 ]
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:5:29: bad CIDR '10.0.0.0/33': expected e.g. 10.0.0.0/8 or 2001:db8::/32");
}

TEST(LoaderValues, BadRateAndBurstWithoutRate) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { rate: 200 }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:22: bad rate '200': expected e.g. 200/s or 6000/m");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { rate: 10/h }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:22: bad rate '10/h': expected e.g. 200/s or 6000/m");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { burst: 10 }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:16: 'burst' needs 'rate'");
}

TEST(LoaderValid, ProtectStoreRedis) {
  auto cfg = load_ok(with_app(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    protect: { rate: 10/s, store: { redis: 127.0.0.1:6379 } }
    routes: [ { backend: app } ]
)"));
  ASSERT_TRUE(cfg);
  const Protect& p = *cfg->listeners[0].protect;
  EXPECT_EQ(p.store_redis, "127.0.0.1:6379");
  EXPECT_EQ(p.store_mark.line, 4);
}

TEST(LoaderValues, ProtectStoreIsStrict) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { rate: 10/s, store: { redis: 127.0.0.1:6379, db: 2 } }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:60: unknown key 'db' in protect store");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { rate: 10/s, store: { redis: localhost } }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:44: bad redis address 'localhost': expected e.g. 127.0.0.1:6379");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { max_body_bytes: 1MiB, store: { redis: 127.0.0.1:6379 } }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:38: 'store' needs 'rate' or 'max_conns_per_client' to keep");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect: { rate: 10/s, store: { } }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:35: missing 'redis' in protect store");
}

TEST(LoaderValues, WorkersAutoOrOneTo256) {
  EXPECT_EQ(error_of("workers: 0\n"), "/srv/lb/t.yaml:1:10: 'workers' must be auto or 1-256, got '0'");
  EXPECT_EQ(error_of("workers: 300\n"), "/srv/lb/t.yaml:1:10: 'workers' must be auto or 1-256, got '300'");
  EXPECT_EQ(error_of("workers: Auto\n"), "/srv/lb/t.yaml:1:10: 'workers' must be auto or 1-256, got 'Auto'");
  EXPECT_EQ(error_of("workers: 256\n"), "OK");
}

TEST(LoaderValues, WeightRange) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: 127.0.0.1:1, weight: 257 }
)"),
            "/srv/lb/t.yaml:4:50: 'weight' must be 0-256, got 257");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: 127.0.0.1:1, weight: -1 }
)"),
            "/srv/lb/t.yaml:4:50: 'weight' must be 0-256, got -1");
}

TEST(LoaderValues, RiseAndFallAtLeastOne) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, rise: 0 }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:33: 'rise' must be 1 or more, got 0");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health:
      check: tcp
      fall: 0
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:5:13: 'fall' must be 1 or more, got 0");
}

TEST(LoaderValues, ExpectStatusRange) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: http, expect_status: [200, 99] }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:49: 'expect_status' must be 100-599, got 99");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: http, expect_status: [600] }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:44: 'expect_status' must be 100-599, got 600");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: http, expect_status: 200 }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:43: expected a list for 'expect_status', got '200'");
}

TEST(LoaderValues, HttpCheckWithoutPathDefaultsToRoot) {
  auto cfg = load_ok(R"(
backends:
  - name: app
    health: { check: http }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->backends[0].health.path, "/");
  EXPECT_EQ(cfg->backends[0].health.expect_status, (std::vector<int>{200}));
}

TEST(LoaderValues, HealthCheckKindAndHttpOnlyKeys) {
  EXPECT_EQ(
      error_of(R"(
backends:
  - name: app
    health: { check: ping }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
      "/srv/lb/t.yaml:3:22: unknown health check 'ping': expected icmp, tcp, tcp_half_open, http or none");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, path: /health }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:27: 'path' is only for check: http, and this check is tcp");
}

TEST(LoaderValues, HealthTimeoutNotOverInterval) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, interval: 2s, timeout: 3s }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:50: health timeout 3s is longer than interval 2s");
  // The default timeout (1s) against a shorter interval: the interval is what was written.
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { check: tcp, interval: 500ms }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:37: health timeout 1s is longer than interval 500ms");
}

TEST(LoaderValues, AnswersNotNegative) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: dns
    bind: 127.0.0.1:8053
    protocol: dns
    zones: [ { name: a.example, backend: app, answers: -1 } ]
)")),
            "/srv/lb/t.yaml:5:56: 'answers' must be 0-65535, got -1");
}

TEST(LoaderValues, BadZoneName) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: dns
    bind: 127.0.0.1:8053
    protocol: dns
    zones: [ { name: "a..example", backend: app } ]
)")),
            "/srv/lb/t.yaml:5:22: bad zone name 'a..example': expected a DNS name");
}

TEST(LoaderValues, ProxyProtocolWords) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: pg, bind: 0.0.0.0:15432, protocol: tcp, backend: app, proxy_protocol: v3 }
)")),
            "/srv/lb/t.yaml:2:83: bad proxy_protocol 'v3': expected off, v1 or v2");
  auto cfg = load_ok(with_app(R"(
listeners:
  - { name: pg, bind: 0.0.0.0:15432, protocol: tcp, backend: app, proxy_protocol: v1 }
)"));
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->listeners[0].proxy_protocol, ProxyProtocol::kV1);
}

TEST(LoaderValues, UnknownProtocol) {
  EXPECT_EQ(
      error_of(with_app(R"(
listeners:
  - { name: x, bind: 0.0.0.0:1, protocol: HTTP, routes: [ { backend: app } ] }
)")),
      "/srv/lb/t.yaml:2:43: unknown protocol 'HTTP': expected http, https, tcp, udp, dns or forward_proxy");
}

TEST(LoaderValues, HashKeySyntax) {
  const char* kBad[] = {"header:", "ip:x", "source", "header:Bad Name", "query:", "path:x"};
  for (const char* key : kBad) {
    std::string yaml = "backends:\n  - name: app\n    hash_key: \"" + std::string(key) +
                       "\"\n    servers: [ { name: s, address: 127.0.0.1:1 } ]\n";
    EXPECT_EQ(error_of(yaml), "/srv/lb/t.yaml:3:15: bad hash_key '" + std::string(key) +
                                  "': expected ip, path, header:NAME, cookie:NAME or query:NAME")
        << key;
  }
}

TEST(LoaderValues, StickyNeedsCookie) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    sticky: {}
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:13: missing 'cookie' in sticky");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    sticky: { cookie: "a=b" }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:23: bad cookie name 'a=b': not an HTTP token");
}

TEST(LoaderValues, AccessLogFormat) {
  EXPECT_EQ(error_of("access_log: { path: stdout, format: xml }\n"),
            "/srv/lb/t.yaml:1:37: unknown access_log format 'xml': expected json or combined");
}

TEST(LoaderValues, BadNames) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: "my app"
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:2:11: bad name 'my app': use letters, digits, '-', '_' and '.'");
}

// ---------------------------------------------------------------- names and references

TEST(LoaderRefs, UnknownBackendInARoute) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - match: { path_prefix: /api/ }
        backend: api
      - backend: app
)")),
            "/srv/lb/t.yaml:6:18: unknown backend 'api'");
}

TEST(LoaderRefs, UnknownBackendInATcpListener) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: pg, bind: 0.0.0.0:15432, protocol: tcp, backend: db }
)")),
            "/srv/lb/t.yaml:2:62: unknown backend 'db'");
}

TEST(LoaderRefs, UnknownBackendInADnsZone) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: dns
    bind: 127.0.0.1:8053
    protocol: dns
    zones:
      - { name: a.example, backend: app }
      - { name: b.example, backend: bee }
)")),
            "/srv/lb/t.yaml:7:37: unknown backend 'bee'");
}

TEST(LoaderRefs, BackendsMayComeBeforeListeners) {
  EXPECT_EQ(error_of(R"(
backends:
  - { name: app, servers: [ { name: s, address: 127.0.0.1:1 } ] }
listeners:
  - { name: t, bind: 0.0.0.0:7, protocol: tcp, backend: app }
)"),
            "OK");
}

TEST(LoaderRefs, DuplicateListener) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: 1.2.3.4:80, routes: [ { backend: app } ] }
  - { name: web, bind: 1.2.3.4:81, routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:3:13: duplicate listener 'web' (first at line 2)");
}

TEST(LoaderRefs, DuplicateBackend) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s, address: 127.0.0.1:1 } ]
  - name: app
    servers: [ { name: s, address: 127.0.0.1:2 } ]
)"),
            "/srv/lb/t.yaml:4:11: duplicate backend 'app' (first at line 2)");
}

TEST(LoaderRefs, DuplicateServerInOneBackend) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s1, address: 127.0.0.1:1 }
      - { name: s1, address: 127.0.0.1:2 }
)"),
            "/srv/lb/t.yaml:5:17: duplicate server 's1' in backend 'app' (first at line 4)");
  // The same server name in two backends is fine.
  EXPECT_EQ(error_of(R"(
backends:
  - { name: a, servers: [ { name: s1, address: 127.0.0.1:1 } ] }
  - { name: b, servers: [ { name: s1, address: 127.0.0.1:1 } ] }
)"),
            "OK");
}

TEST(LoaderRefs, DuplicateZone) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: dns
    bind: 127.0.0.1:8053
    protocol: dns
    zones:
      - { name: a.example, backend: app }
      - { name: A.example., backend: app }
)")),
            "/srv/lb/t.yaml:7:17: duplicate zone 'a.example' (first at line 6)");
}

// ---------------------------------------------------------------- what each protocol needs and allows

TEST(LoaderListeners, RouteNeedsExactlyOneOfStaticAndBackend) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - backend: app
        static: { root: www }
)")),
            "/srv/lb/t.yaml:6:9: a route has either 'static' or 'backend', not both");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - match: { path_prefix: /x/ }
)")),
            "/srv/lb/t.yaml:5:9: a route needs 'backend' or 'static'");
}

TEST(LoaderListeners, HttpNeedsRoutes) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
)")),
            "/srv/lb/t.yaml:2:5: http listener 'web' needs 'routes'");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes: []
)")),
            "/srv/lb/t.yaml:4:13: 'routes' needs at least one route");
}

TEST(LoaderListeners, TcpAndUdpNeedABackend) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: pg, bind: 0.0.0.0:15432, protocol: tcp }
)")),
            "/srv/lb/t.yaml:2:5: tcp listener 'pg' needs 'backend'");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: game
    bind: 0.0.0.0:7777
    protocol: udp
)")),
            "/srv/lb/t.yaml:2:5: udp listener 'game' needs 'backend'");
}

TEST(LoaderListeners, HttpsNeedsTlsAndOnlyHttpsTakesIt) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:443
    protocol: https
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:2:5: https listener 'web' needs 'tls' with at least one certificate");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    tls: [ { cert: a.pem, key: a.key } ]
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:5: 'tls' is only for https listeners, and 'web' is http");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:443
    protocol: https
    tls: [ { cert: a.pem } ]
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:5:12: missing 'key' in tls certificate");
}

TEST(LoaderListeners, DnsNeedsZones) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: dns
    bind: 127.0.0.1:8053
    protocol: dns
)")),
            "/srv/lb/t.yaml:2:5: dns listener 'dns' needs 'zones'");
}

TEST(LoaderListeners, AclOnlyOnForwardProxy) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    acl: { deny: [ ads.example ] }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:4:5: 'acl' is only for forward_proxy listeners, and 'web' is http");
  EXPECT_EQ(error_of(R"(
listeners:
  - name: egress
    bind: 127.0.0.1:3128
    protocol: forward_proxy
    acl: { deny: [ "ads.*.example" ], allow_ports: [ 443 ] }
)"),
            "/srv/lb/t.yaml:5:20: bad acl pattern 'ads.*.example': expected a host name or *.suffix");
  EXPECT_EQ(error_of(R"(
listeners:
  - name: egress
    bind: 127.0.0.1:3128
    protocol: forward_proxy
    acl: { allow_ports: [ 443, 0 ] }
)"),
            "/srv/lb/t.yaml:5:32: 'allow_ports' must be 1-65535, got 0");
}

TEST(LoaderListeners, KeysOfOtherProtocolsAreRefused) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: 1.2.3.4:80, backend: app, routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:36: 'backend' is only for tcp and udp listeners, and 'web' is http; "
            "http listeners name backends in routes");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: web, bind: 1.2.3.4:80, cache: { size: 1MiB }, routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:2:36: 'cache' is only for forward_proxy listeners, and 'web' is http; "
            "http listeners put cache on a route");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: game, bind: 1.2.3.4:80, protocol: udp, backend: app, proxy_protocol: v2 }
)")),
            "/srv/lb/t.yaml:2:66: 'proxy_protocol' is only for tcp listeners, and 'game' is udp");
}

TEST(LoaderListeners, ProtectRulesNeedHttp) {
  EXPECT_EQ(
      error_of(with_app(R"(
listeners:
  - name: pg
    bind: 0.0.0.0:15432
    protocol: tcp
    backend: app
    protect:
      rate: 10/s
      rules: [ { path_regex: x } ]
)")),
      "/srv/lb/t.yaml:8:7: protect 'rules' needs an http, https or forward_proxy listener, and 'pg' is tcp");
}

TEST(LoaderListeners, RuleShape) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect:
      rules:
        - { header: User-Agent, action: deny }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:6:11: missing 'regex' in protect rule");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect:
      rules:
        - { action: deny }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:6:11: a protect rule needs exactly one of 'path_regex', 'header' or 'query'");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    protect:
      rules:
        - { path_regex: x, action: drop }
    routes: [ { backend: app } ]
)")),
            "/srv/lb/t.yaml:6:36: bad action 'drop': expected deny or allow");
}

TEST(LoaderListeners, RoutesAfterACatchAllAreDead) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - backend: app
      - match: { path_prefix: /api/ }
        backend: app
)")),
            "/srv/lb/t.yaml:6:9: this route is never used: the route at line 5 matches every request");
}

TEST(LoaderListeners, MatchValues) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - { match: { methods: [GET, post] }, backend: app }
)")),
            "/srv/lb/t.yaml:5:35: method 'post' must be upper case: methods are case-sensitive");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - { match: { path_prefix: api/ }, backend: app }
)")),
            "/srv/lb/t.yaml:5:33: path_prefix must start with '/'");
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - { match: { headers: { "X Bad": "1" } }, backend: app }
)")),
            "/srv/lb/t.yaml:5:31: bad header name 'X Bad': not an HTTP token");
}

TEST(LoaderListeners, CacheIsForBackendRoutes) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - name: web
    bind: 1.2.3.4:80
    routes:
      - { static: { root: www }, cache: { size: 1MiB } }
)")),
            "/srv/lb/t.yaml:5:34: 'cache' is for routes with a backend; static files are served from disk");
}

TEST(LoaderListeners, BindClashes) {
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: a, bind: 0.0.0.0:8080, routes: [ { backend: app } ] }
  - { name: b, bind: 127.0.0.1:8080, protocol: tcp, backend: app }
)")),
            "/srv/lb/t.yaml:3:22: bind 127.0.0.1:8080 clashes with listener 'a' on 0.0.0.0:8080");
  // DNS takes UDP and TCP, so it clashes with a udp listener on its port too.
  EXPECT_EQ(error_of(with_app(R"(
listeners:
  - { name: u, bind: 127.0.0.1:53, protocol: udp, backend: app }
  - { name: d, bind: 127.0.0.1:53, protocol: dns, zones: [ { name: x.example, backend: app } ] }
)")),
            "/srv/lb/t.yaml:3:22: bind 127.0.0.1:53 clashes with listener 'u' on 127.0.0.1:53");
  EXPECT_EQ(error_of(with_app(R"(
admin: { listen: 127.0.0.1:9090 }
listeners:
  - { name: a, bind: "*:9090", routes: [ { backend: app } ] }
)")),
            "/srv/lb/t.yaml:3:22: bind 0.0.0.0:9090 clashes with admin listen 127.0.0.1:9090");
}

TEST(LoaderAdmin, NonLoopbackNeedsAToken) {
  EXPECT_EQ(error_of("admin:\n  listen: 0.0.0.0:9090\n"),
            "/srv/lb/t.yaml:2:11: admin listen 0.0.0.0:9090 is not a loopback address: set token_file, or "
            "listen on 127.0.0.1");
  EXPECT_EQ(error_of("admin:\n  listen: 0.0.0.0:9090\n  token_file: t\n"), "OK");
  EXPECT_EQ(error_of("admin:\n  listen: 127.0.0.2:9090\n"), "OK");
  EXPECT_EQ(error_of("admin:\n  token_file: t\n"), "/srv/lb/t.yaml:2:3: missing 'listen' in admin");
}

TEST(LoaderBackends, ServersNeededAndNotOnlyBackups) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: []
)"),
            "/srv/lb/t.yaml:3:14: backend 'app' needs at least one server");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers:
      - { name: s, address: 127.0.0.1:1, backup: true }
)"),
            "/srv/lb/t.yaml:4:7: backend 'app' has only backup servers; backups stand in for primaries");
}

TEST(LoaderBackends, AgentNeedsAPort) {
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { agent: { interval: 1s } }
    servers: [ { name: s, address: 127.0.0.1:1 } ]
)"),
            "/srv/lb/t.yaml:3:22: health.agent needs a port: server 's' has no agent_port of its own");
}

TEST(LoaderBackends, ServersMayHaveAgentPortsOfTheirOwn) {
  // Servers sharing an address (one host, several processes) each run their agent on a port of
  // their own, as HAProxy's agent-port on a server line; the backend's port is then optional.
  auto cfg = load_ok(R"(
backends:
  - name: app
    health: { agent: { interval: 1s } }
    servers:
      - { name: a, address: 127.0.0.1:9101, agent_port: 9201 }
      - { name: b, address: 127.0.0.1:9102, agent_port: 9202 }
)");
  const auto& b = cfg->backends[0];
  EXPECT_EQ(b.health.agent->port, 0);
  EXPECT_EQ(b.servers[0].agent_port, 9201);
  EXPECT_EQ(b.servers[1].agent_port, 9202);
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    servers: [ { name: s, address: 127.0.0.1:1, agent_port: 9201 } ]
)"),
            "/srv/lb/t.yaml:3:49: server 's' has an agent_port, but backend 'app' has no health.agent to use it");
  EXPECT_EQ(error_of(R"(
backends:
  - name: app
    health: { agent: { port: 9200 } }
    servers: [ { name: s, address: 127.0.0.1:1, agent_port: 0 } ]
)"),
            "/srv/lb/t.yaml:4:61: 'agent_port' must be 1-65535, got 0");
}

TEST(LoaderNoThrow, OddInputNeverEscapesAsAnException) {
  const char* kOdd[] = {
      "{",
      "]",
      "\t- x",
      "a: &x [*x]",
      "? [a, b]\n: c\n",
      "listeners: [ { name: { a: b } } ]",
      "backends: [ 1, 2 ]",
      "workers: !!binary AAAA",
      "%YAML 9.9\n---\na: 1\n",
      "listeners:\n  - name: web\n    bind: 1.2.3.4:80\n    routes: [ { backend: app } ]\n---\nx: 1\n"};
  for (const char* yaml : kOdd) {
    std::string out;
    EXPECT_NO_THROW(out = error_of(yaml)) << yaml;
    EXPECT_THAT(out, StartsWith("/srv/lb/t.yaml:")) << yaml;
  }
}

}  // namespace
}  // namespace fulcrum::config
