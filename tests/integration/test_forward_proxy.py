"""`protocol: forward_proxy` end to end (SPEC: Forward proxy): curl -x through fulcrum to a real
backend (origin-form, Host, Via, X-Forwarded-For, Proxy-* fields gone), keep-alive to the client
and pooled connections per origin, CONNECT tunnels (curl -p) to an HTTPS server on loopback, the
acl (exact names and *.suffix, allow_ports on CONNECT), and fulcrum's own answers: 400
origin-form, 403 denied, 502 unresolvable or refused, 504 connect timeout.

Denials need no name resolution (the acl is checked first), so they use names that resolve
nowhere; allowed traffic goes to 127.0.0.1 or `localhost`. Every wait is bounded."""
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

import harness
from harness import connect, free_port, log_lines, recv_all, tcp_config, wait_until

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(CURL is None, reason="needs curl")


def forward_proxy(fulcrum, acl=None, workers=2, admin_port=None):
    port = free_port()
    listener = {"name": "egress", "bind": "127.0.0.1:%d" % port, "protocol": "forward_proxy"}
    if acl is not None:
        listener["acl"] = acl
    top = {"admin": {"listen": "127.0.0.1:%d" % admin_port}} if admin_port else {}
    cfg = tcp_config({}, [listener], workers=workers, **top)
    del cfg["backends"]
    return fulcrum(cfg), port


def curl(*args, timeout=20):
    r = subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=timeout)
    return r


def status_of(proxy_port, url, *extra):
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", "http://127.0.0.1:%d" % proxy_port, *extra, url)
    return int(r.stdout.decode() or 0)


def raw(port, data, timeout=10):
    """Sends the head `data` (with "Connection: close" added) on a new connection to fulcrum;
    returns everything until fulcrum closes."""
    assert data.endswith(b"\r\n\r\n")
    data = data[:-2] + b"Connection: close\r\n\r\n"
    s = connect(port, timeout=timeout)
    try:
        s.sendall(data)
        return recv_all(s, timeout=timeout)
    finally:
        s.close()


