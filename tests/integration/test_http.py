"""`protocol: http` listeners end to end: the built binary between real clients (curl, raw
sockets) and real servers (tests/support/backend.py in http mode, nginx). Routing, forwarding
headers, keep-alive and pipelining, upstream pooling, streamed bodies (1 GiB each way with bounded
memory), Expect/HEAD/1xx/Upgrade, request smuggling refused, fulcrum's own errors, every balancing
algorithm and hash key, least_time, sticky sessions, retries and timeouts.

Backends get `--request-log`, so a test can say exactly what reached each server (and that a
refused request reached none). Every wait is bounded.

FULCRUM_HTTP_BIG_MIB sets the size of the big transfers (default 1024: 1 GiB each way)."""
import collections
import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from harness import connect, free_port, log_lines, recv_all, tcp_config, wait_until

BIG_MIB = int(os.environ.get("FULCRUM_HTTP_BIG_MIB", "1024"))
BLOCK = bytes(range(256)) * 256  # 64 KiB: the pattern backend.py's /big sends
CURL = shutil.which("curl")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


# ---------------------------------------------------------------------------------------------
# config and processes

def servers(*bs, weights=None):
    out = []
    for i, b in enumerate(bs):
        s = {"name": getattr(b, "name", "s%d" % (i + 1)), "address": b if isinstance(b, str) else b.address}
        if weights:
            s["weight"] = weights[i]
        out.append(s)
    return out


def proxy(fulcrum, backends, routes=None, protect=None, workers=2, **top):
    """Starts fulcrum with one http listener; `backends` is {name: backend dict}. Returns
    (fulcrum, port). Without `routes`, everything goes to the first backend."""
    port = free_port()
    listener = {"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "http",
                "routes": routes or [{"backend": next(iter(backends))}]}
    if protect:
        listener["protect"] = protect
    return fulcrum(tcp_config(backends, [listener], workers=workers, **top)), port


def one_backend(fulcrum, bs, balance="round_robin", workers=2, protect=None, **backend_kw):
    b = {"balance": balance}
    b.update(backend_kw)
    b["servers"] = servers(*bs)
    return proxy(fulcrum, {"app": b}, protect=protect, workers=workers)


def requests_seen(b):
    """[(conn id, method, target)] of the requests `b` read whole."""
    return [tuple(x) for x in log_lines(b, "req")]


def conns_seen(b):
    return len(log_lines(b, "conn"))


def dead_address():
    """A loopback address where nothing listens (connects are refused)."""
    return "127.0.0.1:%d" % free_port()


# ---------------------------------------------------------------------------------------------
# a small HTTP/1.1 client that shows everything (interim responses, framing, the close)

class Response:
    def __init__(self, status, reason, headers, body, interim, version):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.interim, self.version = interim, version

    def header(self, name, default=None):
        vals = self.all(name)
        return vals[-1] if vals else default

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def backend(self):
        return self.header("X-Backend")

    def cookies(self):
        """{name: value} from the Set-Cookie fields."""
        out = {}
        for v in self.all("Set-Cookie"):
            k, _, rest = v.partition("=")
            out[k.strip()] = rest.split(";", 1)[0]
        return out

    def __repr__(self):
        return "<Response %s %s %r>" % (self.status, self.headers, self.body[:200])


