"""The HTTP cache (SPEC: Caching; RFC 9111) against a real backend that counts what reaches it:
MISS then HIT with Age, expiry and revalidation (304 refresh, 200 replace), what is not stored,
Vary, LRU eviction by size, conditional and HEAD requests answered from the cache, chunked bodies,
and 100 simultaneous misses collapsed into one upstream request."""
import email.utils
import http.client
import http.server
import socket
import threading
import time

import pytest

from harness import free_port, wait_until


class Origin:
    """A threaded HTTP/1.1 server in this process. routes[path] = fn(handler) -> (status, headers,
    body[, chunked]); every request is counted and its headers kept."""

    def __init__(self):
        self.routes = {}
        self.counts = {}
        self.seen = {}
        self.lock = threading.Lock()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, send_body):
                path = self.path.split("?")[0]
                with origin.lock:
                    origin.counts[path] = origin.counts.get(path, 0) + 1
                    origin.seen.setdefault(path, []).append(dict(self.headers))
                if self.command in ("POST", "PUT", "DELETE"):
                    n = int(self.headers.get("Content-Length") or 0)
                    self.rfile.read(n)
                fn = origin.routes.get(path)
                if fn is None:
                    status, headers, body, chunked = 404, [], b"no route", False
                else:
                    r = fn(self)
                    status, headers, body = r[0], r[1], r[2]
                    chunked = len(r) > 3 and r[3]
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if status == 304:
                    self.end_headers()
                    return
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if send_body:
                        for i in range(0, len(body), 1000):
                            part = body[i:i + 1000]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

            def do_POST(self):
                self._answer(True)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


@pytest.fixture
def proxy(origin, fulcrum):
    port, admin = free_port(), free_port()
    fulcrum({"workers": 2, "admin": {"listen": "127.0.0.1:%d" % admin},
             "listeners": [{"name": "web", "bind": "127.0.0.1:%d" % port, "routes": [
                 {"match": {"path_prefix": "/nocache/"}, "backend": "app"},
                 {"match": {"path_prefix": "/ttl/"}, "backend": "app",
                  "cache": {"size": "16MiB", "default_ttl": "60s"}},
                 {"match": {"path_prefix": "/small/"}, "backend": "app",
                  "cache": {"size": "64KiB"}},
                 {"backend": "app", "cache": {"size": "16MiB", "default_ttl": "0s"}}]}],
             "backends": [{"name": "app", "health": {"check": "none"},
                           "servers": [{"name": "o", "address": "127.0.0.1:%d" % origin.port}]}]})
    return port, admin


def get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def cached(max_age=60, extra=(), body=b"hello"):
    return lambda h: (200, [("Cache-Control", "max-age=%d" % max_age), *extra], body)


def xc(r):
    return r.getheader("X-Cache")


def test_miss_then_hit_with_age(proxy, origin):
    port, _ = proxy
    origin.routes["/a"] = cached(body=b"A" * 3000)
    r, body = get(port, "/a")
    assert r.status == 200 and xc(r) == "MISS" and body == b"A" * 3000
    time.sleep(1.1)
    r, body = get(port, "/a")
    assert r.status == 200 and xc(r) == "HIT" and body == b"A" * 3000
    assert int(r.getheader("Age")) >= 1
    assert r.getheader("Date") and r.getheader("Content-Length") == "3000"
    assert origin.count("/a") == 1
    # The query is part of the key.
    r, _ = get(port, "/a?x=1")
    assert xc(r) == "MISS" and origin.count("/a") == 2


def test_no_cache_route_has_no_x_cache(proxy, origin):
    port, _ = proxy
    origin.routes["/nocache/x"] = cached()
    r, _ = get(port, "/nocache/x")
    assert r.status == 200 and xc(r) is None
    get(port, "/nocache/x")
    assert origin.count("/nocache/x") == 2


