#!/usr/bin/python3
"""Memory per idle connection: opens N idle TCP connections through a proxy's tcp listener to
a selector-based sink (three ports, behind the proxy) and reports how much the proxy's resident
memory (VmRSS in /proc/PID/status) grew, in bytes per connection, and how many descriptors each
connection costs it. Runs fulcrum and, for comparison, HAProxy in tcp mode, one after the other.

  usage: idle_memory.py [--bin build/fulcrum] [--conns 10000] [--workers 2] [--peers haproxy|none]

Every connection is established end to end (the sink counts it) before the measurement; the
proxy's baseline is taken after a warm-up of a few hundred connections opened and closed, so
that lazily built per-worker state is not counted as per-connection cost. A proxy holds two
sockets per connection, so RLIMIT_NOFILE caps N: the script raises its soft limit to the hard
one (children inherit it) and lowers N, saying so, when the hard limit is too low.
All processes are started here and stopped by PID.
"""
import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# --- the sink: accepts and holds connections; "count" on stdin prints how many are open --------

def sink_main(nports):
    sel = selectors.DefaultSelector()
    ports = []
    for _ in range(nports):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(4096)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, "listen")
        ports.append(ls.getsockname()[1])
    sel.register(sys.stdin, selectors.EVENT_READ, "control")
    print("ready " + " ".join(map(str, ports)), flush=True)
    open_conns = 0
    while True:
        for key, _ in sel.select():
            if key.data == "listen":
                while True:
                    try:
                        c, _ = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE: report, back off, keep serving
                        print("sink accept: %s" % e, file=sys.stderr, flush=True)
                        time.sleep(0.01)
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "conn")
                    open_conns += 1
            elif key.data == "conn":
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_conns -= 1
            else:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    return
                print(open_conns, flush=True)


