// Loads and validates the YAML config into an immutable Config, strictly: every key known, every
// value typed and in range, every backend name resolved, each error at the FILE:LINE:COL of the
// key or value at fault. Start-up and reload only, on whichever thread loads (blocks on the file
// read and on server-name lookups). Exceptions carry the first error up the walk and are caught
// in load_text; none leaves the loader. The walk mirrors the schema top to bottom: listeners and
// what they hold are read here, the sections that stand alone (settings, backends) in sections.cc,
// and the YAML readers it uses are in yaml_read.h.
#include "config/loader.h"
#include "config/sections.h"
#include "config/yaml_read.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <initializer_list>

namespace fulcrum::config {
namespace {

using namespace yaml;  // the readers are this file's vocabulary

constexpr unsigned bit(Protocol p) { return 1u << static_cast<unsigned>(p); }
constexpr unsigned kL7 = bit(Protocol::kHttp) | bit(Protocol::kHttps) | bit(Protocol::kForwardProxy);

// Listener keys that only some protocols use. Refused elsewhere rather than ignored: a `tls`
// block on an http listener means the user believes it is encrypted.
struct ScopedKey {
  std::string_view key;
  unsigned protocols;
  std::string_view which;
  std::string_view hint;
};
constexpr ScopedKey kScopedListenerKeys[] = {
    {"tls", bit(Protocol::kHttps), "https", ""},
    {"routes", bit(Protocol::kHttp) | bit(Protocol::kHttps), "http and https", ""},
    {"backend", bit(Protocol::kTcp) | bit(Protocol::kUdp), "tcp and udp",
     "; http listeners name backends in routes"},
    {"proxy_protocol", bit(Protocol::kTcp), "tcp", ""},
    {"idle_timeout", bit(Protocol::kTcp) | bit(Protocol::kUdp), "tcp and udp",
     "; http listeners use protect.idle_timeout"},
    {"zones", bit(Protocol::kDns), "dns", ""},
    {"acl", bit(Protocol::kForwardProxy), "forward_proxy", ""},
    {"cache", bit(Protocol::kForwardProxy), "forward_proxy", "; http listeners put cache on a route"},
};

// Protect keys that need an HTTP request to act on.
constexpr std::string_view kL7ProtectKeys[] = {"header_timeout", "idle_timeout", "max_header_bytes",
                                               "max_body_bytes", "rules"};

struct BackendRef {
  std::string name;
  Mark mark;
};

class Parser {
 public:
  explicit Parser(Config& cfg) : cfg_(cfg) {}

  void parse(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull())
      fail(Mark{1, 1}, "config is empty: expected a map with listeners and backends");
    Map m(Field{"", root, Mark{1, 1}}, "config",
          {"workers", "shutdown_grace", "admin", "access_log", "listeners", "backends"});
    // In document order, so the first error reported is the first one in the file.
    for (const Field& f : m.fields()) {
      if (f.key == "workers")
        cfg_.workers = sections::workers(f);
      else if (f.key == "shutdown_grace")
        cfg_.shutdown_grace = duration(f, true);
      else if (f.key == "admin")
        cfg_.admin = sections::admin(f, cfg_.dir);
      else if (f.key == "access_log")
        cfg_.access_log = sections::access_log(f, cfg_.dir);
      else if (f.key == "listeners")
        listeners(f);
      else if (f.key == "backends")
        backends(f);
    }
    for (const BackendRef& ref : refs_)
      if (cfg_.find_backend(ref.name) == nullptr) fail(ref.mark, "unknown backend " + in_quotes(ref.name));
    check_binds();
  }

 private:
  std::string path(const Field& f) { return file_path(f, cfg_.dir); }

  void ref(std::string name, Mark mark) { refs_.push_back({std::move(name), mark}); }

  // ---- listeners

  // Appends `item` to `list` unless an earlier one has its name: the second of the two is the
  // error, pointed at by its name.
  template <typename T>
  void add_named(std::vector<T>& list, T item, const char* what) {
    for (const T& seen : list)
      if (seen.name == item.name)
        fail(name_mark_, std::string("duplicate ") + what + " " + in_quotes(item.name) + " (first at line " +
                             std::to_string(seen.mark.line) + ")");
    list.push_back(std::move(item));
  }

  void listeners(const Field& f) {
    for (const Field& item : list(f)) add_named(cfg_.listeners, listener(item), "listener");
  }

