#!/usr/bin/env python3
"""Loopback test backend for fulcrum's integration tests and benchmarks (standard library only).

One thread per connection; prints "ready PORT" on stdout once listening (--port 0 picks a free
port, which avoids the race of probing for one first). Modes:

  echo  echoes bytes; on the client's EOF sends --trailer (if any), then closes. A proxy that
        turns a client's half-close into a full close makes the trailer go missing.
  name  on connect sends "NAME\\n", then holds the connection (discarding input) until the client
        closes: each connection tells the client which server it reached, and stays counted as
        active for least_conn while it is open.
  http  HTTP/1.1 with keep-alive and pipelining. Every response carries `X-Backend: NAME`.
          GET /                 200 "NAME\\n"
          GET /health           200 "OK\\n"
          GET /delay?ms=N       sleeps N ms, then 200 "NAME\\n"
          GET /big?bytes=N      200 with an N-byte body, streamed
          GET /status?code=N    that status, body "NAME\\n"
          GET /headers          200, the request head as JSON (method, target, headers in order)
          *   /echo             200, the request body
          GET /proxyinfo        200, the PROXY protocol header of this connection as JSON
          *   /sha256           200 {"sha256": HEX, "bytes": N} of the request body, hashed as it
                                streams in (CL or chunked; nothing is buffered: 1 GiB uploads)
          GET /big?bytes=N&chunked=1   as /big, chunked (64 KiB chunks)
          GET /until-close?bytes=N     200 without Content-Length, the body ends when we close
          GET /early-hints      103 Early Hints, then 200 "NAME\n"
          GET /ws               with "Upgrade: websocket": 101, then echoes raw bytes until EOF
          POST /login           200, Set-Cookie: sid=NEW; the session is kept in this process
          GET /profile          200 "NAME\n" if the sid cookie names a session of this process,
                                else 401 (a session lives on the server that created it)
        Any target with the query parameter close=1 is answered with "Connection: close" (and
        the connection closed after it).
        Options for http mode: --delay-ms N delays every response; --misbehave garbage|close|reset
        reads each request and then answers garbage, closes, or resets (RST) instead;
        --request-log FILE appends "conn ID PEER_PORT" per connection and "req ID METHOD TARGET"
        per request read whole (its body included), so tests can count what reached a server.

With --proxy-protocol every connection may start with a PROXY protocol header, v1 (text line) or
v2 (binary); it is consumed, never echoed, and kept for /proxyinfo. A connection without one gets
{"version": null}; a malformed one is logged to stderr and the connection closed (as HAProxy's
accept-proxy does).
"""
import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
RECV_SIZE = 256 * 1024


class ProtocolError(Exception):
    pass


class Reader:
    """Buffered reads from a socket: lines, exact sizes, whatever is there."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        data = self.sock.recv(RECV_SIZE)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def peek(self, n):
        while len(self.buf) < n and self.fill():
            pass
        return bytes(self.buf[:n])

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise ProtocolError("EOF after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def line(self, limit=65536):
        """Up to and including CRLF (or LF); None at a clean EOF before any byte."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                out = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("line too long")
            start = len(self.buf)
            if not self.fill():
                if self.buf:
                    raise ProtocolError("EOF inside a line")
                return None

    def take(self):
        """What is buffered, or one recv; b"" at EOF."""
        if self.buf:
            out = bytes(self.buf)
            self.buf.clear()
            return out
        if self.fill():
            return self.take()
        return b""


