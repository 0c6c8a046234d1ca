"""The admin listener and access logs end to end (SPEC: Admin API, access_log), as an operator
meets them: /healthz, Prometheus /metrics after real traffic, /api/v1/backends, PATCH drain /
disabled / up / weight with a long request in flight, bearer tokens, `fulcrum check` refusing an
open admin listener, and access log lines in json and combined, reopened on SIGUSR1.

Backends are tests/support/backend.py in http mode (every response says `X-Backend: NAME`, and
GET /delay?ms=N answers late). Every wait is bounded."""
import http.client
import json
import os
import re
import signal
import threading

from harness import connect, free_port, run_fulcrum, tcp_config, wait_until


# ---------------------------------------------------------------------------------------------
# helpers

def request(port, method, path, body=None, headers=None, timeout=10):
    """(status, {lower-name: value}, body bytes) of one request on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def api(port, method, path, body=None, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status, _, data = request(port, method, path, body, headers)
    return status, (json.loads(data) if data else None)


def servers_of(port, backend="app", token=None):
    status, doc = api(port, "GET", "/api/v1/backends", token=token)
    assert status == 200, doc
    return {s["name"]: s for b in doc["backends"] if b["name"] == backend for s in b["servers"]}


def get(port, path="/"):
    """(status, X-Backend) of one proxied GET."""
    status, headers, _ = request(port, "GET", path)
    return status, headers.get("x-backend")


def start(fulcrum, backends, admin=None, access_log=None, workers=2, balance="round_robin", health=None,
          tcp=False, extra_servers=()):
    """fulcrum with an http listener (routes: /only/ -> app, nothing else, so other paths get
    404), an optional tcp listener, and an admin listener. Returns (fulcrum, web port, admin
    port, tcp port or None)."""
    web, admin_port, tcp_port = free_port(), free_port(), free_port() if tcp else None
    app = {"balance": balance,
           "servers": [{"name": b.name, "address": b.address} for b in backends] + list(extra_servers)}
    if health:
        app["health"] = health
    listeners = [{"name": "web", "bind": "127.0.0.1:%d" % web, "protocol": "http",
                  "routes": [{"match": {"path_prefix": "/"}, "backend": "app"}]}]
    if tcp:
        listeners.append({"name": "raw", "bind": "127.0.0.1:%d" % tcp_port, "protocol": "tcp", "backend": "app"})
    top = {"admin": dict({"listen": "127.0.0.1:%d" % admin_port}, **(admin or {}))}
    if access_log:
        top["access_log"] = access_log
    f = fulcrum(tcp_config({"app": app}, listeners, workers=workers, **top))
    return f, web, admin_port, tcp_port


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Strict reading of the text exposition format 0.0.4: {name: {"type", "help", "samples":
    [(labels dict, value)]}}. Every sample must belong to a family announced by HELP and TYPE."""
    fams, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in fams, "family %s twice" % name
            fams[name] = {"help": help_text, "samples": []}
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            fams[name]["type"] = kind
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert base in types, "sample %s before its TYPE" % name
        fams[base]["samples"].append((name, dict(LABEL.findall(labels)), float(value)))
    return fams