  Listener listener(const Field& f) {
    Map m(f, "listener",
          {"name", "bind", "protocol", "tls", "protect", "routes", "backend", "proxy_protocol",
           "idle_timeout", "zones", "acl", "cache"});
    Listener l;
    l.mark = m.mark();
    const Field& name_field = m.need("name");
    l.name = name(name_field);
    name_mark_ = name_field.mark();
    const Field& b = m.need("bind");
    l.bind = bind_address(b);
    l.bind_mark = b.mark();
    l.protocol_mark = l.mark;
    if (const Field* p = m.get("protocol")) {
      l.protocol = protocol(*p);
      l.protocol_mark = p->mark();
    }
    const std::string proto = protocol_name(l.protocol);
    const std::string what = proto + " listener " + in_quotes(l.name);
    for (const ScopedKey& k : kScopedListenerKeys) {
      const Field* kf = m.get(k.key);
      if (kf && !(k.protocols & bit(l.protocol)))
        fail(kf->key_mark, in_quotes(k.key) + " is only for " + std::string(k.which) + " listeners, and " +
                               in_quotes(l.name) + " is " + proto + std::string(k.hint));
    }

    if (const Field* t = m.get("tls")) {
      for (const Field& item : list(*t)) l.tls.push_back(tls_cert(item));
      if (l.tls.empty()) fail(t->mark(), "'tls' needs at least one certificate");
    } else if (l.protocol == Protocol::kHttps) {
      fail(l.mark, what + " needs 'tls' with at least one certificate");
    }

    if (const Field* p = m.get("protect")) l.protect = protect(*p, l.protocol, l.name);

    if (const Field* r = m.get("routes")) {
      routes(*r, &l.routes);
    } else if (l.protocol == Protocol::kHttp || l.protocol == Protocol::kHttps) {
      fail(l.mark, what + " needs 'routes'");
    }

    if (const Field* be = m.get("backend")) {
      l.backend = str(*be);
      l.backend_mark = be->mark();
      ref(l.backend, l.backend_mark);
    } else if (l.protocol == Protocol::kTcp || l.protocol == Protocol::kUdp) {
      fail(l.mark, what + " needs 'backend'");
    }

    if (const Field* pp = m.get("proxy_protocol")) {
      std::string s = str(*pp);
      if (s == "off")
        l.proxy_protocol = ProxyProtocol::kOff;
      else if (s == "v1")
        l.proxy_protocol = ProxyProtocol::kV1;
      else if (s == "v2")
        l.proxy_protocol = ProxyProtocol::kV2;
      else
        fail(pp->mark(), "bad proxy_protocol " + in_quotes(s) + ": expected off, v1 or v2");
    }

    if (const Field* it = m.get("idle_timeout")) l.idle_timeout = duration(*it, false);

    if (const Field* z = m.get("zones")) {
      for (const Field& item : list(*z)) {
        Mark zone_name_mark;
        DnsZone zone = dns_zone(item, &zone_name_mark);
        for (const DnsZone& seen : l.zones)
          if (seen.name == zone.name)
            fail(zone_name_mark, "duplicate zone " + in_quotes(zone.name) + " (first at line " +
                                     std::to_string(seen.mark.line) + ")");
        l.zones.push_back(std::move(zone));
      }
      if (l.zones.empty()) fail(z->mark(), "'zones' needs at least one zone");
    } else if (l.protocol == Protocol::kDns) {
      fail(l.mark, what + " needs 'zones'");
    }

    if (const Field* a = m.get("acl")) l.acl = acl(*a);
    if (const Field* c = m.get("cache")) l.cache = cache(*c);
    return l;
  }

  static Protocol protocol(const Field& f) {
    std::string s = str(f);
    static constexpr Protocol kAll[] = {Protocol::kHttp, Protocol::kHttps, Protocol::kTcp,
                                        Protocol::kUdp,  Protocol::kDns,   Protocol::kForwardProxy};
    for (Protocol p : kAll)
      if (s == protocol_name(p)) return p;
    fail(f.mark(),
         "unknown protocol " + in_quotes(s) + ": expected http, https, tcp, udp, dns or forward_proxy");
  }

  TlsCert tls_cert(const Field& f) {
    Map m(f, "tls certificate", {"cert", "key"});
    TlsCert t;
    t.mark = m.mark();
    t.cert = path(m.need("cert"));
    t.key = path(m.need("key"));
    return t;
  }

