"""HTTPS listeners (issue #6): TLS 1.2 and 1.3, certificates chosen by SNI, ALPN, session
resumption on any worker, static files over TLS, `fulcrum check` on bad certificates, TLS to
backends, and certificates reloaded on SIGHUP while old connections keep working. Certificates
are made at test time with `openssl req` in the test's temp folder."""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import free_port, fulcrum_bin, wait_until


def make_cert(folder, name, names=None, serial=None):
    """A self-signed certificate for `names` (SAN DNS) in folder/name.pem and name.key."""
    names = names or [name]
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
           "-days", "2", "-subj", "/CN=" + names[0],
           "-addext", "subjectAltName=" + ",".join("DNS:" + n for n in names)]
    if serial is not None:
        cmd += ["-set_serial", str(serial)]
    subprocess.run(cmd, check=True, capture_output=True)
    return cert, key


def https_config(port, certs, routes, backends=(), workers=2):
    return {"workers": workers, "shutdown_grace": "3s",
            "listeners": [{"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "https",
                           "tls": [{"cert": c, "key": k} for c, k in certs], "routes": routes}],
            "backends": list(backends)}


def app_backend(b, **extra):
    d = {"name": "app", "health": {"check": "none"},
         "servers": [{"name": b.name, "address": b.address}]}
    d.update(extra)
    return d


def curl(url, *args, timeout=10):
    r = subprocess.run(["curl", "-sk", "--max-time", str(timeout), *args, url], capture_output=True)
    return r.returncode, r.stdout


def s_client(port, *args, stdin=b"", sleep=0.0):
    """openssl s_client's output (stdin is sent, then after `sleep` seconds EOF)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if stdin:
        p.stdin.write(stdin)
        p.stdin.flush()
    time.sleep(sleep)
    out, _ = p.communicate(timeout=10)
    return out.decode(errors="replace")


def subject_cn(out):
    m = re.search(r"subject=.*CN\s*=\s*([^\s,/]+)", out)
    return m.group(1) if m else None


@pytest.fixture
def certs(tmp_path):
    a = make_cert(str(tmp_path), "a", ["a.test", "www.a.test"])
    b = make_cert(str(tmp_path), "b", ["b.test", "*.b.test"])
    return a, b


def test_http11_over_tls_with_forwarded_proto(fulcrum, backend, certs):
    port = free_port()
    b = backend("http", "app1")
    fulcrum(https_config(port, certs, [{"backend": "app"}], [app_backend(b)]))
    code, body = curl("https://127.0.0.1:%d/" % port, "--http1.1")
    assert code == 0 and body == b"app1\n"
    code, body = curl("https://127.0.0.1:%d/headers" % port, "--http1.1")
    heads = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert heads["x-forwarded-proto"] == "https"
    # TLS 1.2 and 1.3 both.
    for v in ("--tlsv1.2", "--tlsv1.3"):
        code, body = curl("https://127.0.0.1:%d/" % port, "--http1.1", v, "--tls-max", v[6:])
        assert code == 0 and body == b"app1\n", v
    # Keep-alive: several requests on one TLS connection.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as s:
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"app1\n"):
                chunk = s.recv(4096)
                assert chunk
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")


def test_sni_picks_certificate_and_first_is_default(fulcrum, backend, certs):
    port = free_port()
    b = backend("http", "app1")
    fulcrum(https_config(port, certs, [{"backend": "app"}], [app_backend(b)]))
    assert subject_cn(s_client(port, "-servername", "a.test")) == "a.test"
    assert subject_cn(s_client(port, "-servername", "www.a.test")) == "a.test"
    assert subject_cn(s_client(port, "-servername", "b.test")) == "b.test"
    assert subject_cn(s_client(port, "-servername", "x.b.test")) == "b.test"   # wildcard
    assert subject_cn(s_client(port, "-servername", "y.x.b.test")) == "a.test"  # one label only
    assert subject_cn(s_client(port, "-servername", "unknown.example")) == "a.test"
    assert subject_cn(s_client(port, "-noservername")) == "a.test"


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_session_resumption_across_workers(fulcrum, backend, certs, tmp_path, version):
    port = free_port()
    b = backend("http", "app1")
    fulcrum(https_config(port, certs, [{"backend": "app"}], [app_backend(b)], workers=4))
    sess = str(tmp_path / "sess.pem")
    # TLS 1.3 tickets come after the handshake: give s_client a moment to read one.
    out = s_client(port, "-servername", "a.test", "-sess_out", sess, version, sleep=0.5)
    assert "New," in out
    # With 4 workers, some of these land on another worker than the first: all resume.
    for _ in range(6):
        out = s_client(port, "-servername", "a.test", "-sess_in", sess, version)
        assert "Reused," in out, out


def test_static_files_over_tls(fulcrum, certs, tmp_path):
    port = free_port()
    root = tmp_path / "www"
    (root / "s").mkdir(parents=True)
    data = os.urandom(700000)
    (root / "s" / "big.bin").write_bytes(data)
    (root / "s" / "index.html").write_text("hello\n")
    fulcrum(https_config(port, certs, [{"match": {"path_prefix": "/s/"}, "static": {"root": str(root)}}]))
    code, body = curl("https://127.0.0.1:%d/s/big.bin" % port, "--http1.1")
    assert code == 0 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    code, body = curl("https://127.0.0.1:%d/s/big.bin" % port, "--http1.1", "-r", "1000-1999")
    assert body == data[1000:2000]
    code, body = curl("https://127.0.0.1:%d/s/" % port, "--http1.1")
    assert body == b"hello\n"


def run_check(tmp_path, config_text):
    path = tmp_path / "check.yaml"
    path.write_text(config_text)
    return subprocess.run([fulcrum_bin(), "check", "-c", str(path)], capture_output=True, text=True)


CHECK_CONFIG = """listeners:
  - name: web
    bind: 127.0.0.1:%d
    protocol: https
    tls:
      - { cert: %s, key: %s }
    routes:
      - backend: app