def read_response(sock, timeout=5, pending=None):
    """(head bytes, body bytes) of one Content-Length response. Bytes read past it (pipelined
    responses) are kept in the bytearray `pending`, which later calls read first."""
    sock.settimeout(timeout)
    buf = bytes(pending or b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-head: %r" % buf
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    if pending is not None:
        pending[:] = body[length:]
    else:
        assert len(body) == length, "unexpected bytes after the response: %r" % body[length:]
    return head, body[:length]


# ---------------------------------------------------------------------------------------------
# plain HTTP

def test_curl_x_reaches_backend_in_origin_form(fulcrum, web):
    b = web()
    f, port = forward_proxy(fulcrum)
    for host in ("127.0.0.1", "localhost"):
        url = "http://%s:%d/headers?x=1" % (host, b.port)
        r = curl("-x", "http://127.0.0.1:%d" % port, "-H", "Proxy-Connection: keep-alive",
                 "--proxy-header", "Proxy-Authorization: Basic Zm9vOmJhcg==", "-H", "X-Forwarded-For: 10.9.8.7",
                 url)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["method"] == "GET"
        assert got["target"] == "/headers?x=1"  # origin-form (RFC 9112 3.2.1)
        headers = {k.lower(): v for k, v in got["headers"]}
        assert headers["host"] == "%s:%d" % (host, b.port)
        assert headers["via"] == "1.1 fulcrum"
        assert headers["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
        assert "proxy-connection" not in headers
        assert "proxy-authorization" not in headers


def test_ipv6_literal(fulcrum, backend):
    b = backend("http", "six", host="::1")
    f, port = forward_proxy(fulcrum)
    r = curl("-x", "http://127.0.0.1:%d" % port, "http://[::1]:%d/headers" % b.port)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["target"] == "/headers"
    assert dict((k.lower(), v) for k, v in got["headers"])["host"] == "[::1]:%d" % b.port


def test_keep_alive_to_client_and_pooled_upstream(fulcrum, web):
    b = web()
    f, port = forward_proxy(fulcrum, workers=1)
    s = connect(port)
    try:
        for i in range(5):
            s.sendall(b"GET http://127.0.0.1:%d/?i=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (b.port, i, b.port))
            head, body = read_response(s)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == b"a\n"
    finally:
        s.close()
    # Another client, later: the pooled upstream connection serves it too.
    for i in range(2):
        assert status_of(port, "http://127.0.0.1:%d/" % b.port) == 200
    wait_until(lambda: len(log_lines(b, "req")) == 7, 5, what="7 requests at the backend")
    assert len(log_lines(b, "conn")) == 1, log_lines(b, "conn")


def test_pipelined_requests_to_two_origins_keep_their_order(fulcrum, web):
    a, b = web("a"), web("b")
    f, port = forward_proxy(fulcrum, workers=1)
    s = connect(port)
    try:
        # The first needs a name lookup; the second (a literal) waits behind it all the same.
        s.sendall(b"GET http://localhost:%d/ HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                  % (a.port, b.port, a.port))
        pending = bytearray()
        assert read_response(s, pending=pending)[1] == b"a\n"
        assert read_response(s, pending=pending)[1] == b"b\n"
        assert read_response(s, pending=pending)[1] == b"hello"
    finally:
        s.close()


def test_http10_client(fulcrum, web):
    b = web()
    f, port = forward_proxy(fulcrum)
    out = raw(port, b"GET http://127.0.0.1:%d/headers HTTP/1.0\r\n\r\n" % b.port)
    assert out.startswith(b"HTTP/1.1 200"), out
    got = json.loads(out.split(b"\r\n\r\n", 1)[1])
    headers = {k.lower(): v for k, v in got["headers"]}
    assert got["target"] == "/headers"
    assert headers["host"] == "127.0.0.1:%d" % b.port
    assert headers["via"] == "1.0 fulcrum"


def test_origin_form_is_400(fulcrum):
    f, port = forward_proxy(fulcrum)
    out = raw(port, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out


def test_https_absolute_uri_is_501(fulcrum):
    f, port = forward_proxy(fulcrum)
    out = raw(port, b"GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501"), out


def test_unresolvable_and_refused_are_502(fulcrum):
    f, port = forward_proxy(fulcrum)
    assert status_of(port, "http://no-such-host.invalid/") == 502
    assert status_of(port, "http://no-such-host.invalid/") == 502  # cached failure
    closed = free_port()
    assert status_of(port, "http://127.0.0.1:%d/" % closed) == 502
    assert status_of(port, "http://localhost:%d/" % closed) == 502
    out = raw(port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (closed, closed))
    assert out.startswith(b"HTTP/1.1 502"), out


def test_connect_timeout_is_504(fulcrum):
    # A listener whose accept queue is full drops SYNs: the connect hangs until connect_timeout
    # (the default 2 s of a backend).
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers = []
    try:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        target = lsock.getsockname()[1]
        for _ in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", target))
            fillers.append(c)
        time.sleep(0.2)
        f, port = forward_proxy(fulcrum)
        t0 = time.monotonic()
        assert status_of(port, "http://127.0.0.1:%d/" % target) == 504
        assert 1.5 < time.monotonic() - t0 < 8
    finally:
        for c in fillers:
            c.close()
        lsock.close()


# A DNS server for the namespace test below: every name is 127.0.0.1 (A; AAAA empty), names
# starting with "slow" after 3 s. Each query on a thread of its own, as a real server would.
SLOW_DNS = r"""
import socket, struct, threading, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
def answer(q, peer):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    if labels[0].lower().startswith("slow"):
        time.sleep(3)
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton("127.0.0.1") if qtype == 1 else b""
    s.sendto(q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if rr else 0, 0, 0) + q[12:i + 5] + rr, peer)
while True:
    q, peer = s.recvfrom(512)
    threading.Thread(target=answer, args=(q, peer), daemon=True).start()
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2 for a network namespace")
def test_a_slow_name_lookup_does_not_hold_up_others(tmp_path):
    """Lookups run on the resolver's threads, more than one at once: while a name's DNS server
    takes 3 s, another name on the same worker resolves at once. In a network namespace whose
    resolv.conf names a DNS server of the test's own."""
    with harness.NetNs(tmp_path, nameserver="127.0.0.1") as ns:
        procs = []
        f = None
        try:
            dns = ns.popen("/usr/bin/python3", "-c", SLOW_DNS, stdout=subprocess.PIPE, text=True)
            procs.append(dns)
            assert dns.stdout.readline().strip() == "ready"
            origin_port, port = free_port(), free_port()
            origin = ns.popen("/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", str(origin_port),
                              "--directory", str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(origin)
            (tmp_path / "hello.txt").write_text("hello\n")
            f = ns.fulcrum(tmp_path / "f")
            cfg = tcp_config({}, [{"name": "egress", "bind": "127.0.0.1:%d" % port, "protocol": "forward_proxy"}],
                             workers=1)
            del cfg["backends"]
            f.start(cfg, ready=False)

            def fetch(host):
                r = ns.run(CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "10",
                           "-x", "http://127.0.0.1:%d" % port, "http://%s:%d/hello.txt" % (host, origin_port))
                return r.stdout.split() if r.stdout else ["0", "0"]
            wait_until(lambda: fetch("warm.test")[0] == "200", 10, interval=0.2, what="the proxy in the namespace")
            slow = {}
            t = threading.Thread(target=lambda: slow.update(r=fetch("slow.test")))
            t.start()
            time.sleep(0.3)  # slow.test's lookup is under way
            code, took = fetch("fast.test")
            t.join(15)
            assert code == "200" and float(took) < 1.0, (code, took)
            # slow.test waited for its own lookup: past the 2 s connect timeout, a 504.
            assert slow["r"][0] == "504", slow
        finally:
            if f is not None and f.alive():
                f.stop()
            for p in procs:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# acl

ACL = {"deny": ["*.blocked.example", "ads.example.com"], "allow_ports": [80, 443]}


def test_deny_exact_and_suffix_is_403(fulcrum, admin_port=None):
    admin = free_port()
    f, port = forward_proxy(fulcrum, acl=ACL, admin_port=admin)
    assert status_of(port, "http://ads.example.com/") == 403
    assert status_of(port, "http://ADS.Example.COM./x") == 403
    assert status_of(port, "http://a.blocked.example/") == 403
    assert status_of(port, "http://x.y.blocked.example:8080/") == 403
    # Decision (forward_target.h): "*.blocked.example" does not cover blocked.example itself,
    # which goes on to be resolved (and fails to: 502, not 403).
    assert status_of(port, "http://blocked.example/") in (502, 504)
    out = raw(port, b"CONNECT a.blocked.example:443 HTTP/1.1\r\nHost: a.blocked.example:443\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403"), out
    # allow_ports limits CONNECT ...
    out = raw(port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403"), out
    # ... and only CONNECT: an absolute URI to another port goes through (refused there: 502).
    assert status_of(port, "http://127.0.0.1:%d/" % free_port()) == 502
    # Counted by reason.
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
    assert 'fulcrum_refused_total{listener="egress",reason="acl_denied"} 5' in text, text
    assert 'fulcrum_refused_total{listener="egress",reason="port_denied"} 1' in text, text


# ---------------------------------------------------------------------------------------------
# CONNECT

@pytest.fixture
def https_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for localhost, made now."""
    if OPENSSL is None:
        pytest.skip("needs openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b"hello over tls " + self.path.encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.cert = cert
    yield server
    server.shutdown()
    server.server_close()


def test_connect_tunnel_with_curl_p(fulcrum, https_server):
    tls_port = https_server.server_address[1]
    f, port = forward_proxy(fulcrum, acl={"deny": ["*.blocked.example"], "allow_ports": [443, tls_port]})
    for url in ("https://localhost:%d/one" % tls_port, "https://127.0.0.1:%d/two" % tls_port):
        r = curl("-p", "-x", "http://127.0.0.1:%d" % port, "--cacert", str(https_server.cert), "-i", url)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert "HTTP/1.1 200 Connection Established" in out
        assert "hello over tls /" + url.rsplit("/", 1)[1] in out
    # Two requests through one tunnel (curl keeps it open between them).
    r = curl("-p", "-x", "http://127.0.0.1:%d" % port, "-k", "https://localhost:%d/a" % tls_port,
             "https://localhost:%d/b" % tls_port)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "hello over tls /a\nhello over tls /b\n"


def test_connect_tunnel_carries_bytes_both_ways(fulcrum, backend):
    echo = backend("echo", "e", trailer="bye")
    f, port = forward_proxy(fulcrum)
    s = connect(port)
    try:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (echo.port, echo.port))
        s.settimeout(5)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\n"), got
        s.sendall(b"ping")
        got = b""
        while len(got) < 4:
            got += s.recv(4096)
        assert got == b"ping"
        # The client's half-close reaches the server, whose last words come back, then the end.
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s, timeout=5) == b"bye"
    finally:
        s.close()


def test_forward_proxy_caches_by_absolute_uri(fulcrum):
    """`cache:` on a forward_proxy listener: the same absolute URI is answered from the cache,
    another query string is another entry, and a `no-store` answer is never stored."""
    hits = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            body = b"page %s\n" % self.path.encode()
            self.send_response(200)
            self.send_header("Cache-Control", "no-store" if "nostore" in self.path else "max-age=60")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        port = free_port()
        cfg = tcp_config({}, [{"name": "egress", "bind": "127.0.0.1:%d" % port, "protocol": "forward_proxy",
                               "cache": {"size": "1MiB"}}], workers=2)
        del cfg["backends"]
        fulcrum(cfg)
        base = "http://127.0.0.1:%d" % origin.server_address[1]

        def get(path):
            r = curl("-D", "-", "-x", "http://127.0.0.1:%d" % port, base + path)
            assert r.returncode == 0, r.stderr
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            cache = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n")
                     if l.lower().startswith(b"x-cache:")]
            return cache[0] if cache else None, body

        assert get("/page?a=1") == ("MISS", b"page /page?a=1\n")
        assert get("/page?a=1") == ("HIT", b"page /page?a=1\n")
        assert get("/page?a=2")[0] == "MISS"
        assert hits == {"/page?a=1": 1, "/page?a=2": 1}
        get("/nostore")
        get("/nostore")
        assert hits["/nostore"] == 2
    finally:
        origin.shutdown()
        origin.server_close()


def test_reload_keeps_tunnels_and_applies_the_new_acl(fulcrum, backend):
    import os
    import signal
    echo = backend("echo", "e")
    f, port = forward_proxy(fulcrum, acl={"deny": ["a.example"]})
    s = connect(port)
    try:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo.port)
        s.settimeout(5)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200"), got
        cfg = dict(f.config)
        cfg["listeners"] = [dict(cfg["listeners"][0], acl={"deny": ["b.example"]})]
        f.write_config(cfg)
        os.kill(f.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in f.stderr, 10, what="the reload")
        assert status_of(port, "http://b.example/") == 403
        assert status_of(port, "http://a.example/") in (502, 504)  # allowed now; resolves nowhere
        s.sendall(b"still here")
        got = b""
        while len(got) < 10:
            got += s.recv(4096)
        assert got == b"still here"
    finally:
        s.close()
