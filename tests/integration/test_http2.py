"""HTTP/2 front end (issue #6): h2 over TLS (ALPN) and h2c with prior knowledge go through the same
routing, balancing and static-file path as HTTP/1.1; request bodies with and without a length;
flow control under load (h2load, 100,000 requests); SETTINGS_MAX_CONCURRENT_STREAMS; GOAWAY on a
graceful stop with the stream under way finished."""
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import time

from harness import free_port, wait_until
from test_https import app_backend, make_cert

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def config(tls_port, plain_port, certs, routes, backends=(), workers=2):
    listeners = [{"name": "h2", "bind": "127.0.0.1:%d" % tls_port, "protocol": "https",
                  "tls": [{"cert": c, "key": k} for c, k in certs], "routes": routes},
                 {"name": "h2c", "bind": "127.0.0.1:%d" % plain_port, "protocol": "http", "routes": routes}]
    return {"workers": workers, "shutdown_grace": "5s", "listeners": listeners, "backends": list(backends)}


def curl(url, *args, stdin=None):
    r = subprocess.run(["curl", "-sk", "--max-time", "20", "-w", "\n%{http_code} %{http_version}", *args, url],
                       capture_output=True, input=stdin)
    body, _, tail = r.stdout.rpartition(b"\n")
    status, version = tail.decode().split()
    return int(status), version, body


def start_all(fulcrum, backend, tmp_path, workers=2):
    cert = make_cert(str(tmp_path), "site", ["a.test"])
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text("hello\n")
    data = os.urandom(500000)
    (root / "big.bin").write_bytes(data)
    b = backend("http", "app1")
    tls_port, plain_port = free_port(), free_port()
    routes = [{"match": {"path_prefix": "/static/"}, "static": {"root": str(tmp_path)}}, {"backend": "app"}]
    cfg = config(tls_port, plain_port, [cert], routes, [app_backend(b)], workers=workers)
    cfg["access_log"] = {"path": "access.log", "format": "combined"}
    f = fulcrum(cfg)
    return f, b, tls_port, plain_port, data


def test_h2_over_tls_and_h2c_share_the_http_path(fulcrum, backend, tmp_path):
    f, b, tls_port, plain_port, data = start_all(fulcrum, backend, tmp_path)
    for base, flag in (("https://127.0.0.1:%d" % tls_port, "--http2"),
                       ("http://127.0.0.1:%d" % plain_port, "--http2-prior-knowledge")):
        status, version, body = curl(base + "/", flag)
        assert (status, version, body) == (200, "2", b"app1\n"), base
        status, version, body = curl(base + "/headers", flag, "-H", "Cookie: a=1", "-H", "Cookie: b=2")
        doc = json.loads(body)
        heads = {k.lower(): v for k, v in doc["headers"]}
        assert heads["x-forwarded-proto"] == ("https" if base.startswith("https") else "http")
        assert heads["host"] == "127.0.0.1:%d" % (tls_port if base.startswith("https") else plain_port)
        assert "a=1" in heads["cookie"] and "b=2" in heads["cookie"]
        status, version, body = curl(base + "/static/big.bin", flag)
        assert status == 200 and version == "2" and body == data
        status, version, body = curl(base + "/static/big.bin", flag, "-r", "100-199")
        assert status == 206 and body == data[100:200]
        status, version, body = curl(base + "/static/nope", flag)
        assert status == 404 and version == "2"
        status, version, body = curl(base + "/status?code=503", flag)
        assert status == 503
        # A body with a length, and one without (sent as chunked to the backend).
        upload = os.urandom(300000)
        status, version, body = curl(base + "/sha256", flag, "--data-binary", "@-", stdin=upload)
        assert json.loads(body)["sha256"] == hashlib.sha256(upload).hexdigest()
        status, version, body = curl(base + "/sha256", flag, "-T", "-", stdin=upload)
        assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(upload).hexdigest()
        status, version, body = curl(base + "/big?bytes=1000000&chunked=1", flag)
        assert status == 200 and len(body) == 1000000
        status, version, body = curl(base + "/until-close?bytes=70000", flag)
        assert status == 200 and len(body) == 70000
    # The access log says which protocol each request came in.
    log = (f.workdir / "access.log")
    # Each worker flushes its own lines (within 1 s): wait for the one asked about, not any.
    wait_until(lambda: log.exists() and b'"GET /headers HTTP/2.0" 200' in log.read_bytes(), 5,
               what="the access log line of GET /headers")
    # HTTP/1.1 still works on both.
    status, version, body = curl("https://127.0.0.1:%d/" % tls_port, "--http1.1")
    assert (status, version) == (200, "1.1")
    status, version, body = curl("http://127.0.0.1:%d/" % plain_port)
    assert (status, version) == (200, "1.1")


