"""Server-reported load (SPEC: Server-reported load) as a user sees it: the built binary with an
http listener in front of three loopback backends (tests/support/backend.py, which names itself
in X-Backend), each with an agent of its own written here in Python, on a free port
(`agent_port` on the server line). The agents answer what the test says; the admin API and
/metrics show what fulcrum made of it, and the traffic shows what the balancer does with it.

  - cpu 0.1 / 0.1 / 0.9 under round_robin: the busy server gets about a tenth of the others' share
  - an agent answering `drain` stops new traffic; `up` brings it back; an operator's drain is not
    undone by the agent's `up`
  - a silent agent (accepts and closes, or does not listen) keeps the last reported state
  - garbage replies change nothing, and are counted and logged
  - a reload (SIGHUP) keeps what the agents reported

Every wait is bounded."""
import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest

from harness import free_port, tcp_config, wait_until

INTERVAL = "200ms"


class Agent:
    """A loopback agent in this process, one thread. Each connection gets `reply` (bytes) and is
    closed; reply None accepts and closes without a word. stop() closes the listener, so
    connections are refused. `probes` counts the connections accepted."""

    def __init__(self, reply=b"up\n"):
        self.reply = reply
        self.probes = 0
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def set(self, reply):
        with self.lock:
            self.reply = reply

    def run(self):
        while True:
            try:
                conn, _ = self.ls.accept()
            except OSError:
                return  # stopped
            with self.lock:
                reply = self.reply
                self.probes += 1
            try:
                if reply:
                    conn.sendall(reply)
            except OSError:
                pass
            finally:
                conn.close()

    def count(self):
        with self.lock:
            return self.probes

    def stop(self):
        self.ls.close()


