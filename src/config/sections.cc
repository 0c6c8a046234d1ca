// The config's sections that stand on their own, read for the loader's walk (loader.cc): the
// top-level settings (workers, admin, access_log) and each backend with its servers, health check
// and hash key. Listeners, which name backends and are checked against each other, stay in the
// walk. Start-up and reload only, on the loading thread; errors are thrown as yaml::Failure.
#include "config/sections.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace fulcrum::config::sections {

using namespace yaml;  // the readers are this file's vocabulary

namespace {

HashKey hash_key(const Field& f) {
  std::string s = str(f);
  HashKey k;
  k.mark = f.mark();
  auto colon = s.find(':');
  std::string kind = s.substr(0, colon);
  if (colon != std::string::npos) k.name = s.substr(colon + 1);
  bool named = true;
  if (kind == "ip")
    k.kind = HashKey::Kind::kIp, named = false;
  else if (kind == "path")
    k.kind = HashKey::Kind::kPath, named = false;
  else if (kind == "header")
    k.kind = HashKey::Kind::kHeader;
  else if (kind == "cookie")
    k.kind = HashKey::Kind::kCookie;
  else if (kind == "query")
    k.kind = HashKey::Kind::kQuery;
  else
    kind.clear();
  bool ok = !kind.empty() &&
            (named ? (kind == "query" ? !k.name.empty() : is_token(k.name)) : colon == std::string::npos);
  if (!ok)
    fail(f.mark(),
         "bad hash_key " + in_quotes(s) + ": expected ip, path, header:NAME, cookie:NAME or query:NAME");
  return k;
}

Health health(const Field& f) {
  Map m(f, "health",
        {"check", "path", "host", "expect_status", "expect_body", "interval", "timeout", "rise", "fall",
         "passive", "agent", "slow_start"});
  Health h;
  h.mark = m.mark();
  h.check_mark = m.mark();
  if (const Field* c = m.get("check")) {
    h.check = str(*c);
    h.check_mark = c->mark();
    static constexpr std::string_view kChecks[] = {"icmp", "tcp", "tcp_half_open", "http", "none"};
    if (std::find(std::begin(kChecks), std::end(kChecks), h.check) == std::end(kChecks))
      fail(c->mark(), "unknown health check " + in_quotes(h.check) +
                          ": expected icmp, tcp, tcp_half_open, http or none");
  }
  for (std::string_view k : {"path", "host", "expect_status", "expect_body"})
    if (const Field* kf = m.get(k); kf && h.check != "http")
      fail(kf->key_mark, in_quotes(k) + " is only for check: http, and this check is " + h.check);
  if (const Field* p = m.get("path")) {
    h.path = str(*p);
    if (h.path.front() != '/') fail(p->mark(), "health path must start with '/'");
  }
  if (const Field* host = m.get("host")) h.host = str(*host);
  if (const Field* es = m.get("expect_status")) {
    h.expect_status.clear();
    for (const Field& item : list(*es)) h.expect_status.push_back(static_cast<int>(num(item, 100, 599)));
    if (h.expect_status.empty()) fail(es->mark(), "'expect_status' needs at least one status");
  }
  if (const Field* b = m.get("expect_body")) h.expect_body = str(*b);
  const Field* interval = m.get("interval");
  const Field* timeout = m.get("timeout");
  if (interval) h.interval = duration(*interval, false);
  if (timeout) h.timeout = duration(*timeout, false);
  // A check still running when the next one is due would overlap it and skew rise/fall.
  if (h.timeout > h.interval)
    fail(timeout ? timeout->mark() : interval->mark(),
         "health timeout " + format_ms(h.timeout) + " is longer than interval " + format_ms(h.interval));
  if (const Field* r = m.get("rise")) h.rise = num32(*r, 1);
  if (const Field* fa = m.get("fall")) h.fall = num32(*fa, 1);
  if (const Field* p = m.get("passive")) {
    Map pm(*p, "passive", {"consecutive_errors", "eject"});
    Passive passive;
    if (const Field* c = pm.get("consecutive_errors")) passive.consecutive_errors = num32(*c, 1);
    if (const Field* e = pm.get("eject")) passive.eject = duration(*e, false);
    h.passive = passive;
  }
  if (const Field* a = m.get("agent")) {
    Map am(*a, "agent", {"port", "interval"});
    Agent agent;
    // Optional when every server has an agent_port of its own (checked with the servers).
    if (const Field* p = am.get("port")) agent.port = static_cast<uint16_t>(num(*p, 1, 65535));
    agent.mark = am.mark();
    if (const Field* i = am.get("interval")) agent.interval = duration(*i, false);
    h.agent = agent;
  }
  if (const Field* s = m.get("slow_start")) h.slow_start = duration(*s, true);
  return h;
}

Server server(const Field& f, Mark* name_mark) {
  Map m(f, "server", {"name", "address", "weight", "backup", "agent_port"});
  Server s;
  s.mark = m.mark();
  const Field& n = m.need("name");
  s.name = name(n);
  *name_mark = n.mark();
  const Field& a = m.need("address");
  s.address_text = str(a);
  auto r = SocketAddress::parse(s.address_text, true);
  if (!r) fail(a.mark(), r.error().message);
  if (r->port() == 0)
    fail(a.mark(), "server address " + in_quotes(s.address_text) + " needs a port other than 0");
  if (is_unspecified(*r))
    fail(a.mark(), "server address " + in_quotes(s.address_text) + " is not a host to connect to");
  s.address = *r;
  // 0-256 as in HAProxy's `weight`: enough resolution for ratios between servers; 0 takes no new
  // traffic (the server stays in the backend and can be raised from the admin API).
  if (const Field* w = m.get("weight")) s.weight = num32(*w, 0, 256);
  if (const Field* b = m.get("backup")) s.backup = boolean(*b);
  // HAProxy's `agent-port` on a server line: servers that share an address (one host, several
  // processes) each run their agent on a port of their own. Checked against health.agent below.
  if (const Field* ap = m.get("agent_port")) {
    s.agent_port = static_cast<uint16_t>(num(*ap, 1, 65535));
    s.agent_port_mark = ap->key_mark;
  }
  return s;
}

}  // namespace