  Protect protect(const Field& f, Protocol protocol, const std::string& listener) {
    Map m(f, "protect",
          {"rate", "burst", "max_conns_per_client", "header_timeout", "idle_timeout", "max_header_bytes",
           "max_body_bytes", "allow", "deny", "rules", "store"});
    if (!(kL7 & bit(protocol)))
      for (std::string_view k : kL7ProtectKeys)
        if (const Field* kf = m.get(k))
          fail(kf->key_mark, "protect " + in_quotes(k) +
                                 " needs an http, https or forward_proxy listener, and " +
                                 in_quotes(listener) + " is " + protocol_name(protocol));
    Protect p;
    p.mark = m.mark();
    if (const Field* r = m.get("rate")) p.rate = rate(*r);
    if (const Field* b = m.get("burst")) {
      if (!p.rate) fail(b->key_mark, "'burst' needs 'rate'");
      p.burst = num32(*b, 0);
    }
    if (const Field* c = m.get("max_conns_per_client")) p.max_conns_per_client = num32(*c, 0);
    if (const Field* t = m.get("header_timeout")) p.header_timeout = duration(*t, false);
    if (const Field* t = m.get("idle_timeout")) p.idle_timeout = duration(*t, false);
    if (const Field* s = m.get("max_header_bytes")) p.max_header_bytes = size(*s, false);
    if (const Field* s = m.get("max_body_bytes")) p.max_body_bytes = size(*s, true);
    if (const Field* a = m.get("allow"))
      for (const Field& item : list(*a)) p.allow.push_back(cidr(item));
    if (const Field* d = m.get("deny"))
      for (const Field& item : list(*d)) p.deny.push_back(cidr(item));
    if (const Field* r = m.get("rules"))
      for (const Field& item : list(*r)) p.rules.push_back(rule(item));
    if (const Field* s = m.get("store")) store(*s, &p);
    return p;
  }

  // `store: { redis: host:port }`; without it limits are kept in this process. The address is
  // numeric (like bind): a limit store that needs DNS could change under a reload.
  static void store(const Field& f, Protect* p) {
    Map m(f, "protect store", {"redis"});
    p->store_mark = m.mark();
    const Field& r = m.need("redis");
    std::string s = str(r);
    auto a = SocketAddress::parse(s, false);
    if (!a || a->port() == 0) fail(r.mark(), "bad redis address " + in_quotes(s) + ": expected e.g. 127.0.0.1:6379");
    p->store_redis = s;
    if (p->rate == std::nullopt && p->max_conns_per_client == 0)
      fail(f.key_mark, "'store' needs 'rate' or 'max_conns_per_client' to keep");
  }

  // A rule looks at exactly one thing: the target (path_regex), or one header or query parameter
  // whose value `regex` must match. The regex itself is compiled (and refused) by protect.
  static Rule rule(const Field& f) {
    Map m(f, "protect rule", {"path_regex", "header", "query", "regex", "action"});
    Rule r;
    r.mark = m.mark();
    int subjects = 0;
    if (const Field* p = m.get("path_regex")) r.path_regex = str(*p), ++subjects;
    if (const Field* h = m.get("header")) r.header = token(*h, "header name"), ++subjects;
    if (const Field* q = m.get("query")) r.query = str(*q), ++subjects;
    if (subjects != 1) fail(r.mark, "a protect rule needs exactly one of 'path_regex', 'header' or 'query'");
    const Field* re = m.get("regex");
    if (re && !r.path_regex.empty())
      fail(re->key_mark, "'regex' goes with 'header' or 'query', not 'path_regex'");
    if (!re && r.path_regex.empty()) fail(r.mark, "missing 'regex' in protect rule");
    if (re) r.regex = str(*re);
    if (const Field* a = m.get("action")) {
      r.action = str(*a);
      if (r.action != "deny" && r.action != "allow")
        fail(a->mark(), "bad action " + in_quotes(r.action) + ": expected deny or allow");
    }
    return r;
  }

  void routes(const Field& f, std::vector<Route>* out) {
    int catch_all_line = 0;
    for (const Field& item : list(f)) {
      Route r = route(item);
      // First match wins, so anything after a match-everything route is dead config.
      if (catch_all_line != 0)
        fail(r.mark, "this route is never used: the route at line " + std::to_string(catch_all_line) +
                         " matches every request");
      if (!r.match) catch_all_line = r.mark.line;
      out->push_back(std::move(r));
    }
    if (out->empty()) fail(f.mark(), "'routes' needs at least one route");
  }