@pytest.fixture
def agents():
    started = []

    def start(reply=b"up\n"):
        a = Agent(reply)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def request(port, method, path, body=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def servers(admin):
    status, body = request(admin, "GET", "/api/v1/backends")
    assert status == 200, body
    doc = json.loads(body)
    return {s["name"]: s for b in doc["backends"] if b["name"] == "app" for s in b["servers"]}


def metrics(admin):
    """{(name, frozenset(labels)): value} of /metrics."""
    status, body = request(admin, "GET", "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(fams, name, **labels):
    return sum(v for (n, ls), v in fams.items() if n == name and set(labels.items()) <= ls)


def count_backends(web, n):
    """X-Backend of `n` GETs on one keep-alive connection (each request is balanced)."""
    seen = {}
    c = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
    try:
        for _ in range(n):
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            assert r.status == 200
            name = r.getheader("X-Backend")
            seen[name] = seen.get(name, 0) + 1
    finally:
        c.close()
    return seen


def start(fulcrum, backend, agents, replies, workers=2):
    """Three backends s1..s3, each with an agent answering replies[i]. Returns (fulcrum, web,
    admin, [agents])."""
    web, admin = free_port(), free_port()
    bs = [backend("http", "s%d" % (i + 1)) for i in range(3)]
    ags = [agents(r) for r in replies]
    app = {"balance": "round_robin",
           "health": {"agent": {"interval": INTERVAL}},
           "servers": [{"name": b.name, "address": b.address, "agent_port": a.port} for b, a in zip(bs, ags)]}
    listeners = [{"name": "web", "bind": "127.0.0.1:%d" % web, "protocol": "http",
                  "routes": [{"match": {"path_prefix": "/"}, "backend": "app"}]}]
    f = fulcrum(tcp_config({"app": app}, listeners, workers=workers, admin={"listen": "127.0.0.1:%d" % admin}))
    return f, web, admin, ags


def weights(admin):
    return {n: s["effective_weight"] for n, s in servers(admin).items()}


def wait_weights(admin, want, timeout=10):
    wait_until(lambda: weights(admin) == want, timeout, what="effective weights %s (now %s)" % (want, weights(admin)))


def wait_probes(agent, n=3, timeout=10):
    """Until `agent` has been probed n more times: fulcrum has seen what it says now."""
    start = agent.count()
    wait_until(lambda: agent.count() >= start + n, timeout, what="%d more agent probes" % n)


def test_busy_server_gets_about_a_tenth_of_the_others_share(fulcrum, backend, agents):
    f, web, admin, _ = start(fulcrum, backend, agents, [b"up cpu=0.1\n", b"cpu=0.1\n", b"up cpu=0.9 mem=0.2\n"])
    wait_weights(admin, {"s1": 0.9, "s2": 0.9, "s3": 0.1})
    s = servers(admin)
    assert s["s3"]["reported_load"]["cpu"] == 0.9 and s["s3"]["reported_load"]["mem"] == 0.2
    assert s["s3"]["reported_load"]["state"] == "up" and s["s2"]["reported_load"]["state"] == "none"
    assert s["s3"]["weight"] == 1, "the configured weight is untouched"
    assert all(x["state"] == "up" for x in s.values())

    seen = count_backends(web, 1000)
    assert sum(seen.values()) == 1000
    # Weights 0.9 : 0.9 : 0.1 -> 474 : 474 : 53 of 1000.
    ratio = seen.get("s3", 0) / ((seen["s1"] + seen["s2"]) / 2)
    assert 0.08 <= ratio <= 0.14, seen
    assert abs(seen["s1"] - seen["s2"]) <= 20, seen

    fams = metrics(admin)
    assert sample(fams, "fulcrum_server_weight", server="s3") == pytest.approx(0.1)
    assert sample(fams, "fulcrum_server_weight", server="s1") == pytest.approx(0.9)
    assert sample(fams, "fulcrum_server_reported_load", server="s3", resource="cpu") == pytest.approx(0.9)
    assert sample(fams, "fulcrum_agent_checks_total", server="s3", result="ok") >= 1


def test_idle_again_gets_its_whole_weight_back(fulcrum, backend, agents):
    f, web, admin, (a1, a2, a3) = start(fulcrum, backend, agents, [b"cpu=0\n", b"cpu=0\n", b"cpu=1.0\n"])
    wait_weights(admin, {"s1": 1, "s2": 1, "s3": 0.01})  # never below 1% of the weight
    a3.set(b"cpu=0.00\n")
    wait_weights(admin, {"s1": 1, "s2": 1, "s3": 1})
    seen = count_backends(web, 300)
    assert seen == {"s1": 100, "s2": 100, "s3": 100}, seen


def test_drain_stops_new_traffic_and_operator_drain_outranks_agent_up(fulcrum, backend, agents):
    f, web, admin, (a1, a2, a3) = start(fulcrum, backend, agents, [b"up\n"] * 3)
    wait_until(lambda: all(x["reported_load"] for x in servers(admin).values()), 10, what="first reports")
    a2.set(b"drain\n")
    wait_until(lambda: servers(admin)["s2"]["state"] == "drain", 10, what="s2 drained by its agent")
    assert "s2" not in count_backends(web, 100)
    assert servers(admin)["s2"]["reported_load"]["state"] == "drain"

    a2.set(b"up\n")
    wait_until(lambda: servers(admin)["s2"]["state"] == "up", 10, what="s2 back")
    assert count_backends(web, 99).get("s2", 0) == 33

    # The operator drains s1; its agent keeps saying up, which must not undo the operator's word.
    status, _ = request(admin, "PATCH", "/api/v1/backends/app/servers/s1", {"state": "drain"})
    assert status == 200
    wait_probes(a1)
    assert servers(admin)["s1"]["state"] == "drain"
    assert "s1" not in count_backends(web, 60)
    # The agent's down on top: still the operator's drain shown; the operator's up then leaves
    # the agent's down in force.
    a1.set(b"down\n")
    wait_probes(a1)
    assert servers(admin)["s1"]["state"] == "drain"
    request(admin, "PATCH", "/api/v1/backends/app/servers/s1", {"state": "up"})
    assert servers(admin)["s1"]["state"] == "down"
    assert "s1" not in count_backends(web, 60)
    a1.set(b"up\n")
    wait_until(lambda: servers(admin)["s1"]["state"] == "up", 10, what="s1 up again")


def test_silent_agent_keeps_the_last_state(fulcrum, backend, agents):
    f, web, admin, (a1, a2, a3) = start(fulcrum, backend, agents, [b"cpu=0.1\n", b"cpu=0.1\n", b"drain cpu=0.9\n"])
    first = {"s1": 0.9, "s2": 0.9, "s3": 0.1}
    wait_until(lambda: servers(admin)["s3"]["state"] == "drain" and weights(admin) == first, 10,
               what="first reports applied")
    before = weights(admin)
    # Accepts and closes without a line.
    a3.set(None)
    a1.set(None)
    wait_until(lambda: servers(admin)["s3"]["reported_load"]["error"], 10, what="the silent agent noticed")
    wait_probes(a3)
    assert "closed without a reply" in servers(admin)["s3"]["reported_load"]["error"]
    assert servers(admin)["s3"]["state"] == "drain" and weights(admin) == before
    # Does not listen at all.
    a3.stop()
    a1.stop()
    wait_until(lambda: "L4CON" in (servers(admin)["s3"]["reported_load"]["error"] or ""), 10,
               what="refused agent noticed")
    time.sleep(0.5)
    s = servers(admin)
    assert s["s3"]["state"] == "drain" and weights(admin) == before
    assert s["s3"]["reported_load"]["cpu"] == 0.9, "the last report still stands"
    seen = count_backends(web, 100)
    assert "s3" not in seen and abs(seen["s1"] - seen["s2"]) <= 2, seen
    fams = metrics(admin)
    assert sample(fams, "fulcrum_agent_checks_total", server="s3", result="failed") >= 1
    assert sample(fams, "fulcrum_agent_checks_total", server="s3", result="malformed") >= 1


GARBAGE = [
    b"busy\n",                      # unknown word
    b"up busy\n",                   # one bad word spoils the reply: not even `up` applies
    b"cpu=1.5\n",                   # out of range
    b"cpu=0.5 cpu=0.6\n",           # twice
    b"up down\n",                   # two states
    b"300%\n",                      # past 256%
    b"\n",                          # empty
    b"\xff\xfe\x00garbage\n",       # binary
    b"drain" + b" " * 300 + b"\n",  # longer than 256 bytes
    b"drain",                       # no newline before the close
    b"HTTP/1.1 200 OK\r\n\r\n",     # an HTTP server on the agent port
]


def test_garbage_replies_change_nothing(fulcrum, backend, agents):
    f, web, admin, (a1, a2, a3) = start(fulcrum, backend, agents, [b"up 50%\n", b"up\n", b"up cpu=0.5\n"])
    want = {"s1": 0.5, "s2": 1, "s3": 0.5}
    wait_weights(admin, want)
    for g in GARBAGE:
        a1.set(g)
        a3.set(g)
        wait_probes(a1, 2)
        wait_probes(a3, 2)
        s = servers(admin)
        assert weights(admin) == want, g
        assert all(x["state"] == "up" for x in s.values()), (g, s)
        assert s["s1"]["reported_load"]["error"], g
        if g.startswith(b"\xff"):
            assert r"\xff\xfe\x00garbage" in s["s1"]["reported_load"]["error"], "bytes are escaped"
    assert f.alive()
    seen = count_backends(web, 200)
    assert seen == {"s1": 50, "s2": 100, "s3": 50}, seen
    fams = metrics(admin)
    assert sample(fams, "fulcrum_agent_checks_total", server="s1", result="malformed") >= len(GARBAGE)
    assert "agent reply ignored: unknown word 'busy' [AGENTRSP]" in f.stderr
    # A good reply again is applied at once.
    a1.set(b"up 100%\n")
    wait_weights(admin, {"s1": 1, "s2": 1, "s3": 0.5})


def test_reload_keeps_what_the_agents_reported(fulcrum, backend, agents):
    # s3's agent drains it, then falls silent: after a reload (SIGHUP builds new servers) the
    # drain and the weights still hold, though no agent has said anything since.
    f, web, admin, (a1, a2, a3) = start(fulcrum, backend, agents, [b"cpu=0.5\n", b"up\n", b"drain\n"])
    wait_until(lambda: servers(admin)["s3"]["state"] == "drain" and weights(admin)["s1"] == 0.5, 10,
               what="reports applied")
    a1.set(None)
    a3.set(None)
    wait_probes(a1)
    wait_probes(a3)
    f.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in f.stderr, 10, what="reload")
    s = servers(admin)
    assert s["s3"]["state"] == "drain" and s["s3"]["reported_load"]["state"] == "drain", s["s3"]
    assert weights(admin) == {"s1": 0.5, "s2": 1, "s3": 1}, "the drained server keeps its weight"
    assert "s3" not in count_backends(web, 60)
