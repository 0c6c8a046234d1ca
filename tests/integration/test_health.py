"""Health checks and failover as a user sees them: the built binary with a tcp listener in front
of loopback backends whose /health answers what the test says (200, 503, a wrong body, nothing at
all) or which die. A server must leave the rotation within interval x fall + timeout and return
within interval x rise of recovering; a check whose body lacks the expected text fails although
the status is 200; killing a primary under load loses no request, and a backup spare takes over.
Also: icmp and tcp_half_open checks through the binary, and tcp_half_open without CAP_NET_RAW.

Times are read from fulcrum's own log lines (each carries a UTC timestamp), so the bounds are
measured where the decision is made, not after our polling. SLACK covers the scheduling of
three processes on a small, busy machine; every wait is bounded."""
import collections
import datetime
import re
import shutil
import socket
import stat
import threading
import time

import pytest

import harness
from harness import free_port, http_request, tcp_config, wait_until

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.2, 2, 2
SLACK = 0.25  # s
DOWN_WITHIN = INTERVAL * FALL + TIMEOUT  # SPEC bound for leaving the rotation
UP_WITHIN = INTERVAL * RISE  # and for coming back once the server is well again

HEALTH = {"check": "http", "path": "/health", "interval": "200ms", "timeout": "200ms",
          "rise": RISE, "fall": FALL}


class ScriptedBackend:
    """An HTTP/1.1 server in this process, one thread per connection, every response closing its
    connection. GET /health answers by `mode`; any other request gets 200 with the server's name.

      ok         /health: 200 "status: UP"
      503        /health: 503
      wrongbody  /health: 200 "status: DOWN"
      hang       every request is read and never answered (a wedged process)
      dead       nothing listens on the port (connections refused); revive() listens again
    """

    def __init__(self, name, mode="ok"):
        self.name = name
        self.mode = mode
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns = set()
        self.hung = threading.Condition(self.lock)
        self.served = collections.Counter()  # path -> requests answered
        self.listener = None
        self.stopped = False
        self.listen()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def listen(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(128)
        self.listener = ls
        threading.Thread(target=self.accept_loop, args=(ls,), daemon=True).start()

    def accept_loop(self, ls):
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return  # closed: the server "died"
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            self.hung.notify_all()  # a wedged process that restarts drops what it held

    def kill(self):
        """Dies like a process: listener and every connection closed at once."""
        with self.lock:
            self.mode = "dead"
            ls, self.listener = self.listener, None
            conns = list(self.conns)
            self.hung.notify_all()
        if ls:
            ls.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def revive(self):
        with self.lock:
            self.mode = "ok"
        self.listen()

    def stop(self):
        self.stopped = True
        self.kill()

    def handle(self, conn):
        try:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "?"
            with self.lock:
                mode = self.mode
                if mode == "hang":
                    while self.mode == "hang" and not self.stopped:
                        self.hung.wait(0.5)
                    return  # released: close without an answer
            if path == "/health":
                status, body = {"ok": (200, b"status: UP\n"), "503": (503, b"busy\n"),
                                "wrongbody": (200, b"status: DOWN\n")}.get(mode, (500, b"?\n"))
            else:
                status, body = 200, (self.name + "\n").encode()
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (status, len(body), body))
            with self.lock:
                self.served[path] += 1
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def scripted():
    started = []

    def make(name, mode="ok"):
        b = ScriptedBackend(name, mode)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def listener(port, backend="app"):
    return {"name": "t", "bind": "127.0.0.1:%d" % port, "protocol": "tcp", "backend": backend}


def start_proxy(fulcrum, servers, health=None, **backend_kw):
    port = free_port()
    b = {"balance": "round_robin", "retries": 2, "connect_timeout": "250ms",
         "health": dict(health or HEALTH)}
    b.update(backend_kw)
    b["servers"] = servers
    return fulcrum(tcp_config({"app": b}, [listener(port)], workers=2)), port


# -- reading fulcrum's log ------------------------------------------------------------------------

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z (\w+) (.*)$")