  Route route(const Field& f) {
    Map m(f, "route", {"match", "backend", "static", "cache"});
    Route r;
    r.mark = m.mark();
    if (const Field* mf = m.get("match")) r.match = match(*mf);
    const Field* be = m.get("backend");
    const Field* st = m.get("static");
    if (be && st) fail(st->key_mark, "a route has either 'static' or 'backend', not both");
    if (!be && !st) fail(r.mark, "a route needs 'backend' or 'static'");
    if (be) {
      r.backend = str(*be);
      r.backend_mark = be->mark();
      ref(r.backend, r.backend_mark);
    }
    if (st) r.static_site = static_site(*st);
    if (const Field* c = m.get("cache")) {
      if (st) fail(c->key_mark, "'cache' is for routes with a backend; static files are served from disk");
      r.cache = cache(*c);
    }
    return r;
  }

  // An empty match ({}) matches everything, like no match at all; it is stored as none so the
  // router and the dead-route check above see one shape.
  static std::optional<Match> match(const Field& f) {
    Map m(f, "match", {"host", "path_prefix", "path_regex", "methods", "headers", "query", "cookies"});
    if (m.fields().empty()) return std::nullopt;
    Match x;
    x.mark = m.mark();
    if (const Field* h = m.get("host")) x.host = lower(str(*h));  // host names are case-insensitive
    if (const Field* p = m.get("path_prefix")) {
      x.path_prefix = str(*p);
      if (x.path_prefix.front() != '/') fail(p->mark(), "path_prefix must start with '/'");
    }
    if (const Field* p = m.get("path_regex")) x.path_regex = str(*p);
    if (const Field* ms = m.get("methods")) {
      for (const Field& item : list(*ms)) {
        std::string method = token(item, "method");
        // Methods are case-sensitive (RFC 9110 section 9.1): `get` would never match a GET.
        if (std::any_of(method.begin(), method.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
          fail(item.mark(),
               "method " + in_quotes(method) + " must be upper case: methods are case-sensitive");
        x.methods.push_back(method);
      }
      if (x.methods.empty()) fail(ms->mark(), "'methods' needs at least one method");
    }
    if (const Field* h = m.get("headers")) x.headers = key_values(*h, "header name", true);
    if (const Field* q = m.get("query")) x.query = key_values(*q, "query parameter", false);
    if (const Field* c = m.get("cookies")) x.cookies = key_values(*c, "cookie name", true);
    return x;
  }

  StaticSite static_site(const Field& f) {
    Map m(f, "static", {"root", "index", "fallback"});
    StaticSite s;
    s.mark = m.mark();
    s.root = path(m.need("root"));
    if (const Field* i = m.get("index")) {
      s.index = str(*i);
      if (s.index.find('/') != std::string::npos) fail(i->mark(), "'index' is a file name, without '/'");
    }
    if (const Field* fb = m.get("fallback")) {
      s.fallback = str(*fb);
      if (s.fallback.front() != '/') fail(fb->mark(), "'fallback' must start with '/', e.g. /index.html");
    }
    return s;
  }

  static Cache cache(const Field& f) {
    Map m(f, "cache", {"size", "default_ttl"});
    Cache c;
    c.mark = m.mark();
    if (const Field* s = m.get("size")) c.size = size(*s, false);
    if (const Field* t = m.get("default_ttl")) c.default_ttl = duration(*t, true);
    return c;
  }

  DnsZone dns_zone(const Field& f, Mark* name_mark) {
    Map m(f, "zone", {"name", "backend", "ttl", "answers"});
    DnsZone z;
    z.mark = m.mark();
    const Field& n = m.need("name");
    z.name = str(n);
    *name_mark = n.mark();
    if (!normalise_dns_name(&z.name))
      fail(n.mark(), "bad zone name " + in_quotes(n.text()) + ": expected a DNS name");
    const Field& be = m.need("backend");
    z.backend = str(be);
    z.backend_mark = be.mark();
    ref(z.backend, z.backend_mark);
    // RFC 2181 section 8: a TTL is 0 to 2^31 - 1. ANCOUNT is 16 bits.
    if (const Field* t = m.get("ttl")) z.ttl = num32(*t, 0, 2147483647);
    if (const Field* a = m.get("answers")) z.answers = num32(*a, 0, 65535);
    return z;
  }

  static Acl acl(const Field& f) {
    Map m(f, "acl", {"deny", "allow_ports"});
    Acl a;
    a.mark = m.mark();
    if (const Field* d = m.get("deny")) {
      for (const Field& item : list(*d)) {
        std::string pattern = str(item);
        std::string host = pattern.starts_with("*.") ? pattern.substr(2) : pattern;
        if (!normalise_dns_name(&host))
          fail(item.mark(), "bad acl pattern " + in_quotes(pattern) + ": expected a host name or *.suffix");
        a.deny.push_back(pattern.starts_with("*.") ? "*." + host : host);
      }
    }
    if (const Field* p = m.get("allow_ports"))
      for (const Field& item : list(*p)) a.allow_ports.push_back(static_cast<uint16_t>(num(item, 1, 65535)));
    return a;
  }

  // ---- backends (each one read by sections::backend)

  void backends(const Field& f) {
    for (const Field& item : list(f))
      add_named(cfg_.backends, sections::backend(item, cfg_.dir, &name_mark_), "backend");
  }

  // ---- cross checks

  static bool uses_tcp(Protocol p) { return p != Protocol::kUdp; }
  static bool uses_udp(Protocol p) { return p == Protocol::kUdp || p == Protocol::kDns; }

  static bool overlap(const SocketAddress& a, const SocketAddress& b) {
    if (a.port() == 0 || a.port() != b.port() || a.family() != b.family()) return false;
    return a.ip_bytes() == b.ip_bytes() || is_unspecified(a) || is_unspecified(b);
  }

  // Two sockets on one port would not fail to bind (workers set SO_REUSEPORT), they would quietly
  // split the traffic between two listeners. Port 0 (tests: any free port) never clashes.
  void check_binds() const {
    const auto& ls = cfg_.listeners;
    for (size_t i = 0; i < ls.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        bool same_transport = (uses_tcp(ls[i].protocol) && uses_tcp(ls[j].protocol)) ||
                              (uses_udp(ls[i].protocol) && uses_udp(ls[j].protocol));
        if (same_transport && overlap(ls[i].bind, ls[j].bind))
          fail(ls[i].bind_mark, "bind " + ls[i].bind.to_string() + " clashes with listener " +
                                    in_quotes(ls[j].name) + " on " + ls[j].bind.to_string());
      }
      if (cfg_.admin && uses_tcp(ls[i].protocol) && overlap(ls[i].bind, cfg_.admin->listen))
        fail(ls[i].bind_mark, "bind " + ls[i].bind.to_string() + " clashes with admin listen " +
                                  cfg_.admin->listen.to_string());
    }
  }

  Config& cfg_;
  std::vector<BackendRef> refs_;
  Mark name_mark_;  // of the listener or backend just parsed, for duplicate-name errors
};

std::string folder_of(const std::string& file) {
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(file).parent_path();
  std::filesystem::path abs = std::filesystem::absolute(parent.empty() ? "." : parent, ec);
  if (ec) return parent.empty() ? "." : parent.string();
  return abs.lexically_normal().string();
}

}  // namespace

LoadResult load_text(std::string_view yaml, const std::string& path) {
  auto cfg = std::make_shared<Config>();
  cfg->file = path;
  cfg->dir = folder_of(path);
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    Parser(*cfg).parse(root);
  } catch (const Failure& f) {
    return ConfigError{path, f.mark, f.message};
  } catch (const YAML::Exception& e) {
    return ConfigError{path, mark_of(e.mark), "YAML syntax error: " + e.msg};
  } catch (const std::exception& e) {
    return ConfigError{path, Mark{}, std::string("cannot load config: ") + e.what()};
  } catch (...) {
    return ConfigError{path, Mark{}, "cannot load config: unexpected error"};
  }
  return std::shared_ptr<const Config>(std::move(cfg));
}

LoadResult load_file(const std::string& path) {
  auto cannot = [&](int err) {
    return ConfigError{path, Mark{}, "cannot read " + path + ": " + std::strerror(err)};
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cannot(errno);
  std::string text;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return cannot(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return load_text(text, path);
}

}  // namespace fulcrum::config