def h2_head(url, *args):
    """The response head curl got over HTTP/2, as (name, value) pairs in order."""
    r = subprocess.run(["curl", "-sk", "--max-time", "20", "--http2", "-D", "-", "-o", "/dev/null", *args, url],
                       capture_output=True, check=True)
    lines = r.stdout.decode("latin-1").split("\r\n")
    assert lines[0].strip() == "HTTP/2 200", lines
    return [tuple(line.split(": ", 1)) for line in lines[1:] if line]


def test_forwarded_head_over_h2_with_sticky_cookie_and_cache(fulcrum, backend, tmp_path):
    """The backend's head becomes HEADERS directly (no HTTP/1.1 text in between): names in lower
    case, connection-specific fields and those Connection lists gone, one content-length, the
    backend's Set-Cookies kept, and what the proxy adds (sticky cookie, X-Cache) present."""
    cert = make_cert(str(tmp_path), "site", ["a.test"])
    b = backend("http", "app1")
    tls_port, plain_port = free_port(), free_port()
    routes = [{"match": {"path_prefix": "/c/"}, "backend": "app", "cache": {"size": "1MiB"}}, {"backend": "app"}]
    cfg = config(tls_port, plain_port, [cert], routes, [app_backend(b, sticky={"cookie": "S"})])
    fulcrum(cfg)
    for base in ("https://127.0.0.1:%d" % tls_port, "http://127.0.0.1:%d" % plain_port):
        args = () if base.startswith("https") else ("--http2-prior-knowledge",)
        for path, x_cache in (("/fields", None), ("/c/fields?" + base[:5], "MISS"), ("/c/fields?" + base[:5], "HIT")):
            head = h2_head(base + path, *args)
            names = [n for n, _ in head]
            assert all(n == n.lower() for n in names), head
            for gone in ("connection", "keep-alive", "x-private", "transfer-encoding"):
                assert gone not in names, head
            assert names.count("content-length") == 1 and dict(head)["content-length"] == "5"
            assert dict(head)["content-type"] == "text/plain" and dict(head)["x-mixed-case-name"] == "v"
            cookies = [v for n, v in head if n == "set-cookie"]
            if x_cache != "HIT":  # a hit: the stored copy keeps no Set-Cookie, and no server was picked
                assert "a=1" in cookies and "b=2" in cookies, head
                assert any(c.startswith("S=") and c.endswith("; Path=/; HttpOnly") for c in cookies), head
            if x_cache:
                assert dict(head).get("x-cache", "").startswith(x_cache), head
            else:
                assert "x-cache" not in names, head


def h2load(url, *args):
    r = subprocess.run(["h2load", *args, url], capture_output=True, text=True, timeout=300)
    return r.stdout


def test_h2load_100k_requests_no_errors(fulcrum, backend, tmp_path):
    f, b, tls_port, plain_port, data = start_all(fulcrum, backend, tmp_path)
    out = h2load("https://127.0.0.1:%d/static/index.html" % tls_port, "-n100000", "-c10", "-m10")
    assert "100000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert "100000 2xx" in out, out
    out = h2load("http://127.0.0.1:%d/static/big.bin" % plain_port, "-n200", "-c4", "-m10")
    assert "200 succeeded, 0 failed, 0 errored" in out, out
    # Through a backend (the Python test backend is slow: fewer requests).
    out = h2load("https://127.0.0.1:%d/" % tls_port, "-n2000", "-c4", "-m20")
    assert "2000 succeeded, 0 failed, 0 errored" in out, out


# ---- a tiny HTTP/2 client for what the tools do not show ---------------------------------------

def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def read_frame(sock):
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            return None
        head += chunk
    length = int.from_bytes(head[:3], "big")
    payload = b""
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        if not chunk:
            return None
        payload += chunk
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload


