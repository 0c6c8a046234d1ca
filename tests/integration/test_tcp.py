"""`protocol: tcp` listeners end to end: the built binary between real loopback clients and
tests/support/backend.py servers. Byte integrity, half-close, each balancing algorithm as a user
sees it (which server a connection reaches), retries on connect failure, PROXY protocol v1/v2,
all servers down, and graceful stop. Every loop is bounded in count and in time."""
import collections
import hashlib
import json
import os
import signal
import socket
import threading
import time

import pytest

from harness import (connect, free_port, http_request, recv_all, recv_line, server_name,
                     tcp_config, wait_until)


def listener(port, backend="b", **kw):
    return dict({"name": "t", "bind": "127.0.0.1:%d" % port, "protocol": "tcp",
                 "backend": backend}, **kw)


def servers(*bs, weights=None):
    out = []
    for i, b in enumerate(bs):
        s = {"name": getattr(b, "name", "s%d" % (i + 1)),
             "address": b if isinstance(b, str) else b.address}
        if weights:
            s["weight"] = weights[i]
        out.append(s)
    return out


def proxy(fulcrum, bs, balance="round_robin", weights=None, listener_kw=None, backend_kw=None,
          workers=2, **top):
    """Starts fulcrum with one tcp listener over `bs`; returns (fulcrum, listener port)."""
    port = free_port()
    b = {"balance": balance}
    b.update(backend_kw or {})
    b["servers"] = servers(*bs, weights=weights)
    cfg = tcp_config({"b": b}, [listener(port, **(listener_kw or {}))], workers=workers, **top)
    return fulcrum(cfg), port


def name_backends(backend, n):
    return [backend("name", "s%d" % (i + 1)) for i in range(n)]


def count_names(port, n, src=None, deadline_s=20):
    counts = collections.Counter()
    deadline = time.monotonic() + deadline_s
    for _ in range(n):
        assert time.monotonic() < deadline, "took over %ss" % deadline_s
        counts[server_name(port, src=src)] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# bytes

def test_echo(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo])
    with connect(port) as s:
        for msg in (b"hello\n", b"x", b"0123456789" * 1000):
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                assert chunk, "EOF after %d of %d bytes" % (len(got), len(msg))
                got += chunk
            assert got == msg
    assert f.alive()


def test_64mib_both_ways_sha256(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo])
    size = 64 << 20
    data = os.urandom(size)
    sent_hash = hashlib.sha256(data).hexdigest()
    recv_hash = hashlib.sha256()
    received = 0
    errors = []
    with connect(port, timeout=30) as s:
        def send():
            try:
                view = memoryview(data)
                for i in range(0, size, 1 << 20):
                    s.sendall(view[i:i + (1 << 20)])
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while received < size and time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            recv_hash.update(chunk)
            received += len(chunk)
        t.join(timeout=10)
        assert not errors, errors
        assert received == size, "received %d of %d bytes" % (received, size)
        assert recv_hash.hexdigest() == sent_hash
        assert recv_all(s, timeout=5) == b""  # then EOF, from the backend's close


def test_parallel_connections_and_no_fd_leak(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo])
    before = f.fd_kinds()
    n = 64

    def one_round():
        errors = []
        socks = [connect(port) for _ in range(n)]
        try:
            def talk(i, s):
                try:
                    msg = (b"%d:" % i) * 5000
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    if got != msg:
                        errors.append("connection %d: got %d bytes, wrong content" % (i, len(got)))
                except OSError as e:
                    errors.append("connection %d: %s" % (i, e))
            threads = [threading.Thread(target=talk, args=(i, s)) for i, s in enumerate(socks)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            assert not errors, errors[:5]
            wait_until(lambda: f.upstream_conns(echo.port) == n, 5,
                       what="%d upstream connections" % n)
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: f.upstream_conns(echo.port) == 0, 5, what="upstream connections to close")
        # Every socket is closed; splice pipes may stay in the workers' pools, at most two per
        # connection that was open at once.
        wait_until(lambda: f.fd_kinds()["socket"] == before["socket"], 5,
                   what="socket count back to %d (now %s)" % (before["socket"], f.fd_kinds()))
        kinds = f.fd_kinds()
        assert kinds["pipe"] - before["pipe"] <= 4 * n, (before, kinds)
        assert kinds["file"] == before["file"] and kinds["anon_inode"] == before["anon_inode"], \
            (before, kinds)
        return kinds

    first = one_round()
    second = one_round()  # the same load again reuses what the first left: no growth
    assert second["pipe"] <= first["pipe"] + 8, (first, second)