def test_stale_revalidated_with_etag_304(proxy, origin):
    port, _ = proxy

    def etag(h):
        if h.headers.get("If-None-Match") == '"v1"':
            return 304, [("ETag", '"v1"'), ("Cache-Control", "max-age=1")], b""
        return 200, [("ETag", '"v1"'), ("Cache-Control", "max-age=1")], b"version one"
    origin.routes["/e"] = etag
    r, body = get(port, "/e")
    assert xc(r) == "MISS" and body == b"version one"
    time.sleep(1.3)
    r, body = get(port, "/e")
    assert r.status == 200 and xc(r) == "REVALIDATED" and body == b"version one"
    assert origin.seen["/e"][-1].get("If-None-Match") == '"v1"'
    r, body = get(port, "/e")
    assert xc(r) == "HIT" and body == b"version one"
    assert origin.count("/e") == 2


def test_stale_revalidated_with_last_modified(proxy, origin):
    port, _ = proxy
    lm = email.utils.formatdate(time.time() - 3600, usegmt=True)

    def by_date(h):
        if h.headers.get("If-Modified-Since") == lm:
            return 304, [("Cache-Control", "max-age=1")], b""
        return 200, [("Last-Modified", lm), ("Cache-Control", "max-age=1")], b"dated"
    origin.routes["/lm"] = by_date
    get(port, "/lm")
    time.sleep(1.3)
    r, body = get(port, "/lm")
    assert xc(r) == "REVALIDATED" and body == b"dated"
    assert origin.seen["/lm"][-1].get("If-Modified-Since") == lm


def test_stale_replaced_by_200(proxy, origin):
    port, _ = proxy
    version = {"v": 1}

    def changing(h):
        v = version["v"]
        return 200, [("ETag", '"v%d"' % v), ("Cache-Control", "max-age=1")], b"body %d" % v
    origin.routes["/c"] = changing
    assert get(port, "/c")[1] == b"body 1"
    version["v"] = 2
    time.sleep(1.3)
    r, body = get(port, "/c")
    assert xc(r) == "MISS" and body == b"body 2"
    assert origin.seen["/c"][-1].get("If-None-Match") == '"v1"'
    r, body = get(port, "/c")
    assert xc(r) == "HIT" and body == b"body 2"