class Sink:
    def __init__(self, nports=3):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sink",
                                      str(nports)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.stop()
            raise RuntimeError("sink did not start")
        self.ports = [int(p) for p in line[1:]]

    def count(self):
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait_count(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            n = self.count()
            if pred(n) or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


# --- proxies under test -------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A proxy process with a tcp listener on self.port in front of the sink's ports."""

    def __init__(self, name, cmd, port, workdir):
        self.name, self.port = name, port
        self.log_path = os.path.join(workdir, name + ".log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s):\n%s" % (name, self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("%s not listening after 10 s:\n%s" % (name, self.log()))
                time.sleep(0.05)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_fulcrum(binary, workers, sink_ports, workdir):
    port = free_port()
    servers = "".join("      - { name: s%d, address: 127.0.0.1:%d }\n" % (i + 1, p)
                      for i, p in enumerate(sink_ports))
    cfg = os.path.join(workdir, "fulcrum.yaml")
    with open(cfg, "w") as f:
        f.write("workers: %d\nshutdown_grace: 1s\nlisteners:\n"
                "  - { name: idle, bind: 127.0.0.1:%d, protocol: tcp, backend: sink }\n"
                "backends:\n  - name: sink\n    balance: round_robin\n    servers:\n%s"
                % (workers, port, servers))
    return Proxy("fulcrum", [binary, "run", "-c", cfg], port, workdir)


def start_haproxy(workers, sink_ports, workdir, maxconn):
    port = free_port()
    servers = "".join("  server s%d 127.0.0.1:%d\n" % (i + 1, p) for i, p in enumerate(sink_ports))
    cfg = os.path.join(workdir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("global\n  nbthread %d\n  maxconn %d\n"
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n"
                "  timeout server 10m\n"
                "frontend idle\n  bind 127.0.0.1:%d\n  default_backend sink\n"
                "backend sink\n  balance roundrobin\n%s" % (workers, maxconn, port, servers))
    return Proxy("haproxy", ["haproxy", "-db", "-f", cfg], port, workdir)


# --- the measurement ----------------------------------------------------------------------------

def open_conns(port, n, sink, batch=500):
    """Opens n connections in batches, each batch established at the sink before the next."""
    socks, failures = [], 0
    while len(socks) < n:
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
                failures += 1
                if failures > 100:
                    return socks, failures
        if sink.wait_count(lambda c: c >= len(socks), 10) < len(socks):
            break  # the proxy stopped passing connections on (a limit): measure what it holds
    return socks, failures


def still_open(socks):
    """How many client sockets the proxy has not closed (not readable: no EOF, no reset)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = len(sel.select(timeout=0))
    sel.close()
    return len(socks) - closed


def measure(proxy, sink, n):
    warm, _ = open_conns(proxy.port, 300, sink)  # lazy per-worker state, pools, first growth
    for s in warm:
        s.close()
    sink.wait_count(lambda c: c == 0, 10)
    time.sleep(0.5)
    rss0, fds0 = proxy.rss_kib(), proxy.fds()
    t0 = time.monotonic()
    socks, failures = open_conns(proxy.port, n, sink)
    took = time.monotonic() - t0
    time.sleep(1.0)
    at_sink = sink.count()
    alive = still_open(socks)
    rss1, fds1 = proxy.rss_kib(), proxy.fds()
    for s in socks:
        s.close()
    sink.wait_count(lambda c: c == 0, 15)
    time.sleep(0.5)
    rss2 = proxy.rss_kib()
    held = min(at_sink, alive)
    return {"name": proxy.name, "asked": n, "held": held, "failures": failures,
            "rss0": rss0, "rss1": rss1, "rss2": rss2, "open_s": took,
            "per_conn": (rss1 - rss0) * 1024.0 / held if held else float("nan"),
            "fds_per_conn": (fds1 - fds0) / held if held else float("nan")}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO, "build", "fulcrum"))
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--peers", default="haproxy", help="haproxy or none")
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed)")
    p.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.sink:
        return sink_main(args.sink)

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = args.conns
    note = ""
    if limit != resource.RLIM_INFINITY and 2 * n + 200 > limit:
        n = (limit - 200) // 2
        note = " (%d asked; RLIMIT_NOFILE %d allows two sockets each for %d)" % (
            args.conns, limit, n)
    workdir = args.dir or tempfile.mkdtemp(prefix="fulcrum-idle.")
    os.makedirs(workdir, exist_ok=True)
    results = []
    print("## idle connections: %d through a tcp listener, %d workers/threads%s"
          % (n, args.workers, note), flush=True)
    starters = [("fulcrum", lambda ports: start_fulcrum(os.path.abspath(args.bin), args.workers,
                                                        ports, workdir))]
    if args.peers == "haproxy" and shutil.which("haproxy"):
        maxconn = min(n + 400, (limit - 100) // 2)  # HAProxy wants ~2 descriptors per maxconn
        starters.append(("haproxy", lambda ports: start_haproxy(args.workers, ports, workdir,
                                                                maxconn)))
    for name, start in starters:
        sink = Sink()
        proxy = None
        try:
            proxy = start(sink.ports)
            results.append(measure(proxy, sink, n))
        except Exception as e:  # report and go on with the next proxy
            print("%s: %s" % (name, e), flush=True)
        finally:
            if proxy:
                code = proxy.stop()
                if code not in (0, None) and name == "fulcrum":
                    print("fulcrum exited with code %s; log tail:\n%s" % (code, proxy.log()))
            sink.stop()
    print("%-10s%8s%9s%12s%12s%12s%11s%10s%16s" % (
        "target", "held", "failed", "RSS before", "RSS idle", "bytes/conn", "fds/conn",
        "open s", "RSS after close"))
    for r in results:
        print("%-10s%8d%9d%9.1f MiB%8.1f MiB%12.0f%11.2f%10.1f%12.1f MiB" % (
            r["name"], r["held"], r["failures"], r["rss0"] / 1024.0, r["rss1"] / 1024.0,
            r["per_conn"], r["fds_per_conn"], r["open_s"], r["rss2"] / 1024.0))
    for r in results:
        if r["held"] < r["asked"]:
            print("note: %s held %d of %d connections (it stopped passing new ones on)"
                  % (r["name"], r["held"], r["asked"]))
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if results and results[0]["name"] == "fulcrum" else 1


if __name__ == "__main__":
    sys.exit(main())
