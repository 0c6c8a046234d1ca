"""`protect:` end to end (issue #8): per-client rate limit (429 + Retry-After, burst),
max_conns_per_client, allow/deny CIDRs over IPv4 and IPv6, RE2 rules on the raw target, headers
and query (403), body limits with Content-Length and chunked (413), 431, tcp limits at accept, a
limit shared by two instances through Redis (and failing open when Redis is gone), the counters
by reason, and an attack (a flood plus 200 slowloris connections) during which another client is
still served. All of 127/8 is local, so 127.0.0.2 and 127.0.0.3 act as other clients.

Every loop is bounded in count and time; processes are stopped by PID."""
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from harness import free_port, tcp_config, wait_until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


# ---------------------------------------------------------------------------------------------
# clients

def sock(port, src="127.0.0.1", host="127.0.0.1", timeout=5):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s


def read_response(s):
    """(status, {lower-name: value}, body) of one response with Content-Length, or None on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    return status, headers, rest[:n]


def raw(port, data, src="127.0.0.1", host="127.0.0.1"):
    """Sends raw bytes on a fresh connection; the response, or None when the connection closed."""
    try:
        s = sock(port, src, host)
    except ConnectionResetError:  # refused at accept, before connect() returned
        return None
    try:
        s.sendall(data)
        return read_response(s)
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        s.close()


def get(port, path="/", src="127.0.0.1", host="127.0.0.1", headers=""):
    return raw(port, ("GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (path, headers)).encode(),
               src, host)


def refused_at_accept(port, src="127.0.0.1", host="127.0.0.1"):
    """True when fulcrum closes the connection at once, with a reset, and no answer."""
    try:
        s = sock(port, src, host, timeout=3)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    try:
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            return True
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    finally:
        s.close()


def http_backend(backend, name="b"):
    return backend("http", name)


def listener(port, protect, backend="app", bind_host="127.0.0.1", name="web", protocol="http"):
    l = {"name": name, "bind": "%s:%d" % (bind_host if ":" not in bind_host else "[%s]" % bind_host, port),
         "protocol": protocol}
    if protocol == "http":
        l["routes"] = [{"backend": backend}]
    else:
        l["backend"] = backend
    if protect:
        l["protect"] = protect
    return l


def one(fulcrum, b, protect, workers=2, admin_port=None, **top):
    port = free_port()
    if admin_port:
        top["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    cfg = tcp_config({"app": {"servers": [{"name": "s1", "address": b.address}]}},
                     [listener(port, protect)], workers=workers, **top)
    return fulcrum(cfg), port


def refused_metrics(admin_port):
    """{(listener, reason): count} of fulcrum_refused_total."""
    r = raw(admin_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r and r[0] == 200
    out = {}
    for m in re.finditer(r'^fulcrum_refused_total\{listener="([^"]+)",reason="([^"]+)"\} (\d+)',
                         r[2].decode(), re.M):
        out[(m.group(1), m.group(2))] = int(m.group(3))
    return out, r[2].decode()


# ---------------------------------------------------------------------------------------------
# http

def test_rate_429_with_retry_after_after_the_burst(fulcrum, backend):
    b = http_backend(backend)
    f, port = one(fulcrum, b, {"rate": "1/s", "burst": 4})
    statuses = []
    for _ in range(8):
        r = get(port)
        statuses.append(r[0])
        if r[0] == 429:
            assert int(r[1]["retry-after"]) >= 1
            last = r
    assert statuses[:4] == [200] * 4, statuses
    assert statuses.count(429) >= 3, statuses  # a token or so may come back during the loop
    assert int(last[1]["retry-after"]) == 1
    # Another client has its own bucket, across both workers.
    assert [get(port, src="127.0.0.2")[0] for _ in range(4)] == [200] * 4
    # After the wait Retry-After gave, the first client is served again.
    time.sleep(1.1)
    assert get(port)[0] == 200


def test_max_conns_per_client(fulcrum, backend):
    b = http_backend(backend)
    f, port = one(fulcrum, b, {"max_conns_per_client": 2})
    held = [sock(port), sock(port)]
    try:
        time.sleep(0.2)  # both accepted and counted
        assert refused_at_accept(port)
        assert get(port, src="127.0.0.2")[0] == 200  # someone else is not affected
        held.pop().close()
        wait_until(lambda: get(port) is not None, 5, what="a place freed by a closed connection")
    finally:
        for s in held:
            s.close()


def test_deny_and_allow_ipv4_and_ipv6(fulcrum, backend):
    b = http_backend(backend)
    p_deny, p_allow, p6_deny, p6_allow = free_port(), free_port(), free_port(), free_port()
    cfg = tcp_config({"app": {"servers": [{"name": "s1", "address": b.address}]}}, [
        listener(p_deny, {"deny": ["127.0.0.2/32", "2001:db8::/32"]}, name="deny4"),
        listener(p_allow, {"allow": ["127.0.0.1/32"]}, name="allow4"),
        listener(p6_deny, {"deny": ["::1/128"]}, bind_host="::1", name="deny6"),
        listener(p6_allow, {"allow": ["::1"], "deny": ["192.0.2.0/24"]}, bind_host="::1", name="allow6"),
    ])
    fulcrum(cfg)
    assert get(p_deny)[0] == 200
    assert refused_at_accept(p_deny, src="127.0.0.2")
    assert get(p_allow)[0] == 200
    assert refused_at_accept(p_allow, src="127.0.0.3")
    assert refused_at_accept(p6_deny, src=None, host="::1")
    assert get(p6_allow, src=None, host="::1")[0] == 200


def test_rules_on_the_raw_target_headers_and_query(fulcrum, backend, tmp_path):
    log = tmp_path / "requests.log"
    b = backend("http", "b", extra_args=["--request-log", str(log)])
    rules = [{"path_regex": "^/health$", "action": "allow"},
             {"path_regex": r"\.\./", "action": "deny"},
             {"path_regex": "(?i)%2e%2e", "action": "deny"},
             {"header": "User-Agent", "regex": "sqlmap", "action": "deny"},
             {"query": "id", "regex": r"(?i)union.+select", "action": "deny"}]
    f, port = one(fulcrum, b, {"rules": rules})
    assert get(port, "/a/b")[0] == 404           # passed (the backend knows no /a/b)
    assert get(port, "/a/../b")[0] == 403        # as received: not normalised to /b first
    assert get(port, "/a/%2E%2e/b")[0] == 403    # nor decoded
    assert get(port, "/a/b", headers="user-agent: sqlmap/1.7\r\n")[0] == 403
    assert get(port, "/s?x=1&id=1%20UNION%20SELECT%20pw")[0] == 403
    assert get(port, "/s?xid=1%20UNION%20SELECT")[0] == 404  # another parameter: passes (backend 404)
    assert get(port, "/health", headers="User-Agent: sqlmap\r\n")[0] == 200  # allow short-circuits
    reached = [line.split()[3] for line in log.read_text().splitlines() if line.startswith("req ")]
    assert reached == ["/a/b", "/s?xid=1%20UNION%20SELECT", "/health"], reached


def test_body_limits_content_length_and_chunked(fulcrum, backend, tmp_path):
    log = tmp_path / "requests.log"
    b = backend("http", "b", extra_args=["--request-log", str(log)])
    f, port = one(fulcrum, b, {"max_body_bytes": 1000})
    ok = raw(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" +
             b"a" * 1000)
    assert ok[0] == 200 and ok[2] == b"a" * 1000
    # Content-Length over the limit: 413 before any backend is contacted, body never sent.
    r = raw(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    assert r[0] == 413
    # Chunked: 413 once the running total passes the limit, then the connection closes.
    s = sock(port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"258\r\n" + b"b" * 600 + b"\r\n")
        time.sleep(0.2)
        try:
            s.sendall(b"258\r\n" + b"b" * 600 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = read_response(s)
        assert r[0] == 413
        assert r[1].get("connection") == "close"
        s.settimeout(3)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        s.close()
    reqs = [line for line in log.read_text().splitlines() if line.startswith("req ")]
    assert len(reqs) <= 2 and "POST /echo" in reqs[0]  # the 1001-byte request reached no server


def test_header_too_large_431(fulcrum, backend):
    b = http_backend(backend)
    f, port = one(fulcrum, b, {"max_header_bytes": "1KiB"})
    assert get(port, headers="X-Small: %s\r\n" % ("a" * 100))[0] == 200
    assert get(port, headers="X-Big: %s\r\n" % ("a" * 2000))[0] == 431


def test_every_refusal_counted_by_reason(fulcrum, backend):
    b = http_backend(backend)
    admin = free_port()
    protect = {"rate": "1/s", "burst": 3, "max_conns_per_client": 3, "deny": ["127.0.0.9/32"],
               "rules": [{"path_regex": r"\.\./"}], "max_body_bytes": 10, "max_header_bytes": "1KiB",
               "header_timeout": "500ms"}
    f, port = one(fulcrum, b, protect, admin_port=admin)
    assert get(port, "/../", src="127.0.0.2")[0] == 403
    assert raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", src="127.0.0.3")[0] == 413
    assert get(port, headers="X: %s\r\n" % ("a" * 2000), src="127.0.0.4")[0] == 431
    assert refused_at_accept(port, src="127.0.0.9")
    s = sock(port, src="127.0.0.5")
    s.sendall(b"GET / HTTP/1.1\r\n")
    assert read_response(s)[0] == 408
    s.close()
    statuses = [get(port, src="127.0.0.6")[0] for _ in range(5)]
    assert 429 in statuses
    held = [sock(port, src="127.0.0.7") for _ in range(3)]
    time.sleep(0.2)
    assert refused_at_accept(port, src="127.0.0.7")
    for h in held:
        h.close()
    counts, text = refused_metrics(admin)
    for reason in ("rule", "body_too_large", "header_too_large", "acl", "header_timeout", "rate", "conns"):
        assert counts.get(("web", reason), 0) >= 1, (reason, counts)


# ---------------------------------------------------------------------------------------------
# tcp

def test_tcp_rate_conns_and_acl_at_accept(fulcrum, backend):
    echo = backend("echo", "e")
    p_rate, p_conns, p_acl = free_port(), free_port(), free_port()
    cfg = tcp_config({"app": {"servers": [{"name": "e1", "address": echo.address}]}}, [
        listener(p_rate, {"rate": "1/s", "burst": 2}, protocol="tcp", name="trate"),
        listener(p_conns, {"max_conns_per_client": 2}, protocol="tcp", name="tconns"),
        listener(p_acl, {"deny": ["127.0.0.2/32"]}, protocol="tcp", name="tacl"),
    ])
    fulcrum(cfg)

    def echoes(port, src="127.0.0.1"):
        try:
            s = sock(port, src)
        except ConnectionResetError:
            return False
        try:
            s.sendall(b"ping")
            return s.recv(4) == b"ping"
        except (ConnectionResetError, BrokenPipeError):
            return False
        finally:
            s.close()

    assert echoes(p_rate) and echoes(p_rate)
    assert refused_at_accept(p_rate)            # third within the second: closed at once
    assert echoes(p_rate, src="127.0.0.2")      # another client
    held = [sock(p_conns), sock(p_conns)]
    try:
        for h in held:
            h.sendall(b"x")
            assert h.recv(1) == b"x"
        assert refused_at_accept(p_conns)
        assert echoes(p_conns, src="127.0.0.2")
    finally:
        for h in held:
            h.close()
    wait_until(lambda: echoes(p_conns), 5, what="connections given back")
    assert echoes(p_acl)
    assert refused_at_accept(p_acl, src="127.0.0.2")


# ---------------------------------------------------------------------------------------------
# redis: one limit shared by two instances

@pytest.fixture
def redis():
    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, what="redis-server")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.skipif(not shutil.which("redis-server") and not __import__("os").path.exists(REDIS),
                    reason="redis-server not installed")
def test_redis_shares_one_limit_between_two_instances(fulcrum, backend, redis):
    proc, rport = redis
    b = http_backend(backend)
    protect = {"rate": "1/s", "burst": 10, "store": {"redis": "127.0.0.1:%d" % rport}}
    admin = free_port()
    f1, p1 = one(fulcrum, b, protect)
    f2, p2 = one(fulcrum, b, protect, admin_port=admin)
    time.sleep(0.5)  # both connected to Redis
    ok = {p1: 0, p2: 0}
    refused = {p1: 0, p2: 0}
    t0 = time.monotonic()
    for i in range(60):
        p = p1 if i % 2 == 0 else p2
        st = get(p)[0]
        if st == 200:
            ok[p] += 1
        elif st == 429:
            refused[p] += 1
        time.sleep(0.01)  # a client's pace, not a flood: the slack is what comes in one Redis round trip
    elapsed = time.monotonic() - t0
    total_ok = ok[p1] + ok[p2]
    # Apart, each instance would allow its own burst (10) plus its refill: 20 or more together.
    # Shared, the two together allow one burst plus one refill, and a few requests per instance
    # in flight to Redis when the bucket ran dry (the store never waits for Redis).
    print("redis shared limit: ok %s refused %s in %.2fs" % (ok, refused, elapsed))
    assert total_ok <= 10 + 1 * elapsed + 6, (ok, refused, elapsed)
    assert total_ok >= 10, (ok, refused, elapsed)
    assert refused[p1] > 0 and refused[p2] > 0, (ok, refused)

    # Redis gone: fail open (requests pass), with a log line and a metric.
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(0.3)
    assert [get(p2, src="127.0.0.2")[0] for _ in range(10)] == [200] * 10
    r = raw(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    m = re.search(r'^fulcrum_protect_store_fail_open_total\{listener="web"\} (\d+)', r[2].decode(), re.M)
    assert m and int(m.group(1)) >= 10
    wait_until(lambda: "fail open" in f2.stderr, 5, what="the fail-open log line")


# ---------------------------------------------------------------------------------------------
# under attack

def test_under_attack_others_are_still_served(fulcrum, backend, capsys):
    """127.0.0.1 floods (2 keep-alive connections, as fast as it can, 4 s) and holds 200
    slowloris connections; 127.0.0.2 makes 60 ordinary requests meanwhile, all answered."""
    b = http_backend(backend)
    admin = free_port()
    protect = {"rate": "20/s", "burst": 40, "max_conns_per_client": 100, "header_timeout": "2s"}
    f, port = one(fulcrum, b, protect, admin_port=admin)
    stop = threading.Event()
    flood_counts = {"sent": 0, 429: 0, 200: 0, "other": 0}
    lock = threading.Lock()

    def flood():
        deadline = time.monotonic() + 6
        s = None
        for _ in range(200000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                if s is None:
                    s = sock(port)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                r = read_response(s)
                if r is None:
                    s.close()
                    s = None
                    continue
                with lock:
                    flood_counts["sent"] += 1
                    k = r[0] if r[0] in (200, 429) else "other"
                    flood_counts[k] += 1
            except OSError:
                if s:
                    s.close()
                s = None
        if s:
            s.close()

    slow = []

    def slowloris():
        for _ in range(200):
            try:
                s = sock(port, timeout=1)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            except OSError:
                pass
        deadline = time.monotonic() + 6
        while not stop.is_set() and time.monotonic() < deadline:
            for s in list(slow):
                try:
                    s.send(b"X-a: b\r\n")
                except OSError:
                    pass
            time.sleep(0.5)

    threads = [threading.Thread(target=flood) for _ in range(2)] + [threading.Thread(target=slowloris)]
    for t in threads:
        t.start()
    latencies = []
    failures = []
    try:
        time.sleep(0.5)  # the attack is on
        for i in range(60):
            t0 = time.monotonic()
            r = get(port, "/?n=%d" % i, src="127.0.0.2")
            latencies.append((time.monotonic() - t0) * 1000)
            if r is None or r[0] != 200:
                failures.append(r and r[0])
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        for s in slow:
            s.close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    with capsys.disabled():  # shown in the test output, not only with -s
        print("\nunder attack: normal client (127.0.0.2) %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
              "flood from 127.0.0.1 %s; slowloris connections opened %d"
              % (len(latencies), p50, p99, latencies[-1], flood_counts, len(slow)))
    assert not failures, failures
    assert flood_counts[429] > flood_counts[200]  # the flood was mostly refused
    assert p99 < 1000
    counts, _ = refused_metrics(admin)
    assert counts.get(("web", "rate"), 0) > 0
    assert counts.get(("web", "conns"), 0) + counts.get(("web", "header_timeout"), 0) > 0
    # Tens of thousands of refusals, a few log lines a second.
    lines = f.stderr.count("\n")
    assert lines < 300, lines


# ---------------------------------------------------------------------------------------------
# reload

def test_reload_builds_fresh_limits_and_retires_the_old(fulcrum, backend, redis):
    """A reload gives the new generation new counters (and a new Redis connection); the old
    generation's store goes with it, and the process still stops cleanly."""
    import os
    import signal
    proc, rport = redis
    b = http_backend(backend)
    port = free_port()

    def cfg(burst):
        return tcp_config({"app": {"servers": [{"name": "s1", "address": b.address}]}},
                          [listener(port, {"rate": "1/m", "burst": burst, "max_conns_per_client": 50,
                                           "store": {"redis": "127.0.0.1:%d" % rport}})])
    f = fulcrum(cfg(2))
    time.sleep(0.3)
    assert [get(port)[0] for _ in range(3)] == [200, 200, 429]
    f.write_config(cfg(5))
    os.kill(f.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded" in f.stderr, 10, what="the reload")
    time.sleep(0.5)
    # The new generation's mirror starts full (5), but Redis still holds this client's empty
    # bucket: after a round trip or so to Redis the shared limit is back (a fresh in-process store
    # would give all 5).
    statuses = [get(port)[0] for _ in range(8)]
    assert statuses.count(200) <= 3, statuses
    assert statuses[-1] == 429, statuses