uint32_t workers(const Field& f) {
  if (f.node.IsScalar() && f.text() == "auto") return 0;
  if (f.node.IsScalar()) {
    uint64_t n = 0;
    const std::string& s = f.text();
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc() && p == s.data() + s.size() && n >= 1 && n <= 256) return static_cast<uint32_t>(n);
  }
  fail(f.mark(), "'workers' must be auto or 1-256, got " + describe(f.node));
}

Admin admin(const Field& f, const std::string& dir) {
  Map m(f, "admin", {"listen", "token_file"});
  Admin a;
  a.mark = m.mark();
  const Field& listen = m.need("listen");
  a.listen = bind_address(listen);
  a.listen_mark = listen.mark();
  if (const Field* t = m.get("token_file")) a.token_file = file_path(*t, dir);
  // The API drains servers and reloads the config: never open to the network by accident.
  if (a.token_file.empty() && !is_loopback(a.listen))
    fail(listen.mark(), "admin listen " + a.listen.to_string() +
                            " is not a loopback address: set token_file, or listen on 127.0.0.1");
  return a;
}

AccessLog access_log(const Field& f, const std::string& dir) {
  Map m(f, "access_log", {"path", "format"});
  AccessLog log;
  if (const Field* p = m.get("path")) {
    std::string s = str(*p);
    log.path = (s == "stdout" || s == "stderr" || s == "off") ? s : file_path(*p, dir);
  }
  if (const Field* fmt = m.get("format")) {
    log.format = str(*fmt);
    if (log.format != "json" && log.format != "combined")
      fail(fmt->mark(), "unknown access_log format " + in_quotes(log.format) + ": expected json or combined");
  }
  return log;
}

Backend backend(const Field& f, const std::string& dir, Mark* name_mark) {
  Map m(f, "backend",
        {"name", "balance", "hash_key", "sticky", "retries", "connect_timeout", "response_timeout",
         "max_conns_per_server", "queue_timeout", "health", "tls", "servers"});
  Backend b;
  b.mark = m.mark();
  const Field& name_field = m.need("name");
  b.name = name(name_field);
  Mark backend_name_mark = name_field.mark();
  // The word is checked against lb's registry after loading; absent, errors point at the backend.
  b.balance_mark = b.mark;
  if (const Field* bal = m.get("balance")) {
    b.balance = str(*bal);
    b.balance_mark = bal->mark();
  }
  b.hash_key.mark = b.mark;
  if (const Field* h = m.get("hash_key")) b.hash_key = hash_key(*h);
  if (const Field* s = m.get("sticky")) {
    Map sm(*s, "sticky", {"cookie"});
    b.sticky = Sticky{token(sm.need("cookie"), "cookie name"), sm.mark()};
  }
  if (const Field* r = m.get("retries")) b.retries = num32(*r, 0);
  if (const Field* t = m.get("connect_timeout")) b.connect_timeout = duration(*t, false);
  if (const Field* t = m.get("response_timeout")) b.response_timeout = duration(*t, false);
  if (const Field* c = m.get("max_conns_per_server")) b.max_conns_per_server = num32(*c, 0);
  if (const Field* t = m.get("queue_timeout")) b.queue_timeout = duration(*t, true);  // 0: 503 at once
  b.health.mark = b.mark;
  b.health.check_mark = b.mark;
  if (const Field* h = m.get("health")) b.health = health(*h);
  if (const Field* t = m.get("tls")) {
    Map tm(*t, "backend tls", {"verify", "sni", "ca"});
    BackendTls tls;
    tls.mark = tm.mark();
    if (const Field* v = tm.get("verify")) tls.verify = boolean(*v);
    if (const Field* s = tm.get("sni")) tls.sni = str(*s);
    if (const Field* c = tm.get("ca")) tls.ca = file_path(*c, dir);
    b.tls = tls;
  }

  const Field& servers = m.need("servers");
  for (const Field& item : list(servers)) {
    Mark server_name_mark;
    Server s = server(item, &server_name_mark);
    for (const Server& seen : b.servers)
      if (seen.name == s.name)
        fail(server_name_mark, "duplicate server " + in_quotes(s.name) + " in backend " + in_quotes(b.name) +
                                   " (first at line " + std::to_string(seen.mark.line) + ")");
    b.servers.push_back(std::move(s));
  }
  if (b.servers.empty()) fail(servers.mark(), "backend " + in_quotes(b.name) + " needs at least one server");
  for (const Server& s : b.servers) {
    if (s.agent_port != 0 && !b.health.agent)
      fail(s.agent_port_mark, "server " + in_quotes(s.name) + " has an agent_port, but backend " +
                                  in_quotes(b.name) + " has no health.agent to use it");
    if (b.health.agent && b.health.agent->port == 0 && s.agent_port == 0)
      fail(b.health.agent->mark,
           "health.agent needs a port: server " + in_quotes(s.name) + " has no agent_port of its own");
  }
  // Spares only stand in for primaries that are down; with no primary none would ever serve.
  if (std::all_of(b.servers.begin(), b.servers.end(), [](const Server& s) { return s.backup; }))
    fail(servers.mark(),
         "backend " + in_quotes(b.name) + " has only backup servers; backups stand in for primaries");
  *name_mark = backend_name_mark;
  return b;
}

}  // namespace fulcrum::config::sections
