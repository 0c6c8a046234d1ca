"""`protocol: dns` end to end: the built binary answering dig (dnsutils) on loopback. Rotation
across queries, weights, `answers: 2`, a TCP query, REFUSED outside the zones, an empty answer for
other types, AAAA from IPv6 servers, TC and the TCP retry with many servers, a server leaving the
answers when its health check fails and coming back when it passes, fail open with every server
down, malformed packets that change nothing, and the fulcrum_dns_* counters of GET /metrics
(exact, across workers and a reload). Every wait is bounded."""
import collections
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

import harness
from harness import free_port, tcp_config, wait_until

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")

NAME = "www.example.com"


def dig(port, name=NAME, qtype="A", *opts, netns=None):
    """Runs dig against 127.0.0.1:port (inside network namespace `netns` if given); returns
    {status, flags, answers, text}. answers is a list of (ttl, type, data) in the order of the
    reply."""
    cmd = ["dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *opts, name, qtype]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    answers = []
    section = None
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = "answer"
            continue
        if line.startswith(";;") or not line.strip():
            if section == "answer" and not line.strip():
                section = None
            continue
        if section == "answer":
            cols = line.split()
            answers.append((int(cols[1]), cols[3], cols[4]))
    return {"status": status.group(1) if status else None,
            "flags": flags.group(1).split() if flags else [],
            "answers": answers, "text": out}


def addresses(reply):
    return [a[2] for a in reply["answers"]]


def dns_listener(port, zones):
    return {"name": "dns", "bind": "127.0.0.1:%d" % port, "protocol": "dns", "zones": zones}


def start_dns(fulcrum, servers, zone=None, workers=1, health=None, balance=None):
    """fulcrum with one dns listener answering NAME from backend `app` over `servers` (a list of
    server dicts); returns (fulcrum, port)."""
    port = free_port()
    z = {"name": NAME, "backend": "app", "ttl": 30}
    z.update(zone or {})
    backend = {"servers": servers}
    if health:
        backend["health"] = health
    if balance:
        backend["balance"] = balance
    f = fulcrum(tcp_config({"app": backend}, [dns_listener(port, [z])], workers=workers))
    return f, port


def servers(n, base="127.0.0.", port=80, weights=None):
    return [dict({"name": "s%d" % i, "address": "%s%d:%d" % (base, 10 + i, port)},
                 **({"weight": weights[i]} if weights else {})) for i in range(n)]


# ---------------------------------------------------------------------------------------------

def test_answers_every_server_with_ttl(fulcrum):
    f, port = start_dns(fulcrum, servers(3), {"ttl": 42})
    r = dig(port)
    assert r["status"] == "NOERROR", r["text"]
    assert "aa" in r["flags"] and "qr" in r["flags"]
    assert sorted(addresses(r)) == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    assert all(ttl == 42 and t == "A" for ttl, t, _ in r["answers"])


def test_rotation_across_queries(fulcrum):
    f, port = start_dns(fulcrum, servers(3))
    leads = [addresses(dig(port))[0] for _ in range(6)]
    # One worker: the leading record goes round in turn, and the rest follow in config order.
    assert leads[:3] != leads[1:4]
    assert sorted(leads[:3]) == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    assert leads[3:] == leads[:3]


def test_rotation_with_two_workers_covers_every_server(fulcrum):
    f, port = start_dns(fulcrum, servers(3), workers=2)
    leads = collections.Counter(addresses(dig(port))[0] for _ in range(30))
    assert set(leads) == {"127.0.0.10", "127.0.0.11", "127.0.0.12"}, leads


def test_weights_share_the_lead(fulcrum):
    f, port = start_dns(fulcrum, servers(2, weights=[3, 1]), {"answers": 1})
    leads = collections.Counter(addresses(dig(port))[0] for _ in range(16))
    assert leads == {"127.0.0.10": 12, "127.0.0.11": 4}, leads


def test_answers_two(fulcrum):
    f, port = start_dns(fulcrum, servers(4), {"answers": 2})
    seen = collections.Counter()
    for _ in range(8):
        got = addresses(dig(port))
        assert len(got) == 2 and got[0] != got[1], got
        seen.update(got)
    assert seen == {"127.0.0.%d" % (10 + i): 4 for i in range(4)}, seen


def test_tcp_query(fulcrum):
    f, port = start_dns(fulcrum, servers(2))
    r = dig(port, NAME, "A", "+tcp")
    assert r["status"] == "NOERROR", r["text"]
    assert "(TCP)" in r["text"]
    assert sorted(addresses(r)) == ["127.0.0.10", "127.0.0.11"]


def test_several_queries_on_one_tcp_connection(fulcrum):
    f, port = start_dns(fulcrum, servers(2))
    # dig +keepopen sends the queries of one invocation over one connection.
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tcp", "+keepopen", "+short", "+time=2",
                          "+tries=1", NAME, "A", NAME, "MX", NAME, "A"],
                         capture_output=True, text=True, timeout=15).stdout
    assert sorted(out.split()) == ["127.0.0.10", "127.0.0.10", "127.0.0.11", "127.0.0.11"], out