def test_half_close_client_first(fulcrum, backend):
    """The client shuts down its write side; the backend answers after seeing that EOF."""
    echo = backend("echo", "e1", trailer="TRAILER after EOF\n")
    f, port = proxy(fulcrum, [echo])
    with connect(port) as s:
        s.sendall(b"request body")
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, timeout=5)
    assert got == b"request body" + b"TRAILER after EOF\n"


def test_half_close_after_pause(fulcrum, backend):
    """Half-close with the data already delivered and some idle time in between."""
    echo = backend("echo", "e1", trailer="BYE\n")
    f, port = proxy(fulcrum, [echo])
    with connect(port) as s:
        s.sendall(b"x" * 100000)
        got = b""
        while len(got) < 100000:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s, timeout=5) == b"BYE\n"


# ---------------------------------------------------------------------------------------------
# balancing

def test_round_robin_spreads_evenly(fulcrum, backend):
    bs = name_backends(backend, 3)
    f, port = proxy(fulcrum, bs)
    counts = count_names(port, 300)
    assert set(counts) == {"s1", "s2", "s3"}, counts
    # Each worker runs its own rotation, so allow +-10% of the even share.
    for name in ("s1", "s2", "s3"):
        assert 90 <= counts[name] <= 110, counts


def test_weighted_round_robin(fulcrum, backend):
    bs = name_backends(backend, 2)
    f, port = proxy(fulcrum, bs, weights=[3, 1])
    counts = count_names(port, 400)
    assert 270 <= counts["s1"] <= 330, counts
    assert counts["s1"] + counts["s2"] == 400, counts


def test_round_robin_one_worker_is_a_plain_rotation(fulcrum, backend):
    bs = name_backends(backend, 3)
    f, port = proxy(fulcrum, bs, workers=1)
    seq = [server_name(port) for _ in range(30)]
    assert sorted(seq[:3]) == ["s1", "s2", "s3"], seq
    assert all(seq[i] == seq[i % 3] for i in range(30)), seq


def test_round_robin_one_worker_smooth_weights(fulcrum, backend):
    """SPEC: weights 5 and 2 give 5:2, interleaved, not in bursts."""
    bs = name_backends(backend, 2)
    f, port = proxy(fulcrum, bs, workers=1, weights=[5, 2])
    seq = [server_name(port) for _ in range(70)]
    assert 48 <= seq.count("s1") <= 52, seq
    longest, run = 0, 0
    for name in seq:
        run = run + 1 if name == "s1" else 0
        longest = max(longest, run)
    assert longest <= 3, "s1 %d times in a row: %s" % (longest, seq)
    for i in range(len(seq) - 6):
        assert 4 <= seq[i:i + 7].count("s1") <= 6, "window %d: %s" % (i, seq[i:i + 7])


def test_least_conn_prefers_fewer_open_connections(fulcrum, backend):
    bs = name_backends(backend, 3)
    by_name = {b.name: b for b in bs}
    f, port = proxy(fulcrum, bs, balance="least_conn")
    held = collections.defaultdict(list)

    def open_one():
        s = connect(port)
        name = recv_line(s).decode()
        assert name in by_name, name
        held[name].append(s)
        return name

    def close(name, n):
        for _ in range(n):
            held[name].pop().close()
        want = len(held[name])
        wait_until(lambda: f.upstream_conns(by_name[name].port) == want, 5,
                   what="fulcrum to drop to %d connections to %s" % (want, name))

    try:
        for _ in range(6):  # each pick goes to a least-loaded server: 2 + 2 + 2
            open_one()
        assert sorted(len(v) for v in held.values()) == [2, 2, 2], dict(held)
        close("s2", 2)  # s2 now has 0, the others 2
        assert [open_one(), open_one()] == ["s2", "s2"]
        close("s3", 1)  # s3 has 1, the others 2
        assert open_one() == "s3"
        # All at 2 again: three more connections go one to each server.
        assert sorted(open_one() for _ in range(3)) == ["s1", "s2", "s3"]
    finally:
        for socks in held.values():
            for s in socks:
                s.close()


