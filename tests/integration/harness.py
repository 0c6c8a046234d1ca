"""Integration-test harness: runs the built fulcrum binary and loopback test servers as child
processes, on free ports, and stops every one of them by PID (never by name).

  free_port()            a free TCP port on 127.0.0.1
  Fulcrum                writes a YAML config, runs `fulcrum run -c`, waits for its listeners
  Backend                tests/support/backend.py (echo | name | http) as a child process
  connect(), recv_*()    small blocking socket clients with timeouts
  to_yaml()              dicts and lists to block-style YAML (stdlib has no YAML writer)

Everything here is bounded in time: a wait that runs out raises, it never hangs a test run.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BACKEND_PY = REPO / "tests" / "support" / "backend.py"
PYTHON = sys.executable  # the interpreter running pytest (Debian's /usr/bin/python3)


def fulcrum_bin():
    """$FULCRUM_BIN (relative to the directory pytest started in) or the repo's build/fulcrum."""
    return os.path.abspath(os.environ.get("FULCRUM_BIN") or str(REPO / "build" / "fulcrum"))


# Ports are handed out below the kernel's ephemeral range (32768-60999 here): a port the kernel
# picked for `bind(0)` may be given to a client socket of a later test before fulcrum binds it,
# which tests that open many connections (floods, load loops) made likely. Each test process
# starts at its own place in 10000-31999 and never hands a port out twice.
_PORT_LOW, _PORT_SPAN = 10000, 22000
_next_port = [_PORT_LOW + (os.getpid() * 7919) % _PORT_SPAN]
_given_ports = set()


def _bindable(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # dns listeners take both
        with socket.socket(family, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host="127.0.0.1"):
    for _ in range(_PORT_SPAN):
        port = _next_port[0]
        _next_port[0] = _PORT_LOW + (port - _PORT_LOW + 1) % _PORT_SPAN
        if port not in _given_ports and _bindable(host, port):
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port in %d-%d" % (_PORT_LOW, _PORT_LOW + _PORT_SPAN - 1))


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy; returns that. Raises after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# YAML

_PLAIN = re.compile(r"^[A-Za-z0-9_./@-][A-Za-z0-9_./:@%-]*$")
_AMBIGUOUS = {"", "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _AMBIGUOUS and not s.endswith(":"):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts/lists of scalars; lists of scalars go in flow style."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v and any(isinstance(x, (dict, list)) for x in v):
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_scalar(x) for x in v)))
            elif isinstance(v, dict):
                lines.append("%s%s: {}" % (pad, k))
            else:
                lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2).split("\n")
                lines.append("%s- %s" % (pad, body[0][indent + 2:]))
                lines.extend(body[1:])
            else:
                lines.append("%s- %s" % (pad, _scalar(item)))
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines)


def tcp_config(backends, listeners, workers=2, shutdown_grace="10s", **top):
    """A config dict: `backends` is {name: backend-dict-without-name}, `listeners` a list."""
    cfg = {"workers": workers, "shutdown_grace": shutdown_grace}
    cfg.update(top)
    cfg["listeners"] = listeners
    cfg["backends"] = [dict({"name": n}, **b) for n, b in backends.items()]
    return cfg


# ---------------------------------------------------------------------------------------------
# /proc views of a process's sockets (Linux)

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def _socket_inodes(pid):
    out = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def _hex_port(addr):
    return int(addr.rsplit(":", 1)[1], 16)


def proc_sockets(pid, kinds=("tcp", "tcp6")):
    """[(kind, local_port, remote_port, state)] for the sockets `pid` holds open."""
    inodes = _socket_inodes(pid)
    out = []
    for kind in kinds:
        try:
            with open("/proc/net/" + kind) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[9] in inodes:
                out.append((kind, _hex_port(cols[1]), _hex_port(cols[2]),
                            _TCP_STATES.get(cols[3], cols[3]) if kind.startswith("tcp") else cols[3]))
    return out