def read_head(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    assert line.endswith(b"\r\n"), line
    version, status, reason = (line[:-2].decode("latin-1").split(" ", 2) + [""])[:3]
    headers = []
    while True:
        h = f.readline()
        assert h.endswith(b"\r\n"), (line, h)
        if h == b"\r\n":
            break
        k, _, v = h[:-2].decode("latin-1").partition(":")
        assert k and k == k.strip(), h
        headers.append((k, v.strip()))
    return version, int(status), reason, headers


def read_response(f, method="GET"):
    """One response from a buffered socket file; 1xx interim responses are collected in .interim."""
    interim = []
    while True:
        version, status, reason, headers = read_head(f)
        if 100 <= status < 200 and status != 101:
            interim.append((status, headers))
            continue
        break
    r = Response(status, reason, headers, b"", interim, version)
    te = (r.header("Transfer-Encoding") or "").lower()
    if method == "HEAD" or status in (101, 204, 304):
        return r
    if te.endswith("chunked"):
        body = bytearray()
        while True:
            size_line = f.readline()
            assert size_line.endswith(b"\r\n"), size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            assert f.read(2) == b"\r\n"
        r.body = bytes(body)
    elif r.header("Content-Length") is not None:
        n = int(r.header("Content-Length"))
        r.body = f.read(n)
        assert len(r.body) == n, "short body: %d of %d" % (len(r.body), n)
    else:
        r.body = f.read()
    return r


def build_request(method, path, headers=None, body=b"", host="test", version="HTTP/1.1"):
    hdrs = [("Host", host)] if host is not None else []
    hdrs += list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n%s\r\n" % (method, path, version, "".join("%s: %s\r\n" % kv for kv in hdrs))
    return head.encode("latin-1") + body


class Client:
    """One keep-alive client connection."""

    def __init__(self, port, src=None, timeout=10.0):
        self.sock = connect(port, src=src, timeout=timeout)
        self.f = self.sock.makefile("rb")

    def request(self, method, path, headers=None, body=b"", **kw):
        self.sock.sendall(build_request(method, path, headers, body, **kw))
        return read_response(self.f, method)

    def closed_by_peer(self, timeout=3.0):
        """True when the server closed its side (EOF) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except OSError:
            return True

    def close(self):
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(port, method, path, headers=None, body=b"", src=None, timeout=10.0, **kw):
    """One request on a new connection."""
    with Client(port, src=src, timeout=timeout) as c:
        return c.request(method, path, headers, body, **kw)


def raw_exchange(port, data, timeout=5.0):
    """Sends bytes, returns everything the server sends until it closes."""
    with connect(port, timeout=timeout) as s:
        s.sendall(data)
        return recv_all(s, timeout=timeout)


def curl(*args, timeout=60, **kw):
    return subprocess.run([CURL, "-sS", *map(str, args)], capture_output=True, timeout=timeout, **kw)


# ---------------------------------------------------------------------------------------------
# routing

def test_routing_first_match_wins_and_404(fulcrum, web):
    names = ["host", "prefix", "regex", "methods", "header", "query", "cookie", "first", "second"]
    bs = {n: web(n) for n in names}
    backends = {n: {"servers": servers(b)} for n, b in bs.items()}
    routes = [
        {"match": {"host": "api.example.com"}, "backend": "host"},
        {"match": {"path_prefix": "/static/"}, "backend": "prefix"},
        {"match": {"path_regex": r"\.(png|jpg)$"}, "backend": "regex"},
        {"match": {"path_prefix": "/items/", "methods": ["DELETE", "PUT"]}, "backend": "methods"},
        {"match": {"headers": {"X-Canary": "1"}}, "backend": "header"},
        {"match": {"query": {"v": "2"}}, "backend": "query"},
        {"match": {"cookies": {"beta": "1"}}, "backend": "cookie"},
        {"match": {"path_prefix": "/both/", "methods": ["GET"]}, "backend": "first"},
        {"match": {"path_prefix": "/both/"}, "backend": "second"},
    ]
    f, port = proxy(fulcrum, backends, routes=routes)
    cases = [
        (("GET", "/", {"Host": "api.example.com"}), "host"),
        (("GET", "/static/x", {"Host": "API.Example.com:8080"}), "host"),  # host first, any case, port ignored
        (("GET", "/static/app.js", {}), "prefix"),
        (("GET", "/img/a.png", {}), "regex"),
        (("GET", "/img/a.png?x=1", {}), "regex"),  # the regex sees the path, not the query
        (("DELETE", "/items/1", {}), "methods"),
        (("PUT", "/items/1", {}), "methods"),
        (("GET", "/x", {"X-Canary": "1"}), "header"),
        (("GET", "/x?a=1&v=2", {}), "query"),
        (("GET", "/x", {"Cookie": "a=b; beta=1"}), "cookie"),
        (("GET", "/both/a", {}), "first"),
        (("POST", "/both/a", {}), "second"),
    ]
    for (method, path, headers), want in cases:
        hdrs = {"Host": "www.example.com"}
        hdrs.update(headers)
        with Client(port) as c:
            r = c.request(method, path, [(k, v) for k, v in hdrs.items()], host=None)
        assert r.backend == want, (method, path, headers, r)  # the backend answered (200 or its 404)
    # Nothing matches: 404 from fulcrum itself, on a connection that stays usable.
    with Client(port) as c:
        for method, path, headers in [("GET", "/items/1", {}), ("GET", "/x", {"X-Canary": "2"}),
                                      ("GET", "/x?v=3", {}), ("GET", "/x", {"Cookie": "beta=0"}),
                                      ("HEAD", "/nothing", {})]:
            r = c.request(method, path, headers)
            assert r.status == 404 and r.backend is None, (method, path, r)
            assert r.header("Content-Type", "").startswith("text/plain")
            assert method == "HEAD" or b"no route" in r.body
        assert c.request("GET", "/static/ok").backend == "prefix"
    for n in ["methods", "header", "query", "cookie"]:
        assert len(requests_seen(bs[n])) == sum(1 for _, want in cases if want == n)


# ---------------------------------------------------------------------------------------------
# forwarding headers

def test_forwarded_headers(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    r = request(port, "GET", "/headers?x=1", [("Host", "shop.example.com:8080"),
                                              ("X-Forwarded-For", "203.0.113.7"),
                                              ("X-Forwarded-For", "198.51.100.1, 10.0.0.1"),
                                              ("Via", "1.1 edge"),
                                              ("X-Forwarded-Proto", "gopher"),
                                              ("X-Forwarded-Host", "evil.example"),
                                              ("User-Agent", "t/1")], host=None)
    assert r.status == 200
    doc = json.loads(r.body)
    hdrs = collections.defaultdict(list)
    for k, v in doc["headers"]:
        hdrs[k.lower()].append(v)
    assert doc["target"] == "/headers?x=1"
    assert hdrs["host"] == ["shop.example.com:8080"]
    assert hdrs["x-forwarded-for"] == ["203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1"]
    assert hdrs["x-forwarded-proto"] == ["http"]
    assert hdrs["x-forwarded-host"] == ["shop.example.com:8080"]
    assert hdrs["via"] == ["1.1 edge, 1.1 fulcrum"]
    assert hdrs["user-agent"] == ["t/1"]
    # A request without those fields gets them too; an HTTP/1.0 one says so in Via.
    r = request(port, "GET", "/headers", version="HTTP/1.0")
    hdrs = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert hdrs["x-forwarded-for"] == "127.0.0.1" and hdrs["via"] == "1.0 fulcrum"
    # Absolute-form targets reach the server in origin form.
    r = request(port, "GET", "http://shop.example.com/headers?q=1", host="shop.example.com")
    assert json.loads(r.body)["target"] == "/headers?q=1"
    # ... and their authority is the host, whatever Host says (RFC 9112 3.2.2).
    r = request(port, "GET", "http://real.example/headers", host="other.example")
    hdrs = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert hdrs["host"] == "real.example" and hdrs["x-forwarded-host"] == "real.example"


def test_hop_by_hop_fields_not_forwarded(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        r = c.request("GET", "/headers", [("Host", "t"), ("Connection", "keep-alive, X-Private, X-Trace"),
                                          ("X-Private", "secret"), ("X-Trace", "1"), ("Keep-Alive", "timeout=5"),
                                          ("TE", "trailers"), ("Proxy-Connection", "keep-alive"),
                                          ("Proxy-Authorization", "Basic eDp5"), ("Trailer", "X-Sum"),
                                          ("X-Kept", "yes")], host=None)
        assert r.status == 200
        names = [k.lower() for k, _ in json.loads(r.body)["headers"]]
        for gone in ["connection", "x-private", "x-trace", "keep-alive", "te", "proxy-connection",
                     "proxy-authorization", "trailer"]:
            assert gone not in names, (gone, names)
        assert "x-kept" in names
        # The connection stayed open (keep-alive was ours to honour, not to forward).
        assert c.request("GET", "/").status == 200


# ---------------------------------------------------------------------------------------------
# keep-alive, pipelining, pooling

def test_keepalive_and_pipelining(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        for i in range(5):
            r = c.request("GET", "/?i=%d" % i)
            assert r.status == 200 and r.body == b"a\n"
        # Three requests in one write; the first is the slowest, yet answers come in order.
        c.sock.sendall(build_request("GET", "/delay?ms=300") + build_request("POST", "/echo", body=b"second") +
                       build_request("GET", "/status?code=201"))
        r1, r2, r3 = (read_response(c.f) for _ in range(3))
        assert (r1.status, r1.body) == (200, b"a\n")
        assert (r2.status, r2.body) == (200, b"second")
        assert r3.status == 201
        assert c.request("GET", "/").status == 200
    # Pipelined, then the client half-closes: every request is still answered, then EOF.
    with connect(port) as s:
        s.sendall(build_request("GET", "/?p=1") + build_request("GET", "/?p=2") + build_request("GET", "/?p=3"))
        s.shutdown(socket.SHUT_WR)
        data = recv_all(s)
    assert data.count(b"HTTP/1.1 200 OK") == 3, data
    targets = [t for _, _, t in requests_seen(b)]
    assert targets[-3:] == ["/?p=1", "/?p=2", "/?p=3"]


def test_upstream_connections_reused(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    n = 0
    for _ in range(10):  # ten client connections, four requests each
        with Client(port) as c:
            for _ in range(4):
                assert c.request("GET", "/").status == 200
                n += 1
    assert len(requests_seen(b)) == n
    # Two workers, each with its own pool: at most one connection each for sequential requests.
    assert conns_seen(b) <= 2, conns_seen(b)
    # A backend that closes after each response is not reused (and nothing fails).
    for _ in range(3):
        r = request(port, "GET", "/", [("Connection", "close")])
        assert r.status == 200 and r.header("Connection") == "close"


def test_nginx_backend_keepalive(fulcrum, tmp_path):
    if not NGINX:
        pytest.skip("nginx not installed")
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"hello from nginx\n")
    (root / "big.bin").write_bytes(BLOCK * 64)  # 4 MiB
    nport = free_port()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
daemon off;
master_process off;
worker_processes 1;
error_log %(d)s/logs/error.log;
pid %(d)s/nginx.pid;
events { worker_connections 256; }
http {
  access_log %(d)s/logs/access.log combined;
  log_format conn '$connection $request';
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  server {
    listen 127.0.0.1:%(p)d;
    access_log %(d)s/logs/conn.log conn;
    keepalive_requests 10000;
    root %(d)s/www;
  }
}
""" % {"d": tmp_path, "p": nport})
    ng = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: _can_connect(nport), 10, what="nginx listening")
        f, port = one_backend(fulcrum, ["127.0.0.1:%d" % nport])
        for _ in range(5):
            with Client(port) as c:
                for _ in range(6):
                    r = c.request("GET", "/index.html")
                    assert r.status == 200 and r.body == b"hello from nginx\n"
                r = c.request("HEAD", "/big.bin")
                assert r.status == 200 and r.header("Content-Length") == str(len(BLOCK) * 64) and r.body == b""
                r = c.request("GET", "/big.bin")
                assert r.status == 200 and r.body == BLOCK * 64
                r = c.request("GET", "/missing")
                assert r.status == 404
        lines = (tmp_path / "logs" / "conn.log").read_text().splitlines()
        assert len(lines) == 45
        conns = {line.split()[0] for line in lines}
        assert len(conns) <= 2, conns  # one pooled connection per worker
    finally:
        ng.kill()
        ng.wait(10)


