"""`protocol: udp` end to end: the built binary between loopback UDP clients and UDP echo servers
run by the test. Each client address and port sticks to one server; many client ports spread
over the servers; replies come from the listener's address; idle flows expire (a new flow, a new
upstream socket); a server that goes away is left for another; a stop does not wait on flows;
the fulcrum_udp_* counters of GET /metrics are exact, summed over workers and kept across a
reload. Every wait is bounded."""
import collections
import json
import os
import signal
import socket
import threading
import time
import urllib.request

import pytest

import harness
from harness import free_port, proc_sockets, tcp_config, wait_until


class UdpEcho:
    """A UDP server in this process: answers every datagram with b"NAME:" + payload, and records
    the addresses datagrams came from (fulcrum's upstream flow sockets)."""

    def __init__(self, name, host="127.0.0.1"):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.sources = collections.Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                data, src = self.sock.recvfrom(65535)
            except OSError:
                return
            with self.lock:
                self.sources[src] += 1
            try:
                self.sock.sendto(self.name.encode() + b":" + data, src)
            except OSError:
                return

    def close(self):
        self.sock.close()


@pytest.fixture
def echoes():
    made = []

    def make(n):
        for i in range(n):
            made.append(UdpEcho("u%d" % (len(made) + 1)))
        return made[-n:]

    yield make
    for e in made:
        e.close()


def start_udp(fulcrum, backends, idle="30s", workers=2, balance="round_robin", **top):
    port = free_port()
    listener = {"name": "game", "bind": "127.0.0.1:%d" % port, "protocol": "udp", "backend": "game",
                "idle_timeout": idle}
    cfg = tcp_config({"game": {"balance": balance,
                               "servers": [{"name": b.name, "address": b.address} for b in backends]}},
                     [listener], workers=workers, **top)
    return fulcrum(cfg), port


def exchange(sock, port, payload, timeout=2.0):
    """Sends payload to the listener; returns (reply, source address)."""
    sock.settimeout(timeout)
    sock.sendto(payload, ("127.0.0.1", port))
    return sock.recvfrom(65535)


def client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_each_client_port_sticks_to_one_server(fulcrum, echoes):
    servers = echoes(3)
    f, port = start_udp(fulcrum, servers)
    clients = [client() for _ in range(40)]
    try:
        owner = {}
        for rnd in range(5):
            for i, c in enumerate(clients):
                data, src = exchange(c, port, b"m%d" % rnd)
                assert src == ("127.0.0.1", port), "reply not from the listener address: %s" % (src,)
                name, _, echoed = data.partition(b":")
                assert echoed == b"m%d" % rnd
                if rnd == 0:
                    owner[i] = name
                else:
                    assert name == owner[i], "client %d moved from %s to %s" % (i, owner[i], name)
        spread = collections.Counter(owner.values())
        # Round robin over new flows on each of 2 workers: every server gets a share.
        assert set(spread) == {b"u1", b"u2", b"u3"}, spread
        assert min(spread.values()) >= 6, spread
        # One upstream flow (one source address at the server) per client.
        assert sum(len(s.sources) for s in servers) == len(clients)
    finally:
        for c in clients:
            c.close()


def test_ip_hash_keeps_a_client_address_on_one_server(fulcrum, echoes):
    servers = echoes(3)
    f, port = start_udp(fulcrum, servers, balance="ip_hash")
    names = set()
    for _ in range(10):
        with client() as c:
            names.add(exchange(c, port, b"x")[0].split(b":")[0])
    assert len(names) == 1, names  # every port of 127.0.0.1 hashes to the same server


def test_large_datagram(fulcrum, echoes):
    servers = echoes(1)
    f, port = start_udp(fulcrum, servers)
    with client() as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        data, _ = exchange(c, port, b"z" * 60000)
        assert data == b"u1:" + b"z" * 60000


def udp_sockets(f):
    return len(proc_sockets(f.pid, ("udp", "udp6")))


def test_idle_flows_expire(fulcrum, echoes):
    servers = echoes(1)
    f, port = start_udp(fulcrum, servers, idle="300ms", workers=1)
    base = udp_sockets(f)  # the listener's socket
    with client() as c:
        exchange(c, port, b"a")
        exchange(c, port, b"b")
        assert len(servers[0].sources) == 1
        assert udp_sockets(f) == base + 1  # one flow socket
        wait_until(lambda: udp_sockets(f) == base, 3, 0.05, "the idle flow to close")
        exchange(c, port, b"c")
        # A new flow: a new upstream socket, so the server sees a second source.
        assert len(servers[0].sources) == 2
        assert udp_sockets(f) == base + 1


def test_traffic_keeps_a_flow(fulcrum, echoes):
    servers = echoes(1)
    f, port = start_udp(fulcrum, servers, idle="400ms", workers=1)
    with client() as c:
        for _ in range(8):
            exchange(c, port, b"k")
            time.sleep(0.1)
    assert len(servers[0].sources) == 1


def test_server_gone_its_clients_move(fulcrum, echoes):
    servers = echoes(2)
    f, port = start_udp(fulcrum, servers, workers=1)
    clients = [client() for _ in range(6)]
    try:
        for c in clients:
            exchange(c, port, b"hello")
        servers[0].close()  # its port now answers with ICMP port unreachable
        for c in clients:
            got = None
            for _ in range(4):  # UDP clients retry; a flow on the dead server is dropped
                try:
                    got = exchange(c, port, b"again", timeout=0.3)[0]
                    break
                except socket.timeout:
                    continue
            assert got == b"u2:again"
    finally:
        for c in clients:
            c.close()