@pytest.mark.parametrize("balance", ["ip_hash", "hash"])
def test_same_client_ip_same_server(fulcrum, backend, balance):
    bs = name_backends(backend, 3)
    kw = {"hash_key": "ip"} if balance == "hash" else {}
    f, port = proxy(fulcrum, bs, balance=balance, backend_kw=kw)
    seen = {}
    deadline = time.monotonic() + 20
    for i in range(60):
        src = "127.0.0.%d" % (i + 2)
        names = {server_name(port, src=src) for _ in range(3)}
        assert len(names) == 1, "client %s reached %s" % (src, names)
        seen[src] = names.pop()
        assert time.monotonic() < deadline
    spread = collections.Counter(seen.values())
    assert len(spread) == 3 and min(spread.values()) >= 5, "60 client IPs spread %s" % spread
    # And again, later: still the same server per client.
    for src in list(seen)[:10]:
        assert server_name(port, src=src) == seen[src]


# ---------------------------------------------------------------------------------------------
# failures

def test_retry_when_a_server_refuses(fulcrum, backend):
    s1, s3 = backend("name", "s1"), backend("name", "s3")
    dead = "127.0.0.1:%d" % free_port()  # nothing listens there
    f, port = proxy(fulcrum, [s1, dead, s3], backend_kw={"retries": 2})
    counts = count_names(port, 100)
    assert sum(counts.values()) == 100 and set(counts) == {"s1", "s3"}, counts


def test_server_killed_mid_run_loses_no_connection(fulcrum, backend):
    bs = name_backends(backend, 3)
    f, port = proxy(fulcrum, bs, backend_kw={"retries": 2})
    counts = collections.Counter()
    after_kill = collections.Counter()
    deadline = time.monotonic() + 5
    i = 0
    while i < 400 and time.monotonic() < deadline:
        if i == 60:
            bs[1].kill()  # SIGKILL by PID, reaped: its port now refuses
        name = server_name(port)  # raises or returns "" if the connection failed
        assert name in ("s1", "s2", "s3"), "connection %d got %r" % (i, name)
        counts[name] += 1
        if i >= 60:
            after_kill[name] += 1
        i += 1
    assert i >= 120, "only %d connections in 5 s" % i
    assert after_kill["s2"] == 0 and set(after_kill) == {"s1", "s3"}, after_kill


@pytest.fixture
def blackhole():
    """Ports whose connects hang (SYNs dropped): listeners that never accept, whose one-slot
    accept queue a connection of ours already fills. Exercises connect_timeout on loopback."""
    held = []

    def make():
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        held.append(ls)
        held.append(socket.create_connection(ls.getsockname(), timeout=2))
        return ls.getsockname()[1]

    yield make
    for s in held:
        s.close()


def test_connect_timeout_moves_to_another_server(fulcrum, backend, blackhole):
    s1, s3 = backend("name", "s1"), backend("name", "s3")
    hole = "127.0.0.1:%d" % blackhole()
    f, port = proxy(fulcrum, [s1, hole, s3],
                    backend_kw={"retries": 2, "connect_timeout": "300ms"})
    slow = 0
    for i in range(12):
        t0 = time.monotonic()
        name = server_name(port)
        elapsed = time.monotonic() - t0
        assert name in ("s1", "s3"), "connection %d got %r" % (i, name)
        assert elapsed < 2.0, "connection %d took %.2fs" % (i, elapsed)
        slow += elapsed >= 0.25
    assert slow >= 1, "no connection waited for the 300ms connect timeout: was s2 ever picked?"


def test_all_servers_unresponsive_closes_after_timeouts(fulcrum, blackhole):
    holes = ["127.0.0.1:%d" % blackhole() for _ in range(2)]
    f, port = proxy(fulcrum, holes, backend_kw={"retries": 1, "connect_timeout": "300ms"})
    t0 = time.monotonic()
    with connect(port) as s:
        try:
            got = recv_all(s, timeout=5)
        except ConnectionResetError:
            got = b""
        except socket.timeout:
            pytest.fail("connection still open 5 s after every server timed out")
    elapsed = time.monotonic() - t0
    assert got == b""
    assert 0.25 <= elapsed < 2.5, "closed after %.2fs (2 attempts x 300ms expected)" % elapsed
    assert f.alive()


