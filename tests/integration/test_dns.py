"""`protocol: dns` end to end: the built binary answering dig (dnsutils) on loopback. Rotation
across queries, weights, `answers: 2`, a TCP query, REFUSED outside the zones, an empty answer for
other types, AAAA from IPv6 servers, TC and the TCP retry with many servers, a server leaving the
answers when its health check fails and coming back when it passes, fail open with every server
down, and malformed packets that change nothing. Every wait is bounded."""
import collections
import os
import re
import shutil
import socket
import struct
import subprocess
import time

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