@pytest.mark.parametrize("headers", [
    [("Cache-Control", "no-store, max-age=60")],
    [("Cache-Control", "private, max-age=60")],
    [("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")],
    [("Cache-Control", "max-age=60"), ("Vary", "*")],
    [],  # no freshness information, default_ttl 0
    [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
])
def test_not_stored(proxy, origin, headers):
    port, _ = proxy
    origin.routes["/n"] = lambda h: (200, headers, b"x")
    assert xc(get(port, "/n")[0]) == "MISS"
    assert xc(get(port, "/n")[0]) == "MISS"
    assert origin.count("/n") == 2


def test_set_cookie_public_stored_without_cookie(proxy, origin):
    port, _ = proxy
    origin.routes["/sc"] = cached(extra=[("Cache-Control", "public"), ("Set-Cookie", "s=1")])
    r, _ = get(port, "/sc")
    assert r.getheader("Set-Cookie") == "s=1"
    r, _ = get(port, "/sc")
    assert xc(r) == "HIT" and r.getheader("Set-Cookie") is None


def test_default_ttl_applies_without_freshness(proxy, origin):
    port, _ = proxy
    origin.routes["/ttl/x"] = lambda h: (200, [], b"ttl")
    get(port, "/ttl/x")
    r, body = get(port, "/ttl/x")
    assert xc(r) == "HIT" and body == b"ttl" and origin.count("/ttl/x") == 1


def test_s_maxage_over_max_age_and_expires(proxy, origin):
    port, _ = proxy
    origin.routes["/s"] = lambda h: (200, [("Cache-Control", "max-age=0, s-maxage=60")], b"s")
    get(port, "/s")
    assert xc(get(port, "/s")[0]) == "HIT"
    origin.routes["/s0"] = lambda h: (200, [("Cache-Control", "max-age=60, s-maxage=0")], b"s")
    get(port, "/s0")
    assert xc(get(port, "/s0")[0]) == "MISS"
    origin.routes["/exp"] = lambda h: (200, [("Expires", email.utils.formatdate(time.time() + 60, usegmt=True))],
                                       b"e")
    get(port, "/exp")
    assert xc(get(port, "/exp")[0]) == "HIT" and origin.count("/exp") == 1


def test_vary_variants(proxy, origin):
    port, _ = proxy
    origin.routes["/v"] = lambda h: (200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                                     b"enc=" + (h.headers.get("Accept-Encoding") or "none").encode())
    r, body = get(port, "/v", {"Accept-Encoding": "gzip"})
    assert body == b"enc=gzip" and xc(r) == "MISS"
    r, body = get(port, "/v", {"Accept-Encoding": "identity"})
    assert body == b"enc=identity" and xc(r) == "MISS"
    r, body = get(port, "/v", {"Accept-Encoding": "gzip"})
    assert body == b"enc=gzip" and xc(r) == "HIT"
    r, body = get(port, "/v", {"Accept-Encoding": "identity"})
    assert body == b"enc=identity" and xc(r) == "HIT"
    assert origin.count("/v") == 2


def test_lru_eviction_by_size(proxy, origin):
    port, _ = proxy  # /small/: 64 KiB, so objects above 8 KiB are not stored
    for i in range(20):
        origin.routes["/small/%d" % i] = cached(body=b"%02d" % i * 2500)
    for i in range(20):
        assert xc(get(port, "/small/%d" % i)[0]) == "MISS"
    r, body = get(port, "/small/19")
    assert xc(r) == "HIT" and body == b"19" * 2500
    r, _ = get(port, "/small/0")
    assert xc(r) == "MISS"  # evicted: 20 x 5 KiB do not fit in 64 KiB
    origin.routes["/small/big"] = cached(body=b"b" * 10000)
    get(port, "/small/big")
    assert xc(get(port, "/small/big")[0]) == "MISS"


def test_client_conditionals_answered_from_cache(proxy, origin):
    port, _ = proxy
    lm = email.utils.formatdate(time.time() - 3600, usegmt=True)
    origin.routes["/cond"] = cached(extra=[("ETag", '"abc"'), ("Last-Modified", lm)])
    get(port, "/cond")
    r, body = get(port, "/cond", {"If-None-Match": '"abc"'})
    assert r.status == 304 and body == b"" and r.getheader("ETag") == '"abc"' and xc(r) == "HIT"
    r, body = get(port, "/cond", {"If-None-Match": '"zzz", W/"abc"'})
    assert r.status == 304
    r, body = get(port, "/cond", {"If-None-Match": '"zzz"'})
    assert r.status == 200 and body == b"hello"
    r, _ = get(port, "/cond", {"If-Modified-Since": email.utils.formatdate(time.time(), usegmt=True)})
    assert r.status == 304
    assert origin.count("/cond") == 1


def test_head_served_from_get_entry(proxy, origin):
    port, _ = proxy
    origin.routes["/h"] = cached(body=b"0123456789")
    get(port, "/h")
    r, body = get(port, "/h", method="HEAD")
    assert r.status == 200 and body == b"" and xc(r) == "HIT" and r.getheader("Content-Length") == "10"
    assert origin.count("/h") == 1
    origin.routes["/h2"] = cached(body=b"x")
    get(port, "/h2", method="HEAD")  # a HEAD miss goes upstream and is not stored
    assert xc(get(port, "/h2")[0]) == "MISS" and origin.count("/h2") == 2


def test_chunked_upstream_body_cached(proxy, origin):
    port, _ = proxy
    data = bytes(range(256)) * 40
    origin.routes["/chunk"] = lambda h: (200, [("Cache-Control", "max-age=60")], data, True)
    r, body = get(port, "/chunk")
    assert xc(r) == "MISS" and body == data and r.getheader("Transfer-Encoding") == "chunked"
    r, body = get(port, "/chunk")
    assert xc(r) == "HIT" and body == data and r.getheader("Content-Length") == str(len(data))
    assert r.getheader("Transfer-Encoding") is None


def test_request_no_cache_revalidates_and_no_store_bypasses(proxy, origin):
    port, _ = proxy

    def etag(h):
        if h.headers.get("If-None-Match") == '"r"':
            return 304, [("ETag", '"r"'), ("Cache-Control", "max-age=60")], b""
        return 200, [("ETag", '"r"'), ("Cache-Control", "max-age=60")], b"r"
    origin.routes["/r"] = etag
    get(port, "/r")
    r, body = get(port, "/r", {"Cache-Control": "no-cache"})
    assert xc(r) == "REVALIDATED" and body == b"r" and origin.count("/r") == 2
    r, _ = get(port, "/r", {"Cache-Control": "no-store"})
    assert xc(r) == "MISS" and origin.count("/r") == 3
    assert xc(get(port, "/r")[0]) == "HIT"


def test_authorization(proxy, origin):
    port, _ = proxy
    origin.routes["/auth"] = cached()
    get(port, "/auth", {"Authorization": "Basic eDp5"})
    get(port, "/auth", {"Authorization": "Basic eDp5"})
    assert origin.count("/auth") == 2
    origin.routes["/authpub"] = cached(extra=[("Cache-Control", "public")])
    get(port, "/authpub", {"Authorization": "Basic eDp5"})
    assert xc(get(port, "/authpub", {"Authorization": "Basic eDp5"})[0]) == "HIT"


def test_post_invalidates(proxy, origin):
    port, _ = proxy
    origin.routes["/p"] = cached()
    get(port, "/p")
    assert xc(get(port, "/p")[0]) == "HIT"
    get(port, "/p", method="POST")
    assert xc(get(port, "/p")[0]) == "MISS"


def burst(port, path, n, timeout=15):
    """n clients send the same GET at once; returns the responses (bytes), bounded in time."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=timeout) for _ in range(n)]
    req = ("GET %s HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n" % path).encode()
    for s in socks:
        s.sendall(req)
    out = []
    deadline = time.monotonic() + timeout
    for s in socks:
        data = b""
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        out.append(data)
    return out


def test_100_simultaneous_misses_make_one_upstream_request(proxy, origin):
    port, _ = proxy

    def slow(h):
        time.sleep(0.5)
        return 200, [("Cache-Control", "max-age=60")], b"S" * 5000
    origin.routes["/slow"] = slow
    replies = burst(port, "/slow", 100)
    assert all(r.startswith(b"HTTP/1.1 200") and r.endswith(b"S" * 5000) for r in replies)
    assert origin.count("/slow") == 1
    hits = sum(b"X-Cache: HIT" in r for r in replies)
    assert hits == 99


def test_collapsed_waiters_go_upstream_when_uncacheable(proxy, origin):
    port, _ = proxy

    def slow_private(h):
        time.sleep(0.3)
        return 200, [("Cache-Control", "private")], b"P"
    origin.routes["/sp"] = slow_private
    replies = burst(port, "/sp", 20)
    assert all(r.startswith(b"HTTP/1.1 200") and r.endswith(b"P") for r in replies)
    assert origin.count("/sp") == 20


def test_metrics(proxy, origin):
    port, admin = proxy
    origin.routes["/m"] = cached()
    get(port, "/m")
    get(port, "/m")

    def scrape():
        text = get(admin, "/metrics")[1].decode()
        return text if 'fulcrum_cache_hits_total{listener="web"} 1' in text else None
    text = wait_until(scrape, 5, what="cache hit counted")
    assert 'fulcrum_cache_misses_total{listener="web"}' in text
    assert 'fulcrum_cache_stored_bytes_total{listener="web"}' in text
    assert "fulcrum_cache_revalidated_total" in text


def test_no_cache_response_revalidated_on_every_use(proxy, origin):
    port, _ = proxy

    def nc(h):
        if h.headers.get("If-None-Match") == '"n"':
            return 304, [("ETag", '"n"'), ("Cache-Control", "no-cache")], b""
        return 200, [("ETag", '"n"'), ("Cache-Control", "no-cache")], b"nc"
    origin.routes["/nc"] = nc
    assert xc(get(port, "/nc")[0]) == "MISS"
    for _ in range(3):
        r, body = get(port, "/nc")
        assert xc(r) == "REVALIDATED" and body == b"nc"
    assert origin.count("/nc") == 4


def test_reload_starts_with_an_empty_cache(origin, fulcrum):
    import os
    import signal
    port = free_port()
    f = fulcrum({"workers": 2, "listeners": [{"name": "web", "bind": "127.0.0.1:%d" % port, "routes": [
        {"backend": "app", "cache": {"size": "1MiB"}}]}],
        "backends": [{"name": "app", "health": {"check": "none"},
                      "servers": [{"name": "o", "address": "127.0.0.1:%d" % origin.port}]}]})
    origin.routes["/re"] = cached()
    get(port, "/re")
    assert xc(get(port, "/re")[0]) == "HIT"
    os.kill(f.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded" in f.stderr, 5, what="reload")
    assert xc(get(port, "/re")[0]) == "MISS"
    assert xc(get(port, "/re")[0]) == "HIT"
    assert origin.count("/re") == 2


def test_only_if_cached(proxy, origin):
    port, _ = proxy
    origin.routes["/oic"] = cached()
    r, _ = get(port, "/oic", {"Cache-Control": "only-if-cached"})
    assert r.status == 504 and origin.count("/oic") == 0
    get(port, "/oic")
    r, body = get(port, "/oic", {"Cache-Control": "only-if-cached"})
    assert r.status == 200 and xc(r) == "HIT" and body == b"hello"


def test_mixed_load_across_workers(proxy, origin):
    """Hits, misses, revalidations, Vary variants and invalidating POSTs at once from several
    threads: every answer has the body its URI and variant should have."""
    port, _ = proxy
    import random
    for i in range(20):
        path = "/mix/%d" % i
        origin.routes[path] = (lambda p: lambda h: (
            200, [("Cache-Control", "max-age=1"), ("ETag", '"%s"' % p), ("Vary", "Accept-Encoding")],
            (p + ":" + (h.headers.get("Accept-Encoding") or "-")).encode() * 50))(path)
    errors = []

    def worker(seed):
        rnd = random.Random(seed)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(150):
                path = "/mix/%d" % rnd.randrange(20)
                enc = rnd.choice(["gzip", "br", "identity"])  # http.client sends identity by default
                method = "POST" if rnd.random() < 0.05 else "GET"
                headers = {"Accept-Encoding": enc} if enc else {}
                c.request(method, path, headers=headers)
                r = c.getresponse()
                body = r.read()
                want = (path + ":" + (enc or "-")).encode() * 50
                if r.status != 200 or body != want:
                    errors.append((path, enc, r.status, body[:40]))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            c.close()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert sum(origin.count("/mix/%d" % i) for i in range(20)) < 8 * 150


def test_waiters_stop_waiting_after_five_seconds(proxy, origin):
    port, _ = proxy
    calls = {"n": 0, "at": []}

    def first_slow(h):
        with origin.lock:
            calls["n"] += 1
            n = calls["n"]
            calls["at"].append(time.monotonic())
        if n == 1:
            time.sleep(6.5)
        return 200, [("Cache-Control", "max-age=60")], b"w%d" % n
    origin.routes["/wait"] = first_slow
    start = time.monotonic()
    replies = burst(port, "/wait", 5)
    took = time.monotonic() - start
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies)
    # The four waiters went upstream themselves after 5 s, before the first answer came (6.5 s).
    assert origin.count("/wait") == 5
    assert sum(r.endswith(b"w1") for r in replies) == 1
    assert 6 < took < 12
    assert all(4.5 < t - calls["at"][0] < 6 for t in calls["at"][1:]), calls["at"]