def test_all_servers_down_closes_promptly(fulcrum, backend):
    dead_ports = [free_port(), free_port()]
    f, port = proxy(fulcrum, ["127.0.0.1:%d" % p for p in dead_ports],
                    backend_kw={"retries": 2, "connect_timeout": "1s"})
    for i in range(5):
        t0 = time.monotonic()
        with connect(port) as s:
            if i % 2:
                s.sendall(b"hello?")  # with data pending, a close may come as a reset
            try:
                got = recv_all(s, timeout=3)
            except ConnectionResetError:
                got = b""
            except socket.timeout:
                pytest.fail("connection %d still open after 3 s with every server down" % i)
        elapsed = time.monotonic() - t0
        assert got == b"", got
        assert elapsed < 2.0, "took %.2fs to close" % elapsed
    assert f.alive()
    # A server comes up on one of those ports: traffic flows again (no health check to wait for).
    b = backend("name", "late", port=dead_ports[0])
    assert server_name(port) == "late"
    assert b.alive()


# ---------------------------------------------------------------------------------------------
# PROXY protocol

@pytest.mark.parametrize("version", [1, 2])
def test_proxy_protocol_reports_client_address(fulcrum, backend, version):
    app = backend("http", "app", proxy_protocol=True)
    f, port = proxy(fulcrum, [app], listener_kw={"proxy_protocol": "v%d" % version})
    for src in ("127.0.0.7", "127.0.0.8"):
        with connect(port, src=src) as s:
            client_port = s.getsockname()[1]
            for _ in range(2):  # a keep-alive second request sees the same header
                status, _, body = http_request(s, "GET", "/proxyinfo")
                assert status == 200
                info = json.loads(body)
                assert info.get("version") == version, info
                assert info.get("family") == "TCP4", info
                assert (info.get("src_addr"), info.get("src_port")) == (src, client_port), info
                assert (info.get("dst_addr"), info.get("dst_port")) == ("127.0.0.1", port), info


def test_proxy_protocol_off_sends_no_header(fulcrum, backend):
    app = backend("http", "app", proxy_protocol=True)
    f, port = proxy(fulcrum, [app])
    with connect(port) as s:
        status, _, body = http_request(s, "GET", "/proxyinfo")
        assert status == 200 and json.loads(body) == {"version": None}


# ---------------------------------------------------------------------------------------------
# stopping

def test_sigterm_idle_exits_zero(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo])
    t0 = time.monotonic()
    assert f.stop(timeout=10) == 0, f.stderr
    assert time.monotonic() - t0 < 3


def test_graceful_stop_finishes_in_flight(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo], shutdown_grace="10s")
    s = connect(port)
    try:
        s.sendall(b"before\n")
        assert recv_line(s) == b"before"
        os.kill(f.pid, signal.SIGTERM)

        def refused():
            try:
                probe = socket.create_connection(("127.0.0.1", port), timeout=1)
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:  # queued just as the listener closed: reset with it
                return False
            probe.close()  # got in before the listener closed: let it go at once
            return False
        wait_until(refused, 3, interval=0.05, what="new connections to be refused")

        assert f.alive(), "exited with a connection in flight\n" + f.stderr
        s.sendall(b"after\n")  # the in-flight connection still works
        assert recv_line(s) == b"after"
        time.sleep(0.3)
        assert f.alive(), "exited with a connection in flight\n" + f.stderr
    finally:
        s.close()
    t0 = time.monotonic()
    code = f.wait(8)
    assert code == 0, "exit code %s after the last connection closed\n%s" % (code, f.stderr)
    assert time.monotonic() - t0 < 3, "exit took %.1fs after the last connection closed" % (
        time.monotonic() - t0)


def test_graceful_stop_gives_up_after_grace(fulcrum, backend):
    echo = backend("echo", "e1")
    f, port = proxy(fulcrum, [echo], shutdown_grace="1s")
    with connect(port) as s:
        s.sendall(b"hi\n")
        assert recv_line(s) == b"hi"
        t0 = time.monotonic()
        os.kill(f.pid, signal.SIGTERM)
        code = f.wait(6)
        elapsed = time.monotonic() - t0
        assert code == 0, "exit code %s\n%s" % (code, f.stderr)
        assert 0.7 <= elapsed < 4, "exited %.1fs after SIGTERM with shutdown_grace 1s" % elapsed
        try:
            assert recv_all(s, timeout=2) == b""  # the held connection was closed
        except ConnectionResetError:
            pass