# ---------------------------------------------------------------------------------------------
# processes

class _Child:
    """A child process in its own session, stopped by PID only."""

    proc = None
    label = "child"

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Exit code, or None if still running after `timeout` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL by PID and reap. Safe to call twice or on a process that already exited."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable (D state): leave it, but do not hang
            return None


class Backend(_Child):
    """tests/support/backend.py on 127.0.0.1; port 0 lets it pick (and report) a free port."""

    def __init__(self, mode, name="b", port=0, proxy_protocol=False, trailer=None, host="127.0.0.1",
                 log_dir=None, ready_timeout=10, extra_args=()):
        self.mode, self.name, self.host = mode, name, host
        self.label = "backend %s (%s)" % (name, mode)
        cmd = [PYTHON, str(BACKEND_PY), "--mode", mode, "--name", name, "--port", str(port),
               "--host", host]
        if proxy_protocol:
            cmd.append("--proxy-protocol")
        if trailer:
            cmd += ["--trailer", trailer]
        cmd += [str(a) for a in extra_args]  # more backend.py options (--delay-ms 5, ...)
        self.stderr_path = Path(log_dir) / ("backend-%s-%d.log" % (name, time.monotonic_ns())) \
            if log_dir else None
        err = open(self.stderr_path, "wb") if self.stderr_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)
        finally:
            if self.stderr_path:
                err.close()
        self.port = self._read_ready(ready_timeout)

    def _read_ready(self, timeout):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise TimeoutError("%s did not print ready within %ss" % (self.label, timeout))
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.kill()
                    raise RuntimeError("%s exited before ready (code %s)"
                                       % (self.label, self.proc.returncode))
                buf += chunk
        finally:
            sel.close()
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError("%s printed %r instead of ready" % (self.label, line))
        return int(line.split()[1])

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def kill(self):
        code = super().kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