backends:
  - name: app
    servers:
      - { name: a1, address: 127.0.0.1:9 }
"""


def test_check_refuses_missing_and_mismatched_key(tmp_path, certs):
    (ca, ka), (cb, kb) = certs
    r = run_check(tmp_path, CHECK_CONFIG % (free_port(), ca, ka))
    assert r.returncode == 0, r.stderr
    missing = str(tmp_path / "nope.key")
    r = run_check(tmp_path, CHECK_CONFIG % (free_port(), ca, missing))
    assert r.returncode == 1
    assert re.search(r"check\.yaml:6:9: .*nope\.key.*No such file", r.stderr), r.stderr
    r = run_check(tmp_path, CHECK_CONFIG % (free_port(), ca, kb))
    assert r.returncode == 1
    assert re.search(r"check\.yaml:6:9: .*b\.key.*a\.pem.*key values mismatch", r.stderr), r.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    r = run_check(tmp_path, CHECK_CONFIG % (free_port(), garbage, ka))
    assert r.returncode == 1 and "garbage.pem" in r.stderr, r.stderr


def test_backend_tls(fulcrum, backend, certs, tmp_path):
    (ca, ka), _ = certs
    b = backend("http", "secure", extra_args=["--tls-cert", ca, "--tls-key", ka])
    port = free_port()
    cfg = {"workers": 1, "shutdown_grace": "3s",
           "listeners": [{"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "http",
                          "routes": [{"match": {"query": {"b": "v"}}, "backend": "verified"},
                                     {"match": {"query": {"b": "w"}}, "backend": "wrongname"},
                                     {"match": {"query": {"b": "s"}}, "backend": "system"},
                                     {"backend": "app"}]}],
           "backends": [app_backend(b, tls={"verify": False}),
                        {"name": "verified", "health": {"check": "none"}, "tls": {"sni": "a.test", "ca": ca},
                         "servers": [{"name": "v", "address": b.address}]},
                        {"name": "wrongname", "health": {"check": "none"}, "retries": 0,
                         "tls": {"sni": "other.test", "ca": ca},
                         "servers": [{"name": "w", "address": b.address}]},
                        {"name": "system", "health": {"check": "none"}, "retries": 0,
                         "servers": [{"name": "s", "address": b.address}], "tls": {}}]}
    fulcrum(cfg)
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(5):  # pooled: the same TLS connection carries them
        c.request("GET", "/")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"secure\n")
    c.request("GET", "/big?bytes=300000")
    r = c.getresponse()
    assert r.status == 200 and len(r.read()) == 300000
    c.request("GET", "/?b=v")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"secure\n"
    # Verification on: a certificate that does not name the server, or one no trusted CA signed.
    for path in ("/?b=w", "/?b=s"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status == 502, path
    c.close()


def serial_of(port):
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "a.test"],
                         input=b"", capture_output=True).stdout
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S).group(0)
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True).stdout
    return x.decode().strip()


def test_certificate_reload_on_sighup_keeps_old_connections(fulcrum, backend, tmp_path):
    folder = str(tmp_path)
    cert, key = make_cert(folder, "site", ["a.test"], serial=1111)
    port = free_port()
    b = backend("http", "app1")
    f = fulcrum(https_config(port, [(cert, key)], [{"backend": "app"}], [app_backend(b)]))
    assert serial_of(port) == "serial=0457"  # 1111
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port))
    old = ctx.wrap_socket(raw, server_hostname="a.test")

    def ask(s):
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = b""
        while not data.endswith(b"app1\n"):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        return data

    assert ask(old).startswith(b"HTTP/1.1 200")
    make_cert(folder, "site", ["a.test"], serial=2222)
    f.signal(signal.SIGHUP)
    wait_until(lambda: serial_of(port) == "serial=08AE", 10, what="new certificate served")
    # The connection made before the reload still works, with its old certificate.
    assert ask(old).startswith(b"HTTP/1.1 200")
    old.close()


def test_handshake_bounded_by_header_timeout(fulcrum, backend, certs):
    port = free_port()
    b = backend("http", "app1")
    cfg = https_config(port, certs, [{"backend": "app"}], [app_backend(b)])
    cfg["listeners"][0]["protect"] = {"header_timeout": "1s", "idle_timeout": "30s"}
    fulcrum(cfg)
    silent = socket.create_connection(("127.0.0.1", port))
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
    start = time.monotonic()
    for s in (silent, partial):
        s.settimeout(5)
        assert s.recv(100) == b""  # closed by fulcrum
    assert time.monotonic() - start < 3
    # A client that completes the handshake is served.
    code, body = curl("https://127.0.0.1:%d/" % port, "--http1.1")
    assert code == 0 and body == b"app1\n"


def test_uploads_and_upgrade_over_tls(fulcrum, backend, certs):
    port = free_port()
    b = backend("http", "app1")
    fulcrum(https_config(port, certs, [{"backend": "app"}], [app_backend(b)]))
    upload = os.urandom(400000)
    for extra in (["--data-binary", "@-"], ["-T", "-", "-H", "Transfer-Encoding: chunked"]):
        r = subprocess.run(["curl", "-sk", "--http1.1", "--max-time", "10", *extra,
                            "https://127.0.0.1:%d/sha256" % port], input=upload, capture_output=True)
        assert json.loads(r.stdout)["sha256"] == hashlib.sha256(upload).hexdigest(), extra
    # An Upgrade (101) tunnel over TLS: raw bytes both ways.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 101")
        rest = data.split(b"\r\n\r\n", 1)[1]
        s.sendall(b"ping-over-tls")
        while len(rest) < len(b"ping-over-tls"):
            rest += s.recv(4096)
        assert rest == b"ping-over-tls"