def parse_proxy_header(reader):
    """Consumes a PROXY protocol header if the connection starts with one (v1 or v2)."""
    first = reader.peek(1)
    if first == b"P" and reader.peek(6) == b"PROXY ":
        line = reader.line(limit=107)  # v1: at most 107 bytes with CRLF (spec section 2.1)
        if line is None or not line.endswith(b"\r\n") or len(line) > 107:
            raise ProtocolError("bad PROXY v1 line %r" % line)
        words = line[:-2].decode("ascii", "replace").split(" ")
        info = {"version": 1, "raw": line[:-2].decode("ascii", "replace"), "family": words[1]}
        if words[1] in ("TCP4", "TCP6"):
            if len(words) != 6:
                raise ProtocolError("bad PROXY v1 line %r" % line)
            info.update(src_addr=words[2], dst_addr=words[3], src_port=int(words[4]),
                        dst_port=int(words[5]), command="PROXY")
        elif words[1] == "UNKNOWN":
            info["command"] = "PROXY"
        else:
            raise ProtocolError("bad PROXY v1 family %r" % words[1])
        return info
    if first == b"\r" and reader.peek(12) == V2_SIGNATURE:
        head = reader.exact(16)
        ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
        body = reader.exact(length)
        if ver_cmd >> 4 != 2 or (ver_cmd & 0xF) not in (0, 1):
            raise ProtocolError("bad PROXY v2 version/command 0x%02x" % ver_cmd)
        info = {"version": 2, "command": "PROXY" if ver_cmd & 0xF else "LOCAL",
                "family": {0x00: "UNSPEC", 0x11: "TCP4", 0x12: "UDP4", 0x21: "TCP6",
                           0x22: "UDP6", 0x31: "UNIX_STREAM", 0x32: "UNIX_DGRAM"}.get(fam, hex(fam))}
        if fam >> 4 == 1:
            if length < 12:
                raise ProtocolError("short PROXY v2 IPv4 block")
            info.update(src_addr=socket.inet_ntop(socket.AF_INET, body[0:4]),
                        dst_addr=socket.inet_ntop(socket.AF_INET, body[4:8]),
                        src_port=struct.unpack("!H", body[8:10])[0],
                        dst_port=struct.unpack("!H", body[10:12])[0])
            tlv = body[12:]
        elif fam >> 4 == 2:
            if length < 36:
                raise ProtocolError("short PROXY v2 IPv6 block")
            info.update(src_addr=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                        dst_addr=socket.inet_ntop(socket.AF_INET6, body[16:32]),
                        src_port=struct.unpack("!H", body[32:34])[0],
                        dst_port=struct.unpack("!H", body[34:36])[0])
            tlv = body[36:]
        else:
            tlv = b""
        tlvs = []
        while len(tlv) >= 3:
            t, n = tlv[0], struct.unpack("!H", tlv[1:3])[0]
            tlvs.append({"type": t, "value": tlv[3:3 + n].hex()})
            tlv = tlv[3 + n:]
        info["tlvs"] = tlvs
        return info
    return {"version": None}