class Fulcrum(_Child):
    """fulcrum run -c WORKDIR/fulcrum.yaml, stderr captured to WORKDIR/fulcrum.stderr."""

    label = "fulcrum"

    def __init__(self, workdir, binary=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or fulcrum_bin()
        self.config_path = self.workdir / "fulcrum.yaml"
        self.stderr_path = self.workdir / "fulcrum.stderr"
        self.stdout_path = self.workdir / "fulcrum.stdout"
        self.config = None

    def write_config(self, config):
        """config: YAML text, or a dict turned into YAML."""
        self.config = config
        text = config if isinstance(config, str) else to_yaml(config) + "\n"
        self.config_path.write_text(text)
        return self.config_path

    def start(self, config, ready=True, ready_timeout=10, args=()):
        self.write_config(config)
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen([self.binary, "run", "-c", str(self.config_path), *args],
                                         cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True)
        if ready:
            self.wait_ready(timeout=ready_timeout)
        return self

    # -- readiness ------------------------------------------------------------------------------

    def listener_ports(self):
        """(port, kind) of each listener (and admin) in the config; kind is tcp or udp."""
        text = self.config_path.read_text()
        out = []
        if isinstance(self.config, dict):
            for l in self.config.get("listeners", []):
                port = int(str(l["bind"]).rsplit(":", 1)[1])
                proto = l.get("protocol", "http")
                if proto != "udp":
                    out.append((port, "tcp"))
                if proto in ("udp", "dns"):
                    out.append((port, "udp"))
            admin = self.config.get("admin")
            if admin and admin.get("listen"):
                out.append((int(str(admin["listen"]).rsplit(":", 1)[1]), "tcp"))
            return out
        for m in re.finditer(r"(?:bind|listen):\s*['\"]?[^\s'\",}]*:(\d+)", text):
            out.append((int(m.group(1)), "tcp"))
        return out

    def listening(self, port, kind="tcp"):
        """True when this process holds a listening (tcp) / bound (udp) socket on `port`."""
        if kind == "tcp":
            return any(lp == port and st == "LISTEN"
                       for _, lp, _, st in proc_sockets(self.pid, ("tcp", "tcp6")))
        return any(lp == port for _, lp, _, _ in proc_sockets(self.pid, ("udp", "udp6")))

    def wait_ready(self, timeout=10, probe="listen"):
        """Waits until every listener port is open, failing early if fulcrum exits.

        probe="listen" (default) looks for fulcrum's own LISTEN sockets in /proc: the kernel
        accepts TCP connections on them from that moment, and unlike a probe connection it
        neither takes a turn of the balancer nor shows up at a backend (which would skew the
        round-robin counts the tests assert). probe="connect" also makes a TCP connection.
        """
        ports = self.listener_ports()
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if not self.alive():
                raise RuntimeError("fulcrum exited with code %s before listening on %s\n%s"
                                   % (self.proc.returncode, pending, self.stderr))
            pending = [(p, k) for p, k in pending if not self.listening(p, k)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("fulcrum not listening on %s after %ss\n%s"
                                   % (pending, timeout, self.stderr))
            time.sleep(0.02)
        if probe == "connect":
            for p, k in ports:
                if k == "tcp":
                    wait_until(lambda: _can_connect(p), max(0.1, deadline - time.monotonic()),
                               what="a TCP connection to port %d" % p)

    # -- observation ----------------------------------------------------------------------------

    def upstream_conns(self, port):
        """Sockets fulcrum holds open to remote `port` (any state): its connections to a backend."""
        return sum(1 for _, _, rp, st in proc_sockets(self.pid) if rp == port and st != "LISTEN")

    def open_fds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.pid))
        except OSError:
            return -1

    def fd_kinds(self):
        """Counter of this process's descriptors by kind: socket, pipe, anon_inode, file."""
        import collections
        kinds = collections.Counter()
        try:
            fds = os.listdir("/proc/%d/fd" % self.pid)
        except OSError:
            return kinds
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (self.pid, fd))
            except OSError:
                continue
            kinds[link.split(":", 1)[0] if link.startswith(("socket:", "pipe:", "anon_inode:"))
                  else "file"] += 1
        return kinds

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    @property
    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, limit=20000):
        text = self.stderr
        return text if len(text) <= limit else "...[%d bytes cut]...\n%s" % (
            len(text) - limit, text[-limit:])

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, timeout=15):
        """SIGTERM by PID; returns the exit code. Kills and raises if it outlives `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
            raise AssertionError("fulcrum did not exit within %ss of SIGTERM" % timeout)
        return code


def _can_connect(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The part of `text` from the first sanitizer report on, or "" if there is none."""
    found = [text.find(m) for m in SANITIZER_MARKS if m in text]
    return text[min(found):][:8000] if found else ""