def test_settings_and_goaway_on_graceful_stop(fulcrum, backend, tmp_path):
    f, b, tls_port, plain_port, data = start_all(fulcrum, backend, tmp_path, workers=1)
    s = socket.create_connection(("127.0.0.1", plain_port), timeout=10)
    s.sendall(PREFACE + frame(4, 0, 0))
    ftype, flags, stream, payload = read_frame(s)
    assert ftype == 4
    settings = {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
                for i in range(0, len(payload), 6)}
    assert settings[3] == 128  # SETTINGS_MAX_CONCURRENT_STREAMS
    block = (literal(":method", "GET") + literal(":scheme", "http") + literal(":path", "/delay?ms=800") +
             literal(":authority", "a.test"))
    s.sendall(frame(4, 1, 0) + frame(1, 0x5, 1, block))  # SETTINGS ack; HEADERS END_STREAM|END_HEADERS
    time.sleep(0.2)  # the request is at the backend
    f.signal(signal.SIGTERM)
    seen = []
    while True:
        fr = read_frame(s)
        if fr is None:
            break
        seen.append(fr)
    types = [t for t, _, _, _ in seen]
    assert 7 in types, types  # GOAWAY
    goaway = next(p for t, _, _, p in seen if t == 7)
    last_stream, code = struct.unpack(">II", goaway[:8])
    assert (last_stream & 0x7FFFFFFF, code) == (1, 0)
    # The stream under way was finished: HEADERS then DATA with END_STREAM on stream 1.
    data_frames = [(fl, p) for t, fl, st, p in seen if t == 0 and st == 1]
    assert data_frames and data_frames[-1][0] & 1 and b"".join(p for _, p in data_frames) == b"app1\n"
    assert types.index(7) < types.index(0)
    s.close()
    wait_until(lambda: not f.alive(), 10, what="fulcrum exits")


def test_bad_preface_and_garbage_close_cleanly(fulcrum, backend, tmp_path):
    f, b, tls_port, plain_port, data = start_all(fulcrum, backend, tmp_path)
    s = socket.create_connection(("127.0.0.1", plain_port), timeout=5)
    s.sendall(PREFACE + b"\x00\x00\x04\x09garbage-garbage")
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    s.close()
    status, version, body = curl("http://127.0.0.1:%d/" % plain_port, "--http2-prior-knowledge")
    assert (status, body) == (200, b"app1\n")


def test_protect_applies_to_each_http2_stream_and_to_the_connection(fulcrum, backend, tmp_path):
    """Streams go through the same protection as HTTP/1.1 requests: the rate limit counts each
    stream (429 with Retry-After), a rule answers 403, and the connection keeps its place in
    max_conns_per_client after it turns into an HTTP/2 session."""
    b = backend("http", "app1")
    port = free_port()
    protect = {"rate": "1/s", "burst": 3, "max_conns_per_client": 1,
               "rules": [{"path_regex": r"\.\./", "action": "deny"}]}
    f = fulcrum({"workers": 1, "listeners": [{"name": "h2c", "bind": "127.0.0.1:%d" % port, "protocol": "http",
                                              "protect": protect, "routes": [{"backend": "app"}]}],
                 "backends": [app_backend(b)]})
    base = "http://127.0.0.1:%d" % port
    # One connection, six streams at once (nghttp; curl 7.88 cannot reuse an h2c connection):
    # the burst lets three through, the others get 429.
    r = subprocess.run(["nghttp", "-n", "-s", "-t", "10"] + ["%s/?i=%d" % (base, i) for i in range(6)],
                       capture_output=True, timeout=20)
    rows = [line.split() for line in r.stdout.decode().splitlines() if "/?i=" in line]
    codes = sorted(row[4] for row in rows)
    assert codes == ["200"] * 3 + ["429"] * 3, r.stdout.decode()
    time.sleep(1.2)  # a token back
    status, version, _ = curl(base + "/a/../b", "--http2-prior-knowledge", "--path-as-is")
    assert (status, version) == (403, "2")
    # An h2c connection held open counts as the client's one connection: a second is refused.
    # (curl's connection above is let go when fulcrum has seen it close: retry until then.)
    def h2c_session():
        c = socket.socket()
        c.settimeout(5)
        try:
            c.connect(("127.0.0.1", port))
            c.sendall(PREFACE + struct.pack(">I", 0)[1:] + b"\x04\x00" + struct.pack(">I", 0))  # empty SETTINGS
            if c.recv(9):  # the server's SETTINGS: the session holds the connection now
                return c
        except OSError:  # reset at accept: the old connection still counts
            pass
        c.close()
        return None
    s = wait_until(h2c_session, 5, interval=0.1, what="an h2c session")
    try:
        second = socket.socket()
        second.settimeout(5)
        try:
            second.connect(("127.0.0.1", port))
            second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = second.recv(100)
        except OSError:
            got = b""
        finally:
            second.close()
        assert got == b"", got  # closed (reset) at accept
    finally:
        s.close()