def _can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# bodies

def test_bodies_content_length_and_chunked(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    payload = os.urandom(300_000)
    with Client(port) as c:
        r = c.request("POST", "/echo", body=payload)
        assert r.status == 200 and r.body == payload
        # A chunked request body, in odd pieces, with an extension and a trailer.
        c.sock.sendall(build_request("PUT", "/sha256", [("Transfer-Encoding", "chunked")]))
        pieces = [payload[:1], payload[1:70000], payload[70000:]]
        for p in pieces:
            c.sock.sendall(b"%x;note=1\r\n" % len(p) + p + b"\r\n")
            time.sleep(0.01)
        c.sock.sendall(b"0\r\nX-Sum: 1\r\n\r\n")
        r = read_response(c.f)
        assert json.loads(r.body) == {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
        # A chunked response goes on chunked to a 1.1 client.
        r = c.request("GET", "/big?bytes=200000&chunked=1")
        assert r.status == 200 and r.header("Transfer-Encoding") == "chunked"
        assert r.body == (BLOCK * 4)[:200000]
        assert c.request("GET", "/").status == 200  # still in step after it
    # To an HTTP/1.0 client the data alone goes, and the end of the body is the close.
    r = request(port, "GET", "/big?bytes=150000&chunked=1", version="HTTP/1.0")
    assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
    assert r.header("Connection") == "close" and r.body == (BLOCK * 3)[:150000]
    # A response delimited by the backend's close is forwarded whole, then the client's
    # connection closes too.
    r = request(port, "GET", "/until-close?bytes=100000")
    assert r.status == 200 and r.body == (BLOCK * 2)[:100000]
    # curl: POST with Content-Length, and a chunked upload.
    if CURL:
        out = curl("--data-binary", "@-", "http://127.0.0.1:%d/sha256" % port, input=payload)
        assert json.loads(out.stdout)["sha256"] == hashlib.sha256(payload).hexdigest()
        out = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "http://127.0.0.1:%d/sha256" % port,
                   input=payload)
        assert json.loads(out.stdout)["bytes"] == len(payload)


@functools.lru_cache(maxsize=4)
def pattern_sha256(n):
    h = hashlib.sha256()
    for _ in range(n // len(BLOCK)):
        h.update(BLOCK)
    return h.hexdigest()


class RssWatch:
    """Samples a process's VmRSS every 20 ms on a thread; .peak_kib when stopped."""

    def __init__(self, f):
        self.f, self.peak_kib, self.stop_ = f, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_.is_set():
            try:
                self.peak_kib = max(self.peak_kib, self.f.rss_kib())
            except OSError:
                pass
            time.sleep(0.02)

    def stop(self):
        self.stop_.set()
        self.t.join(5)
        return self.peak_kib


def test_big_transfers_streamed_with_bounded_memory(fulcrum, web):
    """BIG_MIB (1 GiB by default) down and up, Content-Length and chunked, sha256 checked, with
    fulcrum's resident memory sampled all along."""
    if not CURL:
        pytest.skip("curl not installed")
    n = BIG_MIB * 1024 * 1024
    want = pattern_sha256(n)
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    watch = RssWatch(f)
    timings = {}
    try:
        # Download, Content-Length then chunked, through curl.
        for chunked in (0, 1):
            t0 = time.monotonic()
            p = subprocess.Popen([CURL, "-sS", "http://127.0.0.1:%d/big?bytes=%d&chunked=%d" % (port, n, chunked)],
                                 stdout=subprocess.PIPE)
            h, got = hashlib.sha256(), 0
            while True:
                data = p.stdout.read(1 << 20)
                if not data:
                    break
                h.update(data)
                got += len(data)
            assert p.wait(60) == 0
            assert got == n and h.hexdigest() == want, chunked
            timings["down chunked=%d" % chunked] = time.monotonic() - t0
        # Upload, chunked: curl -T - streams stdin chunked, and asks "Expect: 100-continue".
        t0 = time.monotonic()
        p = subprocess.Popen([CURL, "-sS", "-X", "POST", "-T", "-", "http://127.0.0.1:%d/sha256" % port],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(n // len(BLOCK)):
            p.stdin.write(BLOCK)
        p.stdin.close()
        out = p.stdout.read()
        assert p.wait(60) == 0
        assert json.loads(out) == {"sha256": want, "bytes": n}
        timings["up chunked"] = time.monotonic() - t0
        # Upload with Content-Length from a raw socket that waits for "100 Continue" first.
        t0 = time.monotonic()
        with Client(port, timeout=60) as c:
            c.sock.sendall(build_request("POST", "/sha256", [("Content-Length", str(n)),
                                                             ("Expect", "100-continue")]))
            c.sock.settimeout(5)
            assert c.f.readline() == b"HTTP/1.1 100 Continue\r\n" and c.f.readline() == b"\r\n"
            c.sock.settimeout(60)
            view = memoryview(BLOCK * 16)
            for _ in range(n // len(view)):
                c.sock.sendall(view)
            r = read_response(c.f)
        assert json.loads(r.body) == {"sha256": want, "bytes": n}
        timings["up content-length"] = time.monotonic() - t0
    finally:
        peak = watch.stop()
    print("big transfers of %d MiB: %s; fulcrum peak RSS %d KiB" % (
        BIG_MIB, ", ".join("%s %.2fs" % kv for kv in timings.items()), peak))
    assert peak < 100 * 1024, "fulcrum RSS peaked at %d KiB" % peak


# ---------------------------------------------------------------------------------------------
# Expect, HEAD, 1xx, Connection: close, Upgrade

def test_expect_100_continue(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        c.sock.sendall(build_request("POST", "/echo", [("Content-Length", "5"), ("Expect", "100-continue")]))
        c.sock.settimeout(2)
        t0 = time.monotonic()
        assert c.f.readline() == b"HTTP/1.1 100 Continue\r\n" and c.f.readline() == b"\r\n"
        assert time.monotonic() - t0 < 0.9  # curl would otherwise wait a second
        c.sock.sendall(b"hello")
        r = read_response(c.f)
        assert r.status == 200 and r.body == b"hello"
        # The expectation was ours to meet: the backend did not see it.
        r = c.request("POST", "/headers", [("Content-Length", "2"), ("Expect", "100-continue")], body=b"hi")
        assert r.interim == [] or r.interim[0][0] == 100
        assert "expect" not in [k.lower() for k, _ in json.loads(r.body)["headers"]]
    if CURL:
        # curl sends Expect: 100-continue for bodies over 1 MiB and waits up to 1 s for the 100.
        body = os.urandom(2 << 20)
        t0 = time.monotonic()
        out = curl("-v", "--data-binary", "@-", "http://127.0.0.1:%d/sha256" % port, input=body)
        took = time.monotonic() - t0
        assert b"Expect: 100-continue" in out.stderr and b"HTTP/1.1 100 Continue" in out.stderr
        assert json.loads(out.stdout)["sha256"] == hashlib.sha256(body).hexdigest()
        assert took < 0.9, took


def test_head(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        r = c.request("HEAD", "/big?bytes=12345")
        assert r.status == 200 and r.header("Content-Length") == "12345" and r.body == b""
        r = c.request("HEAD", "/big?bytes=12345&chunked=1")
        assert r.status == 200 and r.body == b""
        r = c.request("GET", "/")  # no stray body bytes before this one
        assert r.status == 200 and r.body == b"a\n"
    if CURL:
        out = curl("-I", "http://127.0.0.1:%d/big?bytes=99" % port)
        assert out.returncode == 0 and b"Content-Length: 99" in out.stdout


def test_1xx_interim_responses(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        r = c.request("GET", "/early-hints")
        assert r.status == 200 and r.body == b"a\n"
        assert [s for s, _ in r.interim] == [103]
        assert ("Link", "</style.css>; rel=preload") in r.interim[0][1]
        assert c.request("GET", "/").status == 200
    # An HTTP/1.0 client cannot take an interim response: it gets the final one alone.
    data = raw_exchange(port, build_request("GET", "/early-hints", version="HTTP/1.0"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"103" not in data.split(b"\r\n")[0]


def test_connection_close(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        r = c.request("GET", "/", [("Connection", "close")])
        assert r.status == 200 and r.header("Connection") == "close"
        assert c.closed_by_peer()
    # HTTP/1.0 without keep-alive: closed after the response; with keep-alive: kept.
    with Client(port) as c:
        r = c.request("GET", "/", version="HTTP/1.0")
        assert r.status == 200 and r.header("Connection") == "close" and c.closed_by_peer()
    with Client(port) as c:
        r = c.request("GET", "/", [("Connection", "keep-alive")], version="HTTP/1.0")
        assert r.status == 200 and r.header("Connection") == "keep-alive"
        assert c.request("GET", "/", [("Connection", "keep-alive")], version="HTTP/1.0").status == 200
    # A body delimited by the backend's close ends the client's connection too.
    with Client(port) as c:
        r = c.request("GET", "/until-close?bytes=10")
        assert r.status == 200 and r.header("Connection") == "close" and c.closed_by_peer()
    # A backend's "Connection: close" on a framed response ends the upstream connection only.
    with Client(port) as c:
        before = conns_seen(b)
        for _ in range(3):
            r = c.request("GET", "/?close=1")
            assert r.status == 200 and r.header("Connection") is None
        # The first may have used a pooled connection; the later ones needed fresh ones.
        assert conns_seen(b) - before >= 2
        assert c.request("GET", "/").status == 200


def test_websocket_upgrade_tunnel(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with Client(port) as c:
        c.sock.sendall(build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                    ("Sec-WebSocket-Version", "13")]))
        r = read_response(c.f)
        assert r.status == 101 and r.header("Upgrade") == "websocket" and r.header("Connection") == "Upgrade"
        assert r.backend == "a"
        # Raw bytes both ways now, including ones that look like HTTP.
        for msg in [b"\x81\x05hello", b"GET / HTTP/1.1\r\n\r\n", os.urandom(100000)]:
            c.sock.sendall(msg)
            got = c.f.read(len(msg))
            assert got == msg
        c.sock.shutdown(socket.SHUT_WR)  # half-close travels through; the backend ends too
        assert c.f.read() == b""
    # Upgrade without "Connection: upgrade" is no upgrade request: the field is not passed on.
    r = request(port, "GET", "/ws", [("Upgrade", "websocket")])
    assert r.status == 404 and r.backend == "a"


# ---------------------------------------------------------------------------------------------
# request smuggling: refused with 400, the connection closed, nothing reaches a backend

SMUGGLING = {
    "cl_and_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\nG",
    "te_and_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
                 b"0\r\n\r\nG",
    "two_cls": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "te_not_last_chunked": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                           b"5\r\nhello\r\n0\r\n\r\n",
    "te_chunked_twice": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_in_http10": b"POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n",
    "space_before_colon": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello",
    "tab_before_colon": b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
    "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_junk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: t\n\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
    "bad_method": b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad_version": b"GET / HTTP/1.x\r\nHost: t\r\n\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space_in_target": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    "negative_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
}


@pytest.fixture(scope="module")
def smuggling_target(tmp_path_factory):
    """One fulcrum and one backend for every vector (starting them per vector costs more than
    the test). The backend's request log must stay empty."""
    import harness
    d = tmp_path_factory.mktemp("smuggling")
    log = d / "requests.log"
    b = harness.Backend("http", "a", log_dir=d, extra_args=["--request-log", str(log)])
    b.log_path = log
    port = free_port()
    f = harness.Fulcrum(d / "fulcrum")
    cfg = tcp_config({"app": {"servers": servers(b)}},
                     [{"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "http", "routes": [{"backend": "app"}]}])
    try:
        f.start(cfg)
        yield f, port, b
        assert f.stop() == 0
    finally:
        f.kill()
        b.kill()


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_refused(smuggling_target, name):
    f, port, b = smuggling_target
    conns, reqs = conns_seen(b), len(requests_seen(b))
    data = raw_exchange(port, SMUGGLING[name])
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (name, data[:200])
    assert b"Connection: close\r\n" in data
    assert data.count(b"HTTP/1.1") == 1  # nothing after the 400: the rest was never read as a request
    time.sleep(0.05)
    assert (conns_seen(b), len(requests_seen(b))) == (conns, reqs), (name, b.log_path.read_text())
    assert f.alive()


def test_bad_chunk_after_head_never_completes_a_request(fulcrum, web):
    """The head went upstream before its body arrived: the bad chunk still gets a 400, and the
    backend never sees a complete request (its connection is cut)."""
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    with connect(port) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.3)
        s.sendall(b"5\r\nhello\r\nzz\r\nsmuggled\r\n0\r\n\r\n")
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 400 "), data
    time.sleep(0.2)
    assert requests_seen(b) == []


def test_head_too_large_431(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b], protect={"max_header_bytes": "8KiB"})
    data = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    assert requests_seen(b) == []
    assert request(port, "GET", "/", {"X-Ok": "a" * 4000}).status == 200


# ---------------------------------------------------------------------------------------------
# fulcrum's own errors

def test_502_when_backend_sends_garbage_or_closes(fulcrum, web):
    for how in ["garbage", "close", "reset"]:
        b = web(how, "--misbehave", how)
        f, port = one_backend(fulcrum, [b], retries=0)
        for method in ["GET", "POST"]:
            r = request(port, method, "/", body=b"x" if method == "POST" else b"")
            assert r.status == 502, (how, method, r)
            assert b"bad gateway" in r.body
        assert len(requests_seen(b)) == 2
        assert f.stop() == 0


def test_503_at_once_when_every_server_is_down(fulcrum):
    f, port = one_backend(fulcrum, [dead_address(), dead_address()],
                          health={"check": "tcp", "interval": "300ms", "timeout": "300ms", "fall": 1, "rise": 1})
    # Until the first checks have run the servers count as up (a connect is tried, then 502).
    wait_until(lambda: request(port, "GET", "/").status == 503, 5, 0.05, "both servers down")
    for _ in range(5):
        t0 = time.monotonic()
        r = request(port, "GET", "/")
        assert r.status == 503 and time.monotonic() - t0 < 1.0
        assert b"no server available" in r.body
    # Keep-alive survives a 503 (no body was left unread).
    with Client(port) as c:
        assert c.request("GET", "/").status == 503
        assert c.request("GET", "/").status == 503


def test_504_on_response_timeout(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b], response_timeout="300ms")
    t0 = time.monotonic()
    r = request(port, "GET", "/delay?ms=3000")
    took = time.monotonic() - t0
    assert r.status == 504 and 0.25 < took < 1.5, (r, took)
    assert len(requests_seen(b)) == 1  # not retried: the server may still be working on it
    # A response that starts in time is not cut however long the body takes to stream.
    r = request(port, "GET", "/delay?ms=50")
    assert r.status == 200


class RawBackend:
    """A server in this process that answers every request head with the same bytes (or a list
    of byte strings and pauses in seconds): for responses backend.py would never send. Counts
    connections and requests."""

    def __init__(self, response, close_after=False):
        self.response, self.close_after = response, close_after
        self.accepts = self.requests = 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.address = "%s:%d" % self.ls.getsockname()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    self.requests += 1
                    for piece in (self.response if isinstance(self.response, list) else [self.response]):
                        if isinstance(piece, float):
                            time.sleep(piece)
                        else:
                            c.sendall(piece)
                    if self.close_after:
                        return

    def close(self):
        self.ls.close()


def test_responses_parsed_strictly(fulcrum):
    cases = {
        # Codings besides chunked reach a 1.1 client verbatim (and a 1.0 client cannot take them).
        "gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        "two_cls": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
        "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok",
        "junk_after": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        "junk_late": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0.1,
                      b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"],
        "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        "late_bad_chunk": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 0.1, b"zz\r\n"],
    }
    raws = {n: RawBackend(resp) for n, resp in cases.items()}
    try:
        backends = {n: {"retries": 0, "servers": servers(r.address)} for n, r in raws.items()}
        routes = [{"match": {"path_prefix": "/%s" % n}, "backend": n} for n in cases]
        f, port = proxy(fulcrum, backends, routes=routes)
        with Client(port) as c:
            r = c.request("GET", "/gzip")
            assert r.status == 200 and r.header("Transfer-Encoding") == "gzip, chunked" and r.body == b"hello"
        assert request(port, "GET", "/gzip", version="HTTP/1.0").status == 502
        for n in ("101", "two_cls", "cl_te", "obs_fold"):
            r = request(port, "GET", "/" + n)
            assert r.status == 502, (n, r)
        # Bytes after a complete response are no next response: the client gets the first
        # alone, and that upstream connection is not used again.
        for _ in range(3):
            with Client(port) as c:
                r = c.request("GET", "/junk_after")
                assert r.status == 200 and r.body == b"ok"
                assert c.request("GET", "/junk_after").body == b"ok"
        assert raws["junk_after"].accepts == raws["junk_after"].requests == 6
        for _ in range(3):  # the same, the junk arriving while the connection idles in the pool
            assert request(port, "GET", "/junk_late").body == b"ok"
            time.sleep(0.2)
        assert raws["junk_late"].accepts == raws["junk_late"].requests == 3
        # A bad chunk before anything went to the client: 502. After the head went out: the
        # client's connection is cut, with no second status line.
        assert request(port, "GET", "/bad_chunk").status == 502
        with Client(port) as c:
            c.sock.sendall(build_request("GET", "/late_bad_chunk"))
            c.sock.settimeout(5)
            data = recv_all(c.sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"502" not in data and data.endswith(b"hello\r\n")
    finally:
        for r in raws.values():
            r.close()


# ---------------------------------------------------------------------------------------------
# balancing

@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "least_time", "ip_hash", "hash", "random"])
def test_every_algorithm_over_http(fulcrum, web, balance):
    bs = [web("s%d" % i) for i in range(1, 4)]
    f, port = one_backend(fulcrum, bs, balance=balance)
    counts = collections.Counter()
    for i in range(60):
        r = request(port, "GET", "/")
        assert r.status == 200
        counts[r.backend] += 1
    if balance in ("ip_hash", "hash"):  # one client address: one server
        assert len(counts) == 1, counts
    elif balance in ("round_robin", "least_conn"):
        assert all(counts[b.name] >= 12 for b in bs), counts
    else:
        assert len(counts) >= 2 or balance == "least_time", counts
    assert sum(len(requests_seen(b)) for b in bs) == 60


@pytest.mark.parametrize("key", ["ip", "header:X-User", "cookie:user", "query:user", "path"])
def test_hash_key_stickiness(fulcrum, web, key):
    bs = [web("s%d" % i) for i in range(1, 4)]
    f, port = one_backend(fulcrum, bs, balance="hash", hash_key=key)
    where = collections.defaultdict(set)
    for user in range(24):
        for _ in range(4):
            src, path, headers = None, "/", {}
            if key == "ip":
                src = "127.0.0.%d" % (user + 2)
            elif key.startswith("header:"):
                headers["X-User"] = "u%d" % user
            elif key.startswith("cookie:"):
                headers["Cookie"] = "theme=dark; user=u%d" % user
            elif key.startswith("query:"):
                path = "/?a=1&user=u%d" % user
            else:
                path = "/users/u%d" % user
            r = request(port, "GET", path, headers, src=src)
            assert r.status in (200, 404)
            where[user].add(r.backend)
    assert all(len(s) == 1 for s in where.values()), dict(where)
    spread = collections.Counter(next(iter(s)) for s in where.values())
    assert len(spread) >= 2, spread  # keys spread over the servers


def test_least_time_avoids_a_slow_server(fulcrum, web):
    fast1, fast2 = web("fast1", "--delay-ms", "5"), web("fast2", "--delay-ms", "5")
    slow = web("slow", "--delay-ms", "50")
    f, port = one_backend(fulcrum, [fast1, fast2, slow], balance="least_time")
    counts = collections.Counter()
    lock = threading.Lock()

    def client():
        with Client(port) as c:
            for _ in range(50):
                r = c.request("GET", "/")
                assert r.status == 200
                with lock:
                    counts[r.backend] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts.values()) == 200
    assert counts["slow"] < 0.1 * 200, counts
    assert counts["fast1"] > 50 and counts["fast2"] > 50, counts


# ---------------------------------------------------------------------------------------------
# sticky sessions

def sticky_clients(port, n, cookie):
    """n clients log in; returns [(cookie jar, server)]."""
    out = []
    for _ in range(n):
        r = request(port, "POST", "/login", body=b"user=x")
        assert r.status == 200
        jar = r.cookies()
        assert set(jar) == {"sid", cookie}, r.headers
        out.append((jar, r.backend))
    return out


def cookie_header(jar):
    return "; ".join("%s=%s" % kv for kv in jar.items())


def test_sticky_cookie_keeps_sessions_and_moves_them_when_a_server_goes(fulcrum, web):
    bs = {n: web(n) for n in ("app1", "app2", "app3")}
    # fall 3 at 500 ms: a check delayed on a loaded machine (the ASan run) must not take a server
    # out while the logins are spread; a killed server's connects are refused at once anyway.
    f, port = one_backend(fulcrum, list(bs.values()), sticky={"cookie": "FULCRUM_SERVER"},
                          health={"check": "tcp", "interval": "500ms", "timeout": "500ms", "fall": 3, "rise": 1})
    seen = set()

    def all_up():
        # Only answers from a server count: before the first checks pass fulcrum answers 503 with
        # no backend, and counting that "None" let the logins start with one server still down.
        r = request(port, "GET", "/")
        if r.status == 200:
            seen.add(r.backend)
        return len(seen) == 3
    wait_until(all_up, 5, what="servers up")
    clients = sticky_clients(port, 30, "FULCRUM_SERVER")
    ids = {}
    for jar, server in clients:
        ids.setdefault(server, set()).add(jar["FULCRUM_SERVER"])
    assert len(ids) == 3, ids  # round robin spread the logins
    for server, vals in ids.items():
        assert len(vals) == 1  # one id per server
        val = next(iter(vals))
        assert "127.0.0.1" not in val and str(bs[server].port) not in val  # opaque
    r = request(port, "POST", "/login")
    mine = [v for v in r.all("Set-Cookie") if v.startswith("FULCRUM_SERVER=")]
    assert len(mine) == 1 and mine[0].endswith("; Path=/; HttpOnly"), r.headers
    # Every fetch lands on the server that holds the session (each on a new connection, so each
    # is balanced afresh, on either worker).
    for jar, server in clients:
        for _ in range(20):
            r = request(port, "GET", "/profile", {"Cookie": cookie_header(jar)})
            assert (r.status, r.backend) == (200, server)
            assert "FULCRUM_SERVER" not in r.cookies()  # a valid cookie is not set again
    # The busiest server goes away: its clients move to another server with a new cookie.
    victim = collections.Counter(s for _, s in clients).most_common(1)[0][0]
    bs[victim].kill()
    time.sleep(1.8)  # the health check notices (fall: 3, every 500ms); until then retries move them
    moved = 0
    for jar, server in clients:
        r = request(port, "GET", "/profile", {"Cookie": cookie_header(jar)})
        if server != victim:
            assert (r.status, r.backend) == (200, server)
            continue
        moved += 1
        assert r.status == 401 and r.backend != victim  # reached a live server: the session is gone
        new = r.cookies().get("FULCRUM_SERVER")
        assert new and new != jar["FULCRUM_SERVER"]
        jar["FULCRUM_SERVER"] = new
        r = request(port, "POST", "/login", {"Cookie": cookie_header(jar)})
        assert r.status == 200 and r.backend != victim
        jar["sid"] = r.cookies()["sid"]
        home = r.backend
        for _ in range(20):
            r = request(port, "GET", "/profile", {"Cookie": cookie_header(jar)})
            assert (r.status, r.backend) == (200, home)
    assert moved >= 10


def test_sticky_cookie_without_health_checks_redispatches_on_connect_failure(fulcrum, web):
    """No health check: the dead server is still `up`, its connect fails, the request is retried
    on another server, and the client gets that server's cookie."""
    a, b = web("a"), web("b")
    f, port = one_backend(fulcrum, [a, b], sticky={"cookie": "S"})
    clients = sticky_clients(port, 6, "S")
    on_a = [jar for jar, s in clients if s == "a"]
    assert on_a
    a.kill()
    for jar in on_a:
        r = request(port, "GET", "/profile", {"Cookie": cookie_header(jar)})
        assert r.status == 401 and r.backend == "b"
        assert r.cookies()["S"] != jar["S"]


def test_sticky_drain_via_admin_api(fulcrum, web):
    """With the admin API (when this build has one), a drained server keeps no sticky client."""
    import urllib.request
    bs = {n: web(n) for n in ("app1", "app2")}
    admin_port = free_port()
    port = free_port()
    cfg = tcp_config({"app": {"sticky": {"cookie": "S"}, "servers": servers(*bs.values())}},
                     [{"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "http",
                       "routes": [{"backend": "app"}]}], admin={"listen": "127.0.0.1:%d" % admin_port})
    f = fulcrum(cfg, ready=False)
    try:
        f.wait_ready(timeout=3)
    except (TimeoutError, RuntimeError):
        pytest.skip("no admin API in this build")
    clients = sticky_clients(port, 6, "S")
    req = urllib.request.Request("http://127.0.0.1:%d/api/v1/backends/app/servers/app1" % admin_port,
                                 data=b'{"state": "drain"}', method="PATCH",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    for jar, server in clients:
        r = request(port, "GET", "/profile", {"Cookie": cookie_header(jar)})
        assert r.backend == "app2"
        if server == "app1":
            assert r.status == 401 and r.cookies()["S"] != jar["S"]
        else:
            assert r.status == 200


# ---------------------------------------------------------------------------------------------
# retries

def test_retry_on_connect_failure(fulcrum, web):
    live = web("live")
    f, port = one_backend(fulcrum, [dead_address(), live], retries=1)
    for method in ["GET", "POST"]:  # nothing reached the dead one: any method is retried
        for _ in range(10):
            r = request(port, method, "/", body=b"x" if method == "POST" else b"")
            assert r.status == 200 and r.backend == "live"
    assert len(requests_seen(live)) == 20
    # retries: 0 gives up at once.
    f2, port2 = one_backend(fulcrum, [dead_address()], retries=0)
    assert request(port2, "GET", "/").status == 502


@pytest.mark.parametrize("how", ["close", "reset"])
def test_idempotent_request_retried_after_reset_before_response(fulcrum, web, how):
    bad, good = web("bad", "--misbehave", how), web("good")
    f, port = one_backend(fulcrum, [bad, good], retries=1)
    for method in ["GET", "HEAD", "PUT", "DELETE"]:
        for _ in range(4):
            r = request(port, method, "/")
            assert r.status == 200 and r.backend == "good", (method, r)
    assert len(requests_seen(good)) == 16
    assert len(requests_seen(bad)) >= 4  # round robin sent some there first


def test_post_that_reached_a_backend_is_never_retried(fulcrum, web):
    bad, good = web("bad", "--misbehave", "close"), web("good")
    f, port = one_backend(fulcrum, [bad, good], retries=2)
    statuses = collections.Counter()
    for i in range(20):
        r = request(port, "POST", "/echo", body=b"order %d" % i)
        statuses[r.status] += 1
        assert r.status in (200, 502)
        if r.status == 200:
            assert r.body == b"order %d" % i
    seen_bad, seen_good = requests_seen(bad), requests_seen(good)
    # Each POST reached exactly one server: 502s are the ones the bad server swallowed.
    assert len(seen_bad) == statuses[502] and len(seen_good) == statuses[200]
    assert statuses[502] >= 5 and statuses[200] >= 5, statuses
    # PATCH is not idempotent either.
    before = len(requests_seen(bad)) + len(requests_seen(good))
    for _ in range(6):
        request(port, "PATCH", "/echo", body=b"p")
    assert len(requests_seen(bad)) + len(requests_seen(good)) - before == 6


# ---------------------------------------------------------------------------------------------
# timeouts

def black_hole():
    """A listening socket whose accept queue is full: new SYNs are dropped, so a connect to it
    neither succeeds nor fails until the connector gives up. Returns (socket, address) or None."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    addr = ls.getsockname()
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(addr)
        fillers.append(s)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(addr)
        ok = False
    except (socket.timeout, OSError):
        ok = True
    finally:
        probe.close()
    if not ok:
        for s in fillers + [ls]:
            s.close()
        return None
    return (ls, fillers), "%s:%d" % addr


def test_connect_timeout(fulcrum, web):
    hole = black_hole()
    if hole is None:
        pytest.skip("this kernel accepts connects beyond the backlog")
    keep, addr = hole
    live = web("live")
    try:
        f, port = one_backend(fulcrum, [addr], connect_timeout="300ms", retries=0)
        t0 = time.monotonic()
        r = request(port, "GET", "/")
        took = time.monotonic() - t0
        assert r.status == 504 and 0.25 < took < 1.5, (r.status, took)
        # With a second server and a retry, the request goes there after the timeout.
        f2, port2 = one_backend(fulcrum, [addr, live], connect_timeout="300ms", retries=1)
        for _ in range(4):
            t0 = time.monotonic()
            r = request(port2, "GET", "/")
            assert r.status == 200 and r.backend == "live" and time.monotonic() - t0 < 1.5
    finally:
        ls, fillers = keep
        for s in fillers + [ls]:
            s.close()


def test_idle_timeout_closes_keepalive_connections(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b], protect={"idle_timeout": "400ms", "header_timeout": "5s"})
    with Client(port) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=3)
        assert 0.3 < time.monotonic() - t0 < 1.5
    # An idle connection that never sent anything is closed the same way.
    with connect(port) as s:
        t0 = time.monotonic()
        assert recv_all(s, timeout=3) == b""
        assert time.monotonic() - t0 < 1.5


def test_slowloris_gets_408_within_header_timeout(fulcrum, web):
    b = web("a")
    f, port = one_backend(fulcrum, [b], protect={"header_timeout": "2s", "idle_timeout": "30s"})
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    got = b""
    with connect(port, timeout=5) as s:
        t0 = time.monotonic()
        s.settimeout(1.0)
        for byte in head:  # one byte a second, never finishing the head
            try:
                s.sendall(bytes([byte]))
                chunk = s.recv(4096)
                got += chunk
                if not chunk:
                    break
            except socket.timeout:
                pass
            except OSError:
                break
            if time.monotonic() - t0 > 6:
                break
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert 1.8 < took < 3.2, took
    assert requests_seen(b) == [] and conns_seen(b) == 0


# ---------------------------------------------------------------------------------------------
# graceful stop

def test_sigterm_finishes_in_flight_requests(fulcrum, web):
    import signal
    b = web("a")
    f, port = one_backend(fulcrum, [b])
    idle = Client(port)
    assert idle.request("GET", "/").status == 200
    result = {}

    def slow():
        result["r"] = request(port, "GET", "/delay?ms=700")

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: any(tgt.startswith("/delay") for _, _, tgt in requests_seen(b)), 5, what="request sent")
    f.signal(signal.SIGTERM)
    assert idle.closed_by_peer(timeout=3)  # an idle keep-alive connection goes within a second
    idle.close()
    t.join(5)
    assert result["r"].status == 200 and result["r"].body == b"a\n"
    assert f.wait(5) == 0