def run_fulcrum(*args, timeout=20, cwd=None):
    """Runs `fulcrum ARGS...` to completion: CompletedProcess with text stdout/stderr."""
    return subprocess.run([fulcrum_bin(), *map(str, args)], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# clients

def connect(port, host="127.0.0.1", src=None, timeout=5.0):
    """A connected TCP socket; `src` binds the client side to that loopback address first."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


def recv_line(sock, timeout=5.0, limit=65536):
    """One line (without the newline) read byte-wise-safe; b"" if EOF comes first."""
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return buf
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("line longer than %d bytes" % limit)
    return buf[:-1]


def recv_all(sock, timeout=5.0, limit=1 << 30):
    """Everything until EOF (raises socket.timeout if EOF does not come within `timeout` s)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(262144)
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > limit:
            raise AssertionError("more than %d bytes" % limit)


def server_name(port, src=None, timeout=5.0):
    """Connects through `port` to a `name` backend and returns the name it announces."""
    with connect(port, src=src, timeout=timeout) as s:
        return recv_line(s, timeout).decode()


def http_request(sock, method, path, headers=None, body=b"", timeout=5.0):
    """Sends one HTTP/1.1 request on `sock`, returns (status, {lower-name: value}, body)."""
    hdrs = {"Host": "test"}
    hdrs.update(headers or {})
    if body:
        hdrs["Content-Length"] = str(len(body))
    head = "%s %s HTTP/1.1\r\n%s\r\n" % (method, path, "".join("%s: %s\r\n" % kv for kv in hdrs.items()))
    sock.settimeout(timeout)
    sock.sendall(head.encode("latin-1") + body)
    f = sock.makefile("rb")
    try:
        status_line = f.readline()
        if not status_line:
            raise ConnectionError("connection closed before a response")
        status = int(status_line.split()[1])
        resp_headers = {}
        while True:
            line = f.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            resp_headers[k.strip().lower()] = v.strip()
        n = int(resp_headers.get("content-length", "0"))
        data = f.read(n) if method != "HEAD" else b""
        return status, resp_headers, data
    finally:
        f.close()


def log_lines(b, kind):
    """Lines of kind `kind` ("request", ...) from a web() backend's request log, split as
    [method, rest]; [] before the log exists."""
    try:
        text = b.log_path.read_text()
    except OSError:
        return []
    return [line.split(" ", 3)[1:] for line in text.splitlines() if line.startswith(kind + " ")]


class NetNs:
    """A network namespace of the test's own (root and iproute2 needed), with lo up at `mtu`, and
    /etc/netns/NAME/resolv.conf when `nameserver` is given (`ip netns exec` mounts it over
    /etc/resolv.conf: getaddrinfo in the namespace asks that server). Use as a context manager;
    run(...) and popen(...) start commands inside it, fulcrum(workdir) a harness Fulcrum whose
    process runs there (same PID: `ip netns exec` execs). Everything is removed on exit."""

    def __init__(self, tmp_path, mtu=None, nameserver=None):
        self.name = "fulcrum-%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        self.tmp_path, self.mtu, self.nameserver = Path(tmp_path), mtu, nameserver
        self.etc = Path("/etc/netns") / self.name

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=10)
        lo = ["ip", "-n", self.name, "link", "set", "lo"] + (["mtu", str(self.mtu)] if self.mtu else []) + ["up"]
        subprocess.run(lo, check=True, timeout=10)
        if self.nameserver:
            self.etc.mkdir(parents=True, exist_ok=True)
            (self.etc / "resolv.conf").write_text("nameserver %s\noptions timeout:5 attempts:1\n" % self.nameserver)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], timeout=10)
        if self.etc.exists():
            for p in self.etc.iterdir():
                p.unlink()
            self.etc.rmdir()

    def cmd(self, *args):
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args, timeout=20):
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout)

    def popen(self, *args, **kwargs):
        return subprocess.Popen(self.cmd(*args), **kwargs)

    def fulcrum(self, workdir):
        wrapper = self.tmp_path / ("in-%s.sh" % self.name)
        wrapper.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (self.name, fulcrum_bin()))
        wrapper.chmod(0o755)
        return Fulcrum(workdir, binary=str(wrapper))


def scrape_metrics(admin_port, prefix, gauges=()):
    """{(name, frozenset(labels)): value} of every sample of GET /metrics whose name starts with
    `prefix`, checking that each follows its own family's TYPE line, which says counter (gauge for
    the names in `gauges`)."""
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5).read().decode()
    family, out = None, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            family = name
            if name.startswith(prefix):
                assert kind == ("gauge" if name in gauges else "counter"), line
        if not line.startswith(prefix):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\d+)$', line)
        assert m, line
        assert m.group(1) == family, "sample outside its family: " + line
        labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = int(m.group(3))
    return out


def expected_series(listener, series, counts):
    """{(name, frozenset(labels)): value} for every (name, extra labels) of `series` on `listener`,
    zero unless `counts` ({(name, extra labels as a tuple of pairs): value}) says otherwise."""
    unknown = set(counts) - set(series)
    assert not unknown, unknown
    return {(name, frozenset((("listener", listener),) + extra)): counts.get((name, extra), 0)
            for name, extra in series}


def thread_count(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))