def metric(fams, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name
    return sum(v for n, l, v in fams.get(base, {"samples": []})["samples"]
               if n == name and all(l.get(k) == str(v2) for k, v2 in labels.items()))


def scrape(admin_port):
    status, headers, body = request(admin_port, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(body.decode())


# ---------------------------------------------------------------------------------------------
# /healthz, /metrics

def test_healthz_and_metrics_count_requests_by_code(fulcrum, backend):
    b1, b2 = backend("http", "s1"), backend("http", "s2")
    f, web, admin, raw = start(fulcrum, [b1, b2], tcp=True)
    status, _, body = request(admin, "GET", "/healthz")
    assert (status, body) == (200, b"OK\n")

    before = scrape(admin)
    for _ in range(10):
        assert get(web)[0] == 200
    for _ in range(3):
        assert get(web, "/status?code=503")[0] == 503
    # Refused by fulcrum itself: a request that does not parse (400), counted with a reason.
    with connect(web) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with connect(raw) as s:  # one tcp session through the same backend
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200" in s.recv(100)
    wait_until(lambda: metric(scrape(admin), "fulcrum_tcp_connections_total", listener="raw") == 1, 5,
               what="the tcp session counted")

    m = scrape(admin)
    for fam in ("fulcrum_requests_total", "fulcrum_request_duration_seconds", "fulcrum_server_up",
                "fulcrum_active_connections", "fulcrum_cache_hits_total", "fulcrum_health_checks_total",
                "fulcrum_server_active_requests", "fulcrum_server_weight", "fulcrum_refused_total"):
        assert fam in m and m[fam]["help"], "family %s missing" % fam
    assert m["fulcrum_request_duration_seconds"]["type"] == "histogram"
    assert m["fulcrum_requests_total"]["type"] == "counter"
    ok = metric(m, "fulcrum_requests_total", listener="web", code="2xx") - \
        metric(before, "fulcrum_requests_total", listener="web", code="2xx")
    assert ok == 10
    assert metric(m, "fulcrum_requests_total", listener="web", backend="app", code="5xx") == 3
    # Both servers took traffic, each with its own series.
    assert metric(m, "fulcrum_requests_total", server="s1") > 0 and metric(m, "fulcrum_requests_total", server="s2") > 0
    assert metric(m, "fulcrum_refused_total", listener="web", reason="parse_error") == 1
    assert metric(m, "fulcrum_requests_total", listener="web", backend="", server="", code="4xx") == 1
    # Histograms: cumulative buckets ending in +Inf == _count, one per server.
    for server in ("s1", "s2"):
        buckets = [(float(l["le"]), v) for n, l, v in m["fulcrum_request_duration_seconds"]["samples"]
                   if n.endswith("_bucket") and l["server"] == server and l["listener"] == "web"]
        assert buckets and buckets[-1][0] == float("inf")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert buckets[-1][1] == metric(m, "fulcrum_request_duration_seconds_count", listener="web", server=server)
    assert metric(m, "fulcrum_request_duration_seconds_count", listener="web") == 14
    assert metric(m, "fulcrum_server_up", backend="app", server="s1") == 1
    assert metric(m, "fulcrum_server_weight", backend="app", server="s2") == 1
    assert metric(m, "fulcrum_active_connections", listener="web") == 0
    assert metric(m, "fulcrum_accepted_connections_total", listener="web") == 14


def test_healthz_says_503_while_stopping(fulcrum, backend):
    b = backend("http", "s1")
    f, web, admin, _ = start(fulcrum, [b])
    slow = threading.Thread(target=lambda: get(web, "/delay?ms=1500"))
    slow.start()
    wait_until(lambda: servers_of(admin)["s1"]["active"] == 1, 5, what="the slow request in flight")
    f.signal(signal.SIGTERM)
    wait_until(lambda: request(admin, "GET", "/healthz")[0] == 503, 5, what="/healthz 503 while draining")
    slow.join(10)
    assert f.wait(15) == 0


# ---------------------------------------------------------------------------------------------
# /api/v1/backends and PATCH

def test_backends_api_lists_servers_with_states_and_last_check(fulcrum, backend):
    b1, b2, spare = backend("http", "s1"), backend("http", "s2"), backend("http", "spare")
    dead = "127.0.0.1:%d" % free_port()
    f, web, admin, _ = start(
        fulcrum, [b1, b2], health={"check": "http", "path": "/health", "interval": "300ms", "timeout": "300ms",
                                   "rise": 1, "fall": 1},
        extra_servers=[{"name": "gone", "address": dead}, {"name": "spare", "address": spare.address, "backup": True}])
    wait_until(lambda: [s["state"] for s in servers_of(admin).values()] == ["up", "up", "down", "up"], 10,
               what="s1 s2 up, gone down, the spare standing in for it")
    status, doc = api(admin, "GET", "/api/v1/backends")
    assert status == 200
    (app,) = doc["backends"]
    assert app["name"] == "app" and app["balance"] == "round_robin"
    s = {x["name"]: x for x in app["servers"]}
    for x in s.values():
        for field in ("name", "address", "state", "weight", "active", "requests", "ewma_ms", "last_check",
                      "reported_load", "effective_weight"):
            assert field in x, field
    assert s["s1"]["address"] == b1.address and s["s1"]["weight"] == 1
    assert s["gone"]["state"] == "down" and s["gone"]["last_check"]["result"] == "fail"
    assert "refused" in s["gone"]["last_check"]["reason"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", s["gone"]["last_check"]["at"])
    assert s["s1"]["last_check"]["result"] == "pass" and s["s1"]["last_check"]["duration_ms"] >= 0
    # An operator takes the dead server out; the spare goes on standing in for it.
    status, out = api(admin, "PATCH", "/api/v1/backends/app/servers/gone", {"state": "disabled"})
    assert status == 200 and out["state"] == "disabled"
    assert servers_of(admin)["gone"]["state"] == "disabled"
    # One backend, one server.
    status, one = api(admin, "GET", "/api/v1/backends/app/servers/s2")
    assert status == 200 and one["name"] == "s2" and one["state"] == "up"
    for _ in range(4):
        get(web)
    assert sum(x["requests"] for x in servers_of(admin).values()) == 4


def test_drain_stops_new_traffic_while_a_long_request_finishes(fulcrum, backend):
    b1, b2 = backend("http", "s1"), backend("http", "s2")
    f, web, admin, _ = start(fulcrum, [b1, b2], workers=1)
    result = {}

    def long_request():
        result["resp"] = get(web, "/delay?ms=2000")

    t = threading.Thread(target=long_request)
    t.start()
    busy = wait_until(lambda: [n for n, s in servers_of(admin).items() if s["active"] == 1], 5,
                      what="the long request in flight")[0]
    other = "s2" if busy == "s1" else "s1"
    status, out = api(admin, "PATCH", "/api/v1/backends/app/servers/" + busy, {"state": "drain"})
    assert status == 200 and out["state"] == "drain" and out["active"] == 1
    names = [get(web)[1] for _ in range(12)]
    assert names == [other] * 12, "new requests still reached the drained server: %s" % names
    t.join(10)
    assert result["resp"] == (200, busy), "the request in flight on the drained server did not finish"
    assert servers_of(admin)[busy]["active"] == 0
    status, out = api(admin, "PATCH", "/api/v1/backends/app/servers/" + busy, {"state": "up"})
    assert status == 200 and out["state"] == "up"
    assert busy in {get(web)[1] for _ in range(6)}


def test_patch_disabled_up_weight_and_bad_requests(fulcrum, backend):
    b1, b2 = backend("http", "s1"), backend("http", "s2")
    f, web, admin, _ = start(fulcrum, [b1, b2], workers=1)
    path = "/api/v1/backends/app/servers/s1"
    assert api(admin, "PATCH", path, {"state": "disabled"}) [1]["state"] == "disabled"
    assert {get(web)[1] for _ in range(8)} == {"s2"}
    assert api(admin, "PATCH", path, {"state": "up"})[1]["state"] == "up"
    assert {get(web)[1] for _ in range(8)} == {"s1", "s2"}
    status, out = api(admin, "PATCH", "/api/v1/backends/app/servers/s2", {"weight": 3})
    assert status == 200 and out["weight"] == 3 and out["effective_weight"] == 3
    names = [get(web)[1] for _ in range(40)]
    assert names.count("s2") == 30 and names.count("s1") == 10, names
    # weight 0: no new traffic, like drain.
    assert api(admin, "PATCH", path, {"weight": 0})[0] == 200
    assert {get(web)[1] for _ in range(6)} == {"s2"}
    # Refusals change nothing.
    for body, word in [(b"{nope", "JSON"), ({"state": "sleepy"}, "sleepy"), ({"weight": -1}, "weight"),
                       ({"weight": 257}, "weight"), ({"weight": 1.5}, "weight"), ({"state": 3}, "state"),
                       ({"colour": "red"}, "colour"), ({}, "nothing"), ([], "object")]:
        status, out = api(admin, "PATCH", path, body)
        assert status == 400 and word in out["error"], (body, status, out)
    assert servers_of(admin)["s1"]["weight"] == 0
    assert api(admin, "PATCH", "/api/v1/backends/nope/servers/s1", {"state": "up"})[0] == 404
    assert api(admin, "PATCH", "/api/v1/backends/app/servers/nope", {"state": "up"})[0] == 404
    assert api(admin, "DELETE", path)[0] == 405
    assert api(admin, "GET", "/api/v1/nothing")[0] == 404


def test_reload_api_answers_with_the_validation_result(fulcrum, backend):
    b = backend("http", "s1")
    f, web, admin, _ = start(fulcrum, [b])
    assert api(admin, "GET", "/api/v1/reload")[0] == 405
    status, out = api(admin, "POST", "/api/v1/reload")
    assert status == 200 and out["ok"] is True, out
    # A bad config is refused with FILE:LINE:COL, and the running one keeps serving.
    text = f.config_path.read_text()
    f.config_path.write_text(text.replace("balance: round_robin", "balance: fastest"))
    status, out = api(admin, "POST", "/api/v1/reload")
    assert status == 400 and out["ok"] is False
    assert re.match(r"^%s:\d+:\d+: .*fastest" % re.escape(str(f.config_path)), out["error"]), out
    assert get(web) == (200, "s1")


# ---------------------------------------------------------------------------------------------
# tokens

def test_bearer_token_guards_the_api_but_not_probes(fulcrum, backend, tmp_path):
    b = backend("http", "s1")
    token = "s3cret-%d" % os.getpid()
    (tmp_path / "admin.token").write_text(token + "\nthe second line is not part of it\n")
    f, web, admin, _ = start(fulcrum, [b], admin={"token_file": str(tmp_path / "admin.token")})
    assert request(admin, "GET", "/healthz")[0] == 200
    assert request(admin, "GET", "/metrics")[0] == 200
    assert request(admin, "GET", "/")[0] == 200  # the page itself holds no data; it asks for the token
    status, headers, _ = request(admin, "GET", "/api/v1/backends")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    for bad in ("Bearer wrong", "Bearer " + token + "x", "Bearer " + token[:-1], "Basic " + token, token, "Bearer"):
        assert request(admin, "GET", "/api/v1/backends", headers={"Authorization": bad})[0] == 401, bad
    assert api(admin, "PATCH", "/api/v1/backends/app/servers/s1", {"state": "drain"})[0] == 401
    assert servers_of(admin, token=token)["s1"]["state"] == "up"  # the refused PATCH changed nothing
    assert request(admin, "GET", "/api/v1/backends", headers={"Authorization": "bearer " + token})[0] == 200
    status, out = api(admin, "PATCH", "/api/v1/backends/app/servers/s1", {"state": "drain"}, token=token)
    assert status == 200 and out["state"] == "drain"
    assert api(admin, "POST", "/api/v1/reload")[0] == 401


def test_check_refuses_an_admin_listener_open_to_the_network_without_a_token(tmp_path):
    port = free_port()
    text = ("admin:\n"
            "  listen: 0.0.0.0:%d\n"
            "listeners:\n"
            "  - { name: t, bind: 127.0.0.1:%d, protocol: tcp, backend: b }\n"
            "backends:\n"
            "  - name: b\n"
            "    servers: [ { name: s1, address: 127.0.0.1:%d } ]\n" % (port, free_port(), free_port()))
    cfg = tmp_path / "open.yaml"
    cfg.write_text(text)
    p = run_fulcrum("check", "-c", cfg)
    assert p.returncode == 1
    line = text.splitlines().index("  listen: 0.0.0.0:%d" % port) + 1
    m = re.search(r"^%s:(\d+):(\d+): (.*)$" % re.escape(str(cfg)), p.stderr + p.stdout, re.M)
    assert m, p.stderr
    assert (int(m.group(1)), int(m.group(2))) == (line, 11), m.group(0)
    assert "token_file" in m.group(3) and "loopback" in m.group(3)
    # With a token it is accepted.
    (tmp_path / "admin.token").write_text("t0ken\n")
    cfg.write_text(text.replace("  listen:", "  token_file: admin.token\n  listen:"))
    p = run_fulcrum("check", "-c", cfg)
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------------------------
# access logs

def read_lines(path, n, timeout=5):
    def enough():
        try:
            lines = [l for l in open(path).read().splitlines() if l]
        except OSError:
            return None
        return lines if len(lines) >= n else None
    return wait_until(enough, timeout, what="%d lines in %s" % (n, path))


def test_access_log_json_lines(fulcrum, backend, tmp_path):
    b = backend("http", "s1")
    log = tmp_path / "access.json"
    # One worker: lines of one worker keep their order in the file.
    f, web, admin, raw = start(fulcrum, [b], access_log={"path": str(log), "format": "json"}, tcp=True, workers=1)
    assert get(web, "/delay?ms=30&x=%22q%22")[0] == 200
    assert get(web, "/status?code=404")[0] == 404
    with connect(web) as s:  # a bad request: fulcrum answers 400 itself
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        s.recv(100)
    with connect(raw) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    lines = [json.loads(l) for l in read_lines(log, 4)]
    first = lines[0]
    assert set(first) >= {"time", "listener", "client", "method", "path", "status", "bytes", "duration_ms",
                          "backend", "server"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert (first["listener"], first["client"], first["method"], first["path"], first["status"]) == \
        ("web", "127.0.0.1", "GET", '/delay?ms=30&x=%22q%22', 200)
    assert (first["backend"], first["server"]) == ("app", "s1")
    assert first["bytes"] > 0 and first["duration_ms"] >= 30
    assert lines[1]["status"] == 404 and lines[1]["server"] == "s1"
    assert lines[2]["status"] == 400 and lines[2]["server"] == "" and lines[2]["method"] == "-"
    tcp = lines[3]
    assert (tcp["listener"], tcp["protocol"], tcp["status"], tcp["server"]) == ("raw", "tcp", 200, "s1")
    assert tcp["bytes"] > 0 and tcp["bytes_in"] > 0


def test_access_log_combined_format(fulcrum, backend, tmp_path):
    b = backend("http", "s1")
    log = tmp_path / "access.log"
    f, web, admin, _ = start(fulcrum, [b], access_log={"path": str(log), "format": "combined"}, workers=1)
    status, _, _ = request(web, "GET", "/status?code=201", headers={"Referer": "http://r.example/a", "User-Agent": 'ua "1"'})
    assert status == 201
    (line,) = read_lines(log, 1)
    m = re.match(r'^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$', line)
    assert m, line
    assert m.group(1) == "127.0.0.1"
    assert m.group(3) == "GET /status?code=201 HTTP/1.1"
    assert m.group(4) == "201" and int(m.group(5)) > 0
    assert m.group(6) == "http://r.example/a"
    assert m.group(7) == r"ua \x221\x22"


def test_access_log_reopens_on_sigusr1(fulcrum, backend, tmp_path):
    b = backend("http", "s1")
    log = tmp_path / "access.log"
    f, web, admin, _ = start(fulcrum, [b], access_log={"path": str(log), "format": "json"}, workers=1)
    for _ in range(3):
        get(web, "/?before")
    read_lines(log, 3)
    moved = tmp_path / "access.log.1"
    os.rename(log, moved)  # what logrotate does, then it signals
    get(web, "/?between")  # still goes to the moved file: the descriptor is open
    read_lines(moved, 4)
    f.signal(signal.SIGUSR1)
    wait_until(lambda: log.exists(), 5, what="the log file opened again")
    for _ in range(2):
        get(web, "/?after")
    new = read_lines(log, 2)
    assert all("after" in l for l in new) and len(new) == 2
    old = read_lines(moved, 4)
    assert len(old) == 4 and not any("after" in l for l in old)


def test_access_log_to_stdout(fulcrum, backend):
    b = backend("http", "s1")
    f, web, admin, _ = start(fulcrum, [b], access_log={"path": "stdout", "format": "json"})
    get(web, "/stdout-check")
    lines = read_lines(f.stdout_path, 1)
    assert json.loads(lines[0])["path"] == "/stdout-check"
