#!/usr/bin/env python3
"""A bounded HTTP request loop for the high-availability test (standard library only).

Sends GET requests to --url one after another, each on a new connection with a short timeout
(a new client every time, as after a failover), and prints one line per request, flushed:

    <start> <end> ok <status> <X-Backend>
    <start> <end> err <what went wrong>

with times from CLOCK_MONOTONIC (shared by every network namespace, so the test can compare
them with its own clock). Prints "ready" first. Stops when stdin closes or after --max-seconds,
whichever comes first; it never runs unbounded.
"""
import argparse
import http.client
import os
import select
import sys
import time
import urllib.parse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=0.5, help="per request (connect and read)")
    p.add_argument("--pause", type=float, default=0.02, help="between requests")
    p.add_argument("--max-seconds", type=float, default=20.0)
    args = p.parse_args()
    u = urllib.parse.urlsplit(args.url)
    path = u.path or "/"
    deadline = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sys.stdin], [], [], 0)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # stdin closed: the test has seen enough
        start = time.monotonic()
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=args.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                line = "ok %d %s" % (resp.status, resp.getheader("X-Backend", "-"))
            else:
                line = "err status-%d" % resp.status
        except (OSError, http.client.HTTPException) as e:
            line = "err %s" % (type(e).__name__,)
        finally:
            conn.close()
        print("%.6f %.6f %s" % (start, time.monotonic(), line), flush=True)
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