def test_stop_does_not_wait_on_flows(fulcrum, echoes):
    servers = echoes(1)
    f, port = start_udp(fulcrum, servers, shutdown_grace="10s")
    with client() as c:
        exchange(c, port, b"x")
        t0 = time.monotonic()
        assert f.stop(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0


# ---------------------------------------------------------------------------------------------
# GET /metrics: fulcrum_udp_*

def udp_metrics(admin_port):
    return harness.scrape_metrics(admin_port, "fulcrum_udp_", ("fulcrum_udp_active_flows",))


def expected_udp_metrics(listener, counts):
    """Every fulcrum_udp_* series of `listener`, zero unless `counts` ({(name, extra labels):
    value}, extra labels as a tuple of pairs) says otherwise."""
    series = [("fulcrum_udp_flows_total", ()), ("fulcrum_udp_active_flows", ())]
    series += [("fulcrum_udp_flows_closed_total", (("reason", r),)) for r in ("idle", "failed", "stopped")]
    series += [(name, (("direction", d),)) for name in ("fulcrum_udp_datagrams_total", "fulcrum_udp_bytes_total")
               for d in ("to_server", "to_client")]
    series += [("fulcrum_udp_dropped_total", (("reason", r),))
               for r in ("no_server", "table_full", "socket", "send_dropped", "oversize")]
    return harness.expected_series(listener, series, counts)



def set_state(admin_port, server, state):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/v1/backends/game/servers/%s" % (admin_port, server), method="PATCH",
        data=json.dumps({"state": state}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def test_metrics_count_flows_datagrams_and_drops_exactly_across_a_reload(fulcrum, echoes):
    """GET /metrics shows the udp listener's counters summed over both workers: flows opened and
    open now, datagrams and payload bytes each way, a datagram dropped with no server up. A reload
    (SIGHUP) retires the listeners that counted them (their flows close as "stopped"); the sums
    stay, the gauge falls to the flows open now, and the new listeners add to the totals."""
    servers = echoes(2)
    admin = free_port()
    f, port = start_udp(fulcrum, servers, admin={"listen": "127.0.0.1:%d" % admin})
    assert udp_metrics(admin) == expected_udp_metrics("game", {})  # every series, at zero, from the start

    got = {}

    def settle(want, what):
        def settled():
            got.clear()
            got.update(udp_metrics(admin))
            return got == want
        try:
            wait_until(settled, 5, 0.05, what)
        except TimeoutError:
            assert got == want  # shows the difference

    # Six client ports, three datagrams each, every one answered: 6 flows over the 2 workers.
    clients = [client() for _ in range(6)]
    try:
        for rnd in range(3):
            for c in clients:
                data, _ = exchange(c, port, b"ping%d" % rnd)  # 5 bytes out, "uN:" + 5 back
                assert data.endswith(b":ping%d" % rnd)
        counts = {
            ("fulcrum_udp_flows_total", ()): 6,
            ("fulcrum_udp_active_flows", ()): 6,
            ("fulcrum_udp_datagrams_total", (("direction", "to_server"),)): 18,
            ("fulcrum_udp_datagrams_total", (("direction", "to_client"),)): 18,
            ("fulcrum_udp_bytes_total", (("direction", "to_server"),)): 18 * 5,
            ("fulcrum_udp_bytes_total", (("direction", "to_client"),)): 18 * 8,
        }
        # The server counts a reply before the client has it: a scrape right after the last reply
        # may race the worker's store, so wait for the exact values (bounded).
        settle(expected_udp_metrics("game", counts), "the udp counters")

        # Every server disabled: a datagram from a new client port opens no flow and is dropped.
        for s in servers:
            set_state(admin, s.name, "disabled")
        with client() as c:
            c.sendto(b"lost", ("127.0.0.1", port))
            counts[("fulcrum_udp_dropped_total", (("reason", "no_server"),))] = 1
            settle(expected_udp_metrics("game", counts), "the no_server drop")
            c.settimeout(0.3)
            with pytest.raises(socket.timeout):
                c.recvfrom(100)
        for s in servers:
            set_state(admin, s.name, "up")

        # Reload: new listeners on new workers; the old ones stop, closing their 6 flows, and
        # their threads end. What they counted stays.
        threads = harness.thread_count(f.pid)
        os.kill(f.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in f.stderr, 5, what="reload")
        wait_until(lambda: harness.thread_count(f.pid) == threads, 5, 0.05, "the old workers to end")
        counts[("fulcrum_udp_active_flows", ())] = 0
        counts[("fulcrum_udp_flows_closed_total", (("reason", "stopped"),))] = 6
        settle(expected_udp_metrics("game", counts), "the udp counters after the reload")

        # Two of the old client ports again: new flows on the new workers, added to the totals.
        for c in clients[:2]:
            data, _ = exchange(c, port, b"again")
            assert data.endswith(b":again")
        counts[("fulcrum_udp_flows_total", ())] += 2
        counts[("fulcrum_udp_active_flows", ())] = 2
        counts[("fulcrum_udp_datagrams_total", (("direction", "to_server"),))] += 2
        counts[("fulcrum_udp_datagrams_total", (("direction", "to_client"),))] += 2
        counts[("fulcrum_udp_bytes_total", (("direction", "to_server"),))] += 2 * 5
        counts[("fulcrum_udp_bytes_total", (("direction", "to_client"),))] += 2 * 8
        settle(expected_udp_metrics("game", counts), "the udp counters after new traffic")
    finally:
        for c in clients:
            c.close()
    # The udp listener is not listed as an http one in the other families.
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
    assert 'fulcrum_active_connections{listener="game"}' not in text