def test_case_insensitive_and_echoed(fulcrum):
    f, port = start_dns(fulcrum, servers(1))
    r = dig(port, "WwW.ExAmPle.CoM")
    assert r["status"] == "NOERROR"
    assert "WwW.ExAmPle.CoM." in r["text"]
    assert addresses(r) == ["127.0.0.10"]


def test_refused_outside_the_zones(fulcrum):
    f, port = start_dns(fulcrum, servers(1))
    for name in ("example.com", "x.www.example.com", "www.example.org"):
        r = dig(port, name)
        assert r["status"] == "REFUSED", r["text"]
        assert r["answers"] == []
        assert "aa" not in r["flags"]


def test_other_types_get_an_empty_answer(fulcrum):
    f, port = start_dns(fulcrum, servers(1))
    for qtype in ("MX", "TXT", "SOA", "NS"):
        r = dig(port, NAME, qtype)
        assert r["status"] == "NOERROR", r["text"]
        assert r["answers"] == []
        assert "aa" in r["flags"]


def test_aaaa_from_ipv6_servers_only(fulcrum):
    srv = servers(2) + [{"name": "v6", "address": "[::1]:80"}]
    f, port = start_dns(fulcrum, srv)
    assert addresses(dig(port, NAME, "AAAA")) == ["::1"]
    assert sorted(addresses(dig(port, NAME, "A"))) == ["127.0.0.10", "127.0.0.11"]


def test_truncated_then_tcp_with_many_servers(fulcrum):
    f, port = start_dns(fulcrum, servers(100))
    # Without EDNS a reply holds 512 bytes: 100 records (1633 bytes) do not fit.
    r = dig(port, NAME, "A", "+noedns", "+ignore")
    assert "tc" in r["flags"], r["text"]
    assert r["answers"] == []
    # dig's default EDNS size (1232) is too small as well; dig retries over TCP and gets them all.
    r = dig(port, NAME, "A")
    assert "Truncated, retrying in TCP mode" in r["text"], r["text"]
    assert "(TCP)" in r["text"]
    assert len(r["answers"]) == 100
    # A client that can take 4096 bytes gets them over UDP.
    r = dig(port, NAME, "A", "+bufsize=4096")
    assert "tc" not in r["flags"] and len(r["answers"]) == 100
    assert "(UDP)" in r["text"]


def test_edns(fulcrum):
    f, port = start_dns(fulcrum, servers(1))
    r = dig(port, NAME, "A", "+dnssec")
    assert "; EDNS: version: 0, flags: do; udp: 1232" in r["text"], r["text"]
    r = dig(port, NAME, "A", "+noedns")
    assert "OPT PSEUDOSECTION" not in r["text"]
    r = dig(port, NAME, "A", "+edns=1", "+noednsnegotiation")
    assert "status: BADVERS" in r["text"], r["text"]


class Listening:
    """Real TCP listening sockets on 127.0.0.x:port, for tcp health checks; close()/open() move a
    server between failing and passing its check."""

    def __init__(self, host, port):
        self.host, self.port, self.sock = host, port, None
        self.open()

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        self.sock = s

    def close(self):
        self.sock.close()
        self.sock = None