def log_lines(f):
    """[(unix time, level, message)] of fulcrum's stderr so far."""
    out = []
    for line in f.stderr.splitlines():
        m = LINE.match(line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
            out.append((t.replace(tzinfo=datetime.timezone.utc).timestamp(), m.group(2), m.group(3)))
    return out


def wait_log(f, pattern, after, timeout):
    """The first (time, message, match) logged at or after `after` (unix time) matching pattern."""
    rx = re.compile(pattern)

    def find():
        for t, _, msg in log_lines(f):
            m = rx.search(msg)
            if m and t >= after - 0.005:
                return t, msg, m
        return None
    return wait_until(find, timeout, what="log line /%s/\n%s" % (pattern, f.stderr_tail(4000)))


def state_line(server, state):
    return r"backend app server %s is %s: (.*) \[(\w+)\]$" % (re.escape(server), state)


# -- clients --------------------------------------------------------------------------------------

def get_name(port, timeout=3.0):
    with harness.connect(port, timeout=timeout) as s:
        status, _, body = http_request(s, "GET", "/", timeout=timeout)
    assert status == 200
    return body.decode().strip()


def names_of(port, n):
    return collections.Counter(get_name(port) for _ in range(n))


# -------------------------------------------------------------------------------------------------

def test_server_leaves_and_returns_within_the_bounds(fulcrum, scripted):
    """200, then 503, then hangs, then dies: each time it leaves the rotation within
    interval x fall + timeout, and each time it comes back within interval x rise."""
    a1, a2, a3 = scripted("a1"), scripted("a2"), scripted("a3")
    f, port = start_proxy(fulcrum, [{"name": b.name, "address": b.address} for b in (a1, a2, a3)])
    t_start = time.time() - 0.5
    for b in (a1, a2, a3):
        _, msg, _ = wait_log(f, state_line(b.name, "up"), t_start, 5)
        assert "HTTP 200 (first check)" in msg
    assert set(names_of(port, 9)) == {"a1", "a2", "a3"}

    def fail_and_recover(fail, recover, expect_detail, expect_code):
        t0 = time.time()
        fail()
        t_down, msg, m = wait_log(f, state_line("a1", "down"), t0, 5)
        assert m.group(2) == expect_code, msg
        assert expect_detail in m.group(1), msg
        assert "(%d consecutive failures)" % FALL in msg
        assert t_down - t0 <= DOWN_WITHIN + SLACK, "down after %.3fs: %s" % (t_down - t0, msg)
        # Out of the rotation: nothing reaches it (a hung one would make a request hang here).
        assert "a1" not in names_of(port, 8)
        t1 = time.time()
        recover()
        t_up, msg, _ = wait_log(f, state_line("a1", "up"), t1, 5)
        assert "(%d consecutive passes)" % RISE in msg
        assert t_up - t1 <= UP_WITHIN + SLACK, "up after %.3fs: %s" % (t_up - t1, msg)
        wait_until(lambda: "a1" in names_of(port, 6), 3, what="a1 taking traffic again")
        return t_down - t0, t_up - t1

    took = {
        "503": fail_and_recover(lambda: a1.set_mode("503"), lambda: a1.set_mode("ok"), "HTTP 503", "L7STS"),
        "hang": fail_and_recover(lambda: a1.set_mode("hang"), lambda: a1.set_mode("ok"),
                                 "timeout after 200ms", "L7TOUT"),
        "dead": fail_and_recover(a1.kill, a1.revive, "connection refused", "L4CON"),
    }
    print("seconds to down / up:", took)
    assert f.alive()


def test_body_without_expected_text_is_down_although_status_is_200(fulcrum, scripted):
    good, bad = scripted("good"), scripted("bad", "wrongbody")
    health = dict(HEALTH, expect_body="UP")
    f, port = start_proxy(fulcrum, [{"name": b.name, "address": b.address} for b in (good, bad)],
                          health=health)
    t0 = time.time() - 0.5
    wait_log(f, state_line("good", "up"), t0, 5)
    _, msg, m = wait_log(f, state_line("bad", "down"), t0, 5)
    assert m.group(1).startswith('body lacks "UP"'), msg
    assert m.group(2) == "L7BODY"
    assert bad.served["/health"] >= FALL  # it did answer 200 each time
    assert names_of(port, 6) == {"good": 6}
    # Its body changes: it comes back.
    t1 = time.time()
    bad.set_mode("ok")
    wait_log(f, state_line("bad", "up"), t1, 5)
    wait_until(lambda: "bad" in names_of(port, 4), 3, what="bad taking traffic")


def test_killing_a_primary_under_load_loses_nothing_and_the_spare_takes_over(fulcrum, backend):
    primaries = [backend("http", "p%d" % i) for i in (1, 2, 3)]
    spare = backend("http", "spare")
    servers = [{"name": b.name, "address": b.address} for b in primaries]
    servers.append({"name": "spare", "address": spare.address, "backup": True})
    f, port = start_proxy(fulcrum, servers)
    t0 = time.time() - 0.5
    for name in ("p1", "p2", "p3", "spare"):
        wait_log(f, state_line(name, "up"), t0, 5)

    before, after_kill, after_down = collections.Counter(), collections.Counter(), collections.Counter()
    failures = []
    killed_at = down_at = None
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < 5.0:  # bounded: at most 5 s of requests
        if killed_at is None and time.monotonic() - start > 1.0:
            # Between two requests, so none is in flight at p2: what it had not received must
            # all be served elsewhere (connect refused -> retried on another server).
            primaries[1].kill()
            killed_at = time.time()
        try:
            name = get_name(port)
        except (OSError, AssertionError, ConnectionError) as e:
            failures.append("%d: %r" % (n, e))
            name = None
        n += 1
        if killed_at is None:
            before[name] += 1
        elif down_at is None:
            after_kill[name] += 1
            if re.search(state_line("p2", "down"), f.stderr, re.M):
                down_at = time.time()
        else:
            after_down[name] += 1
            if after_down["spare"] >= 10 and sum(after_down.values()) >= 60:
                break
    print("requests:", n, "before:", dict(before), "after kill:", dict(after_kill),
          "after down:", dict(after_down))
    assert not failures, failures[:5]
    assert set(before) == {"p1", "p2", "p3"}, "the spare stands by while every primary is up"
    assert "p2" not in after_kill and "p2" not in after_down
    assert down_at is not None, "p2 never marked down\n" + f.stderr_tail(4000)
    assert after_down["spare"] >= 10, "the spare took over for p2"
    assert set(after_down) == {"p1", "p3", "spare"}


def _server_port():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    return ls


@pytest.mark.parametrize("check", ["icmp", "tcp_half_open", "tcp"])
def test_l3_and_l4_checks_through_the_binary(fulcrum, backend, check):
    up, closed = backend("http", "up"), free_port()
    servers = [{"name": "up", "address": up.address},
               {"name": "closed", "address": "127.0.0.1:%d" % closed}]
    health = {"check": check, "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2}
    f, port = start_proxy(fulcrum, servers, health=health)
    t0 = time.time() - 0.5
    wait_log(f, state_line("up", "up"), t0, 5)
    if check == "icmp":
        # 127.0.0.1 answers pings whatever the port: the icmp check sees the host, not the service.
        wait_log(f, state_line("closed", "up"), t0, 5)
    else:
        _, msg, m = wait_log(f, state_line("closed", "down"), t0, 5)
        assert m.group(2) == "L4CON", msg
    assert "CAP_NET_RAW" not in f.stderr  # we are root: raw sockets work
    assert names_of(port, 4)["up"] >= 2


def test_half_open_without_cap_net_raw_warns_and_falls_back_to_tcp(tmp_path, backend):
    capsh = shutil.which("capsh")
    if not capsh:
        pytest.skip("capsh not installed")
    # capsh drops the capability from the bounding set; the exec'd fulcrum (root) then lacks it.
    wrapper = tmp_path / "fulcrum-no-net-raw"
    wrapper.write_text('#!/bin/sh\nexec %s --drop=cap_net_raw -- -c \'exec "$0" "$@"\' %s "$@"\n'
                       % (capsh, harness.fulcrum_bin()))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    up, closed = backend("http", "up"), free_port()
    port = free_port()
    cfg = tcp_config({"app": {"health": {"check": "tcp_half_open", "interval": "200ms",
                                         "timeout": "200ms", "rise": 2, "fall": 2},
                              "servers": [{"name": "up", "address": up.address},
                                          {"name": "closed", "address": "127.0.0.1:%d" % closed}]}},
                     [listener(port)])
    f = harness.Fulcrum(tmp_path / "f", binary=str(wrapper))
    try:
        f.start(cfg)
        t0 = time.time() - 0.5
        wait_log(f, r"tcp_half_open needs raw sockets \(CAP_NET_RAW\).*tcp, a full connect", t0, 5)
        wait_log(f, state_line("up", "up"), t0, 5)
        _, msg, m = wait_log(f, state_line("closed", "down"), t0, 5)
        assert "connection refused" in msg and m.group(2) == "L4CON"
        assert get_name(port) == "up"
    finally:
        f.kill()
