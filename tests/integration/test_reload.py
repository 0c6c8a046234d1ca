"""Hot reload (SIGHUP): added backends and servers take effect, removed listeners drain, a bad
config is refused while the old one keeps serving, and no request fails under load."""
import http.client
import os
import signal
import socket
import threading
import time


from harness import free_port, wait_until


def config(port, servers, extra_listener=None):
    listeners = [{"name": "web", "bind": "127.0.0.1:%d" % port, "protocol": "http",
                  "routes": [{"backend": "app"}]}]
    if extra_listener:
        listeners.append(extra_listener)
    return {"workers": 2, "shutdown_grace": "5s", "listeners": listeners,
            "backends": [{"name": "app", "balance": "round_robin",
                          "servers": [{"name": b.name, "address": b.address} for b in servers]}]}


def get(port, path="/", timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body.decode().strip()


def test_ten_reloads_under_load_lose_no_request(fulcrum, backend):
    port = free_port()
    b1, b2, b3 = backend("http", "b1"), backend("http", "b2"), backend("http", "b3")
    f = fulcrum(config(port, [b1, b2]))
    stop = time.monotonic() + 4.0
    results = {"ok": 0, "failed": [], "seen": set()}
    lock = threading.Lock()

    def client():
        # Keep-alive clients, as browsers and load generators are: a closed idle connection is
        # reopened, but a request that was sent and got no answer counts as failed.
        conn = None
        while time.monotonic() < stop:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode().strip()
                with lock:
                    if r.status == 200:
                        results["ok"] += 1
                        results["seen"].add(body)
                    else:
                        results["failed"].append(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (ConnectionError, http.client.RemoteDisconnected, OSError) as e:
                with lock:
                    results["failed"].append(repr(e))
                conn = None

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(10):
        time.sleep(0.3)
        if i == 3:
            f.write_config(config(port, [b1, b2, b3]))
        os.kill(f.pid, signal.SIGHUP)
    for t in threads:
        t.join()
    assert results["failed"] == [], results["failed"][:5]
    assert results["ok"] > 100
    assert "b3" in results["seen"], "the server added by the reload never got traffic"
    assert f.stderr.count("reloaded") == 10


def test_bad_config_is_refused_and_the_old_one_keeps_serving(fulcrum, backend):
    port = free_port()
    b1 = backend("http", "b1")
    f = fulcrum(config(port, [b1]))
    f.config_path.write_text(f.config_path.read_text() + "\nbogus_key: 1\n")
    os.kill(f.pid, signal.SIGHUP)
    wait_until(lambda: "reload refused" in f.stderr, 5, what="reload refused in the log")
    assert "bogus_key" in f.stderr
    assert get(port) == (200, "b1")


def test_removed_listener_drains_its_requests_and_closes(fulcrum, backend):
    port, port2 = free_port(), free_port()
    b1 = backend("http", "b1")
    second = {"name": "old", "bind": "127.0.0.1:%d" % port2, "protocol": "http", "routes": [{"backend": "app"}]}
    f = fulcrum(config(port, [b1], extra_listener=second))
    slow = {}

    def slow_request():
        slow["result"] = get(port2, "/delay?ms=1500")

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.3)  # the slow request is in flight
    f.write_config(config(port, [b1]))
    os.kill(f.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded" in f.stderr, 5, what="reload")

    def refused():
        s = socket.socket()
        try:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", port2)) != 0
        finally:
            s.close()

    wait_until(refused, 5, what="the removed listener's port closed")
    t.join(timeout=10)
    assert slow.get("result") == (200, "b1"), "the request in flight on the removed listener was lost"
    assert get(port) == (200, "b1")