HEALTH = {"check": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 1}


def test_server_leaves_when_its_check_fails_and_returns(fulcrum):
    port = free_port()
    hosts = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
    live = [Listening(h, port) for h in hosts]
    try:
        srv = [{"name": "s%d" % i, "address": "%s:%d" % (h, port)} for i, h in enumerate(hosts)]
        f, dport = start_dns(fulcrum, srv, health=HEALTH, workers=2)
        wait_until(lambda: sorted(addresses(dig(dport))) == hosts, 5, 0.05, "every server up")
        live[1].close()
        t0 = time.monotonic()
        wait_until(lambda: sorted(addresses(dig(dport))) == [hosts[0], hosts[2]], 5, 0.05,
                   "server 2 to leave the answers")
        left = time.monotonic() - t0
        # Stays out, on every worker.
        for _ in range(10):
            assert hosts[1] not in addresses(dig(dport))
        live[1].open()
        wait_until(lambda: sorted(addresses(dig(dport))) == hosts, 5, 0.05, "server 2 to return")
        assert left < 2.0, left  # interval x fall + timeout, with slack for a busy machine
    finally:
        for s in live:
            if s.sock:
                s.close()


def test_fails_open_with_every_server_down(fulcrum):
    port = free_port()  # nothing listens: every check fails
    srv = [{"name": "s%d" % i, "address": "127.0.0.%d:%d" % (30 + i, port)} for i in range(3)]
    f, dport = start_dns(fulcrum, srv, health=HEALTH)
    time.sleep(0.6)  # several check intervals: all three are down, not just `checking`
    r = dig(dport)
    assert r["status"] == "NOERROR"
    assert sorted(addresses(r)) == ["127.0.0.30", "127.0.0.31", "127.0.0.32"]
    wait_until(lambda: "FAILOPEN" in f.stderr, 5, what="the fail-open log line")