class Server:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.lock = threading.Lock()
        self.active = 0
        self.total = 0
        self.big_block = bytes(range(256)) * 256  # 64 KiB pattern for /big
        self.sessions = set()
        self.log = open(args.request_log, "a", buffering=1) if args.request_log else None

    def serve(self):
        ls = socket.socket(socket.AF_INET6 if ":" in self.args.host else socket.AF_INET)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.args.host, self.args.port))
        ls.listen(4096)
        print("ready %d" % ls.getsockname()[1], flush=True)
        while True:
            conn, peer = ls.accept()
            threading.Thread(target=self.handle, args=(conn, peer), daemon=True).start()

    def handle(self, conn, peer):
        with self.lock:
            self.active += 1
            self.total += 1
            conn_id = self.total
        self.log_line("conn %d %d" % (conn_id, peer[1]))
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.args.tls_cert:  # HTTPS backend (TLS to backends): handshake in this thread
                import ssl
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.args.tls_cert, self.args.tls_key)
                conn = ctx.wrap_socket(conn, server_side=True)
            reader = Reader(conn)
            reader.conn_id = conn_id
            if self.args.mode == "name":
                conn.sendall(("%s\n" % self.name).encode())
            proxy = {"version": None}
            if self.args.proxy_protocol:
                proxy = parse_proxy_header(reader)
            getattr(self, "mode_" + self.args.mode)(conn, reader, proxy, peer)
        except ProtocolError as e:
            print("backend %s: %s: %s" % (self.name, peer, e), file=sys.stderr, flush=True)
        except OSError:
            pass  # the peer reset or went away: nothing to report to anyone
        finally:
            with self.lock:
                self.active -= 1
            try:
                conn.close()
            except OSError:
                pass

    def log_line(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")

    def mode_name(self, conn, reader, proxy, peer):
        while reader.take():
            pass

    def mode_echo(self, conn, reader, proxy, peer):
        while True:
            data = reader.take()
            if not data:
                break
            conn.sendall(data)
        if self.args.trailer:
            conn.sendall(self.args.trailer.encode())
        conn.shutdown(socket.SHUT_WR)

    def mode_http(self, conn, reader, proxy, peer):
        while True:
            line = reader.line()
            if line is None:
                return
            if line in (b"\r\n", b"\n"):
                continue  # RFC 9112 section 2.2: ignore a CRLF before the request line
            parts = line.decode("latin-1").rstrip("\r\n").split(" ")
            if len(parts) != 3:
                self.respond(conn, 400, b"bad request line\n", close=True)
                return
            method, target, version = parts
            headers = []
            while True:
                h = reader.line()
                if h is None:
                    return
                if h in (b"\r\n", b"\n"):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            lower = {}
            for k, v in headers:
                lower.setdefault(k.lower(), v)
            path = target.split("?", 1)[0]
            digest = None
            if path == "/sha256":
                digest = self.hash_body(reader, lower)
                body = b""
            else:
                body = self.read_body(reader, lower)
            self.log_line("req %d %s %s" % (reader.conn_id, method, target))
            if self.args.misbehave:
                self.misbehave(conn)
                return
            if self.args.delay_ms:
                time.sleep(self.args.delay_ms / 1000.0)
            conn_hdr = lower.get("connection", "").lower()
            close = "close" in conn_hdr or (version == "HTTP/1.0" and "keep-alive" not in conn_hdr)
            if "close=1" in target.partition("?")[2].split("&"):
                close = True  # any target with close=1: answer with Connection: close, then close
            if digest is not None:
                self.respond(conn, 200, json.dumps({"sha256": digest[0], "bytes": digest[1]}).encode(),
                             close, method == "HEAD", "application/json")
            elif path == "/ws" and lower.get("upgrade", "").lower() == "websocket":
                self.upgrade_echo(conn, reader)
                return
            elif path == "/until-close":
                self.until_close(conn, target)
                return
            else:
                self.route(conn, method, target, headers, body, proxy, close)
            if close:
                conn.shutdown(socket.SHUT_WR)
                return

    def hash_body(self, reader, lower):
        """(sha256 hex, length) of the body, streamed through the hash without keeping it."""
        h = hashlib.sha256()
        total = 0

        def take(n):
            nonlocal total
            while n > 0:
                if not reader.buf and not reader.fill():
                    raise ProtocolError("EOF in body")
                piece = bytes(reader.buf[:n])
                del reader.buf[:len(piece)]
                h.update(piece)
                total += len(piece)
                n -= len(piece)

        if "chunked" in lower.get("transfer-encoding", "").lower():
            while True:
                size_line = reader.line()
                if size_line is None:
                    raise ProtocolError("EOF in chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while reader.line() not in (b"\r\n", b"\n", None):
                        pass
                    break
                take(size)
                reader.exact(2)
        else:
            take(int(lower.get("content-length", "0") or 0))
        return h.hexdigest(), total

    def misbehave(self, conn):
        how = self.args.misbehave
        if how == "garbage":
            conn.sendall(b"this is not HTTP\r\n\r\n")
        elif how == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # "close": nothing; handle() closes the connection

    def upgrade_echo(self, conn, reader):
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"X-Backend: " + self.name.encode() + b"\r\n\r\n")
        while True:
            data = reader.take()
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    def until_close(self, conn, target):
        n = int(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query)).get("bytes", "1000"))
        conn.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Backend: %s\r\n"
                      "Connection: close\r\n\r\n" % self.name).encode())
        while n > 0:
            chunk = self.big_block[: min(n, len(self.big_block))]
            conn.sendall(chunk)
            n -= len(chunk)
        conn.shutdown(socket.SHUT_WR)

    def read_body(self, reader, lower):
        if "chunked" in lower.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                size_line = reader.line()
                if size_line is None:
                    raise ProtocolError("EOF in chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while reader.line() not in (b"\r\n", b"\n", None):
                        pass  # trailers
                    return bytes(out)
                out += reader.exact(size)
                reader.exact(2)
        n = int(lower.get("content-length", "0") or 0)
        return reader.exact(n) if n else b""

    def route(self, conn, method, target, headers, body, proxy, close):
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        head_only = method == "HEAD"
        name_body = ("%s\n" % self.name).encode()
        path = url.path
        if path == "/health":
            self.respond(conn, 200, b"OK\n", close, head_only)
        elif path == "/delay":
            time.sleep(int(query.get("ms", "0")) / 1000.0)
            self.respond(conn, 200, name_body, close, head_only)
        elif path == "/big" and query.get("chunked") == "1":
            n = int(query.get("bytes", str(1024 * 1024)))
            conn.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Backend: %s\r\n"
                          "Transfer-Encoding: chunked\r\n%s\r\n"
                          % (self.name, "Connection: close\r\n" if close else "")).encode())
            if head_only:
                return
            while n > 0:
                chunk = self.big_block[: min(n, len(self.big_block))]
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                n -= len(chunk)
            conn.sendall(b"0\r\n\r\n")
        elif path == "/big":
            n = int(query.get("bytes", str(1024 * 1024)))
            self.respond_head(conn, 200, n, close, "application/octet-stream")
            if head_only:
                return
            while n > 0:
                chunk = self.big_block[: min(n, len(self.big_block))]
                conn.sendall(chunk)
                n -= len(chunk)
        elif path == "/status":
            self.respond(conn, int(query.get("code", "200")), name_body, close, head_only)
        elif path == "/headers":
            doc = {"method": method, "target": target, "headers": headers, "server": self.name}
            self.respond(conn, 200, json.dumps(doc).encode(), close, head_only, "application/json")
        elif path == "/echo":
            self.respond(conn, 200, body, close, head_only, "application/octet-stream")
        elif path == "/proxyinfo":
            self.respond(conn, 200, json.dumps(proxy).encode(), close, head_only, "application/json")
        elif path == "/early-hints":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.respond(conn, 200, name_body, close, head_only)
        elif path.endswith("/fields"):
            # A head as some servers write it: odd-cased names, a field its Connection lists,
            # Keep-Alive, two Set-Cookie and a repeated (equal) Content-Length.
            body = name_body
            head = ("HTTP/1.1 200 OK\r\nCONTENT-type: text/plain\r\nContent-Length: %d\r\n"
                    "content-length: %d\r\nX-Backend: %s\r\nConnection: keep-alive, X-Private\r\n"
                    "X-Private: secret\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                    "Cache-Control: public, max-age=60\r\nX-Mixed-Case-Name: v\r\n\r\n"
                    % (len(body), len(body), self.name))
            conn.sendall(head.encode() + (b"" if head_only else body))
        elif path == "/login" and method == "POST":
            sid = os.urandom(8).hex()
            with self.lock:
                self.sessions.add(sid)
            self.respond(conn, 200, name_body, close, head_only, extra="Set-Cookie: sid=%s; Path=/\r\n" % sid)
        elif path == "/profile":
            sid = None
            for k, v in headers:
                if k.lower() == "cookie":
                    for pair in v.split(";"):
                        name, _, value = pair.strip().partition("=")
                        if name == "sid":
                            sid = value
            with self.lock:
                known = sid in self.sessions
            self.respond(conn, 200 if known else 401, name_body, close, head_only)
        elif path == "/":
            self.respond(conn, 200, name_body, close, head_only)
        else:
            self.respond(conn, 404, b"not found\n", close, head_only)

    REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
               401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
               503: "Service Unavailable"}

    def respond_head(self, conn, status, length, close, ctype="text/plain", extra=""):
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nX-Backend: %s\r\n%s%s\r\n"
                % (status, self.REASONS.get(status, "Status"), ctype, length, self.name,
                   "Connection: close\r\n" if close else "", extra))
        conn.sendall(head.encode("latin-1"))

    def respond(self, conn, status, body, close, head_only=False, ctype="text/plain", extra=""):
        self.respond_head(conn, status, len(body), close, ctype, extra)
        if body and not head_only:
            conn.sendall(body)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["echo", "name", "http"], required=True)
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="backend")
    p.add_argument("--trailer", default="", help="echo mode: sent after the client's EOF")
    p.add_argument("--delay-ms", type=int, default=0, help="http mode: delay every response")
    p.add_argument("--misbehave", choices=["garbage", "close", "reset"],
                   help="http mode: read each request, then answer garbage, close or reset")
    p.add_argument("--request-log", default="", help="append connections and requests to this file")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="accept a PROXY protocol v1/v2 header at the start of each connection")
    p.add_argument("--tls-cert", help="serve TLS with this certificate (PEM) and --tls-key")
    p.add_argument("--tls-key")
    args = p.parse_args()
    try:
        Server(args).serve()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
