"""Static files served by fulcrum (SPEC: Static files), and the web-server-in-front-of-the-app
layout of examples/web.yaml with a real backend."""
import hashlib
import http.client
import os
import pathlib
import socket

import pytest

from harness import free_port, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]


def raw_get(port, target, headers=""):
    """A request with the target exactly as written (no client-side normalising)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (target, headers)).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body


def req(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


@pytest.fixture
def site(tmp_path, fulcrum):
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "docs" / "index.html").write_text("docs")
    (root / "style.css").write_text("body{}")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    port = free_port()
    f = fulcrum({"workers": 2, "listeners": [{"name": "web", "bind": "127.0.0.1:%d" % port, "routes": [
        {"match": {"path_prefix": "/app/"}, "static": {"root": str(root), "fallback": "/index.html"}},
        {"static": {"root": str(root)}}]}], "backends": []})
    return port, root


def test_files_types_and_validators(site):
    port, root = site
    r, body = req(port, "GET", "/style.css")
    assert r.status == 200 and body == b"body{}"
    assert r.getheader("Content-Type").startswith("text/css")
    assert r.getheader("ETag") and r.getheader("Last-Modified")
    r, body = req(port, "GET", "/big.bin")
    assert hashlib.sha256(body).digest() == hashlib.sha256((root / "big.bin").read_bytes()).digest()
    r, body = req(port, "GET", "/")
    assert body == b"<h1>home</h1>"
    r, body = req(port, "GET", "/docs/")
    assert body == b"docs"


def test_conditional_requests_get_304(site):
    port, _ = site
    r, _ = req(port, "GET", "/style.css")
    etag, modified = r.getheader("ETag"), r.getheader("Last-Modified")
    assert req(port, "GET", "/style.css", {"If-None-Match": etag})[0].status == 304
    assert req(port, "GET", "/style.css", {"If-Modified-Since": modified})[0].status == 304
    assert req(port, "GET", "/style.css", {"If-None-Match": '"nope"'})[0].status == 200


def test_ranges_and_head(site):
    port, root = site
    data = (root / "big.bin").read_bytes()
    r, body = req(port, "GET", "/big.bin", {"Range": "bytes=100-199"})
    assert r.status == 206 and body == data[100:200]
    assert r.getheader("Content-Range") == "bytes 100-199/%d" % len(data)
    r, body = req(port, "GET", "/big.bin", {"Range": "bytes=-10"})
    assert r.status == 206 and body == data[-10:]
    r, body = req(port, "GET", "/big.bin", {"Range": "bytes=%d-" % len(data)})
    assert r.status == 416
    r, body = req(port, "HEAD", "/big.bin")
    assert r.status == 200 and body == b"" and int(r.getheader("Content-Length")) == len(data)


@pytest.mark.parametrize("target", [
    "/../secret.txt", "/docs/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/%2E%2E/secret.txt",
    "/..%2fsecret.txt", "/%252e%252e/secret.txt", "/leak.txt", "/style.css%00.png", "/%00",
    "/docs/%2e%2e/%2e%2e/secret.txt",
])
def test_traversal_attempts_get_404(site, target):
    port, _ = site
    status, _, body = raw_get(port, target)
    assert status == 404
    assert b"secret" not in body


def test_fallback_serves_the_single_page_app(site):
    port, _ = site
    r, body = req(port, "GET", "/app/users/42/settings")
    assert r.status == 200 and body == b"<h1>home</h1>"


def test_keep_alive_between_static_responses(site):
    port, _ = site
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(20):
        c.request("GET", "/style.css")
        r = c.getresponse()
        assert r.read() == b"body{}"
    c.close()


def test_files_changed_on_disk_are_served_new_within_a_second(site, tmp_path):
    """Each worker keeps recently served files open (small ones in memory) for up to a second:
    a change, a removal or a symlink swapped in is seen on the first request after that."""
    port, root = site
    (root / "live.txt").write_text("one")
    assert req(port, "GET", "/live.txt")[1] == b"one"
    (root / "live.txt").write_text("two!")
    wait_until(lambda: req(port, "GET", "/live.txt")[1] == b"two!", 3, 0.05, "the new content")
    big = os.urandom(100 * 1024)  # kept open, sent with sendfile from the cached descriptor
    (root / "big2.bin").write_bytes(big)
    assert req(port, "GET", "/big2.bin")[1] == big
    (root / "big2.bin").unlink()
    wait_until(lambda: req(port, "GET", "/big2.bin")[0].status == 404, 3, 0.05, "the removal")
    assert req(port, "GET", "/live.txt")[0].status == 200
    (root / "live.txt").unlink()
    os.symlink(tmp_path / "secret.txt", root / "live.txt")
    wait_until(lambda: raw_get(port, "/live.txt")[0] == 404, 3, 0.05, "the symlink out of root refused")


def test_web_server_in_front_of_the_app_example(fulcrum, backend, tmp_path):
    """examples/web.yaml: static paths from disk, /api/ to the app servers."""
    app1, app2 = backend("http", "app1"), backend("http", "app2")
    port = free_port()
    text = (ROOT / "examples" / "web.yaml").read_text()
    text = text.replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
    text = text.replace("127.0.0.1:9001", app1.address).replace("127.0.0.1:9002", app2.address)
    text = text.replace("./site/public", str(ROOT / "examples" / "site" / "public"))
    f = fulcrum(text)
    r, body = req(port, "GET", "/")
    assert r.status == 200 and b"Served by fulcrum" in body
    r, body = req(port, "GET", "/static/app.css")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/css")
    # The app servers take traffic once their first health check has passed.
    wait_until(lambda: req(port, "GET", "/api/hello")[0].status != 503, 10, what="app servers up")
    for _ in range(4):
        # The test backend knows no /api/ paths: its own "not found" shows the request reached it
        # (fulcrum's own 404 says "no route").
        r, body = req(port, "GET", "/api/hello")
        assert b"not found" in body and b"no route" not in body
    r, body = req(port, "GET", "/some/client/route")  # SPA fallback
    assert b"Served by fulcrum" in body