def test_malformed_packets_change_nothing(fulcrum):
    f, port = start_dns(fulcrum, servers(2), workers=2)
    junk = [b"", b"\x00", b"\x12\x34" + b"\xff" * 10, b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
            struct.pack(">HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01" * 2, b"\x00" * 4000]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        for j in junk * 20:
            s.sendto(j, ("127.0.0.1", port))
        with pytest.raises(socket.timeout):
            s.recv(4096)  # nothing comes back for any of them
    # Over TCP: a bad message closes the connection.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(b"\x00\x05hello")
        assert c.recv(100) == b""
    r = dig(port)
    assert r["status"] == "NOERROR" and len(r["answers"]) == 2
    assert f.alive()


def dns_metrics(admin_port):
    return harness.scrape_metrics(admin_port, "fulcrum_dns_", ())


def expected_dns_metrics(listener, counts):
    """Every fulcrum_dns_* series of `listener`, zero unless `counts` ({(name, extra labels):
    value}, extra labels as a tuple of pairs) says otherwise."""
    series = [("fulcrum_dns_queries_total", ()), ("fulcrum_dns_truncated_total", ()),
              ("fulcrum_dns_fail_open_total", ()), ("fulcrum_dns_udp_fragmented_total", ()),
              ("fulcrum_dns_tcp_connections_total", ())]
    series += [("fulcrum_dns_responses_total", (("result", r),))
               for r in ("noerror", "nodata", "refused", "notimp", "formerr", "badvers")]
    series += [("fulcrum_dns_dropped_total", (("reason", r),))
               for r in ("short", "response", "qdcount", "label", "pointer", "name_too_long", "trailing",
                         "oversize", "send_dropped")]
    series += [("fulcrum_dns_tcp_closed_total", (("reason", r),)) for r in ("refused", "bad", "idle")]
    return harness.expected_series(listener, series, counts)



def test_metrics_count_answers_and_drops_exactly_across_a_reload(fulcrum):
    """GET /metrics shows the dns listener's counters summed over both workers: each reply by
    result, each malformed packet dropped by reason (the issue's "dropped and counted"), TCP
    connections and those fulcrum closed. A reload (SIGHUP) retires the listeners that counted
    them; the sums stay and go on from there."""
    port, admin = free_port(), free_port()
    f = fulcrum(tcp_config({"app": {"servers": servers(2)}},
                           [dns_listener(port, [{"name": NAME, "backend": "app", "ttl": 30}])], workers=2,
                           admin={"listen": "127.0.0.1:%d" % admin}))
    assert dns_metrics(admin) == expected_dns_metrics("dns", {})  # every series, at zero, from the start

    # Answered: 4 with records (one over TCP), one NODATA, one REFUSED, one BADVERS.
    for _ in range(3):
        assert len(dig(port)["answers"]) == 2
    assert dig(port, NAME, "A", "+tcp")["status"] == "NOERROR"
    assert dig(port, NAME, "MX")["status"] == "NOERROR"
    assert dig(port, "www.example.org")["status"] == "REFUSED"
    assert "status: BADVERS" in dig(port, NAME, "A", "+edns=1", "+noednsnegotiation")["text"]

    def header(qid, flags=0, qd=1, an=0, ns=0, ar=0):
        return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)
    question = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        # Answered by an error code: NOTIMP (opcode STATUS), FORMERR (two OPT records).
        for packet, rcode in ((header(1, flags=2 << 11, qd=0), 4), (header(2, ar=2) + question + opt + opt, 1)):
            s.sendto(packet, ("127.0.0.1", port))
            reply = s.recv(4096)
            assert reply[:2] == packet[:2] and reply[3] & 0x0F == rcode, reply
        # Dropped unanswered, one per reason.
        junk = [b"\x00\x01\x00",                                                  # short
                header(3, flags=0x8000) + question,                               # response
                header(4, qd=2) + question * 2,                                   # qdcount
                header(5) + b"\x41a\x00\x00\x01\x00\x01",                         # label (type 01)
                header(6) + b"\xc0\x0c\x00\x01\x00\x01",                          # pointer
                header(7) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # name_too_long
                header(8) + question + b"\x00",                                   # trailing
                b"\x00" * 4000]                                                   # oversize
        for j in junk:
            s.sendto(j, ("127.0.0.1", port))
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(4096)
    # Over TCP a malformed query, framed well, is dropped and closes its connection; so does a
    # length no query can have (never handed to the responder: not in queries).
    for data in (b"\x00\x0c" + header(9, qd=0), b"\x00\x05hello"):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            c.sendall(data)
            assert c.recv(100) == b""

    counts = {
        ("fulcrum_dns_queries_total", ()): 7 + 2 + 8,  # dig, NOTIMP and FORMERR, 8 malformed
        ("fulcrum_dns_responses_total", (("result", "noerror"),)): 4,
        ("fulcrum_dns_responses_total", (("result", "nodata"),)): 1,
        ("fulcrum_dns_responses_total", (("result", "refused"),)): 1,
        ("fulcrum_dns_responses_total", (("result", "badvers"),)): 1,
        ("fulcrum_dns_responses_total", (("result", "notimp"),)): 1,
        ("fulcrum_dns_responses_total", (("result", "formerr"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "short"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "response"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "qdcount"),)): 2,  # one over UDP, one over TCP
        ("fulcrum_dns_dropped_total", (("reason", "label"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "pointer"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "name_too_long"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "trailing"),)): 1,
        ("fulcrum_dns_dropped_total", (("reason", "oversize"),)): 1,
        ("fulcrum_dns_tcp_connections_total", ()): 3,
        ("fulcrum_dns_tcp_closed_total", (("reason", "bad"),)): 2,
    }
    want = expected_dns_metrics("dns", counts)
    # The drops send nothing back to wait for: wait for the counts (either worker may have them).
    got = {}

    def settled():
        got.update(dns_metrics(admin))
        return got == want
    try:
        wait_until(settled, 5, 0.05, "the dns counters")
    except TimeoutError:
        assert got == want  # shows the difference
    # The other metrics do not list the dns listener as an http one.
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
    assert 'fulcrum_cache_hits_total{listener="dns"}' not in text

    # Reload: new listeners on new workers; the old ones stop, their threads end and they are
    # freed. What they counted stays, and the new ones add to it.
    threads = harness.thread_count(f.pid)
    os.kill(f.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded" in f.stderr, 5, what="reload")
    wait_until(lambda: harness.thread_count(f.pid) == threads, 5, 0.05, "the old workers to end")
    assert len(dig(port)["answers"]) == 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(header(10, qd=2) + question * 2, ("127.0.0.1", port))
    counts[("fulcrum_dns_queries_total", ())] += 2
    counts[("fulcrum_dns_responses_total", (("result", "noerror"),))] += 1
    counts[("fulcrum_dns_dropped_total", (("reason", "qdcount"),))] += 1
    want = expected_dns_metrics("dns", counts)
    try:
        wait_until(settled, 5, 0.05, "the dns counters after the reload")
    except TimeoutError:
        assert got == want


# Prints "SPORT DF MF OFFSET LEN IPID" for each IPv4 packet on lo (one direction), for SECS seconds.
SNIFFER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("lo", 0x0800))
s.settimeout(0.1)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        pkt, addr = s.recvfrom(70000)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue  # lo shows each packet twice
    ip = pkt[14:] if pkt[0] >> 4 != 4 else pkt  # an Ethernet header of zeros on lo
    ihl = (ip[0] & 15) * 4
    frag = struct.unpack(">H", ip[6:8])[0]
    off = frag & 0x1FFF
    sport = struct.unpack(">H", ip[ihl:ihl + 2])[0] if off == 0 and ip[9] == 17 else 0
    ipid = struct.unpack(">H", ip[4:6])[0]
    print(sport, int(bool(frag & 0x4000)), int(bool(frag & 0x2000)), off, len(ip), ipid, flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2 for a network namespace")
def test_replies_carry_df_and_a_reply_above_the_mtu_goes_fragmented(tmp_path):
    """IPv4 answers leave with DF set and path MTU ignored (IP_PMTUDISC_PROBE: RFC 9715), which
    the wire shows as IP ID 0 (the kernel's default sets DF too but draws an ID for each). One
    larger than the interface's MTU, which a client offered room for, fails with EMSGSIZE under
    DF and is sent again fragmentable, so the client still gets it over UDP. In a network
    namespace of our own whose lo has a 1500-byte MTU."""
    with harness.NetNs(tmp_path, mtu=1500) as ns:
        f = sniffer = None
        try:
            port = free_port()
            f = ns.fulcrum(tmp_path / "f")
            f.start(tcp_config({"app": {"servers": servers(100)}},
                               [dns_listener(port, [{"name": NAME, "backend": "app", "ttl": 30}])], workers=1),
                    ready=False)
            wait_until(lambda: dig(port, NAME, "A", "+noedns", "+ignore", netns=ns.name)["status"] == "NOERROR",
                       10, interval=0.1, what="fulcrum answering in the namespace")
            sniffer = ns.popen("/usr/bin/python3", "-c", SNIFFER, "4", stdout=subprocess.PIPE, text=True)
            assert sniffer.stdout.readline().strip() == "ready"
            small = dig(port, NAME, "A", "+noedns", "+ignore", netns=ns.name)  # 512 bytes: TC, one packet
            assert "tc" in small["flags"], small["text"]
            big = dig(port, NAME, "A", "+bufsize=4096", netns=ns.name)  # 1633 bytes > 1500
            assert "tc" not in big["flags"] and len(big["answers"]) == 100 and "(UDP)" in big["text"], big["text"]
            out, _ = sniffer.communicate(timeout=15)
            rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
            from_us = [r for r in rows if r[0] == port]
            assert len(from_us) == 2, rows  # the small reply, and the first fragment of the big one
            assert from_us[0][1:3] == (1, 0) and from_us[0][5] == 0, rows  # DF, not fragmented, ID 0
            assert from_us[1][1:3] == (0, 1), rows  # DF clear, more fragments follow
            assert any(r[3] > 0 and r[1] == 0 for r in rows), rows  # and the rest of it came
        finally:
            if sniffer and sniffer.poll() is None:
                sniffer.kill()
                sniffer.wait()
            if f is not None and f.alive():
                f.stop()
