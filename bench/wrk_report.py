#!/usr/bin/python3
"""Summarises wrk runs: DIR/NAME.ROUND files (wrk --latency output), one row per target with the
median over rounds of req/s, p50, p99 and MiB/s, the errors summed over rounds, and the ratio of
req/s (and of MiB/s) to the first target, the reference. When DIR/NAME.ROUND.cpu holds the CPU
time the target's processes used during that run (clock ticks, then ticks per second), the row
also shows the target's CPU time per request in microseconds (median over rounds): what the
proxy itself costs, apart from the load generator and the backends that share the machine.
usage: wrk_report.py DIR ROUNDS NAME [NAME ...]"""
import re
import statistics
import sys


def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s|m)$", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]


def mib(n, unit):
    # wrk prints sizes in binary units (1 KB = 1024 B) with two decimals.
    return float(n) * {"B": 1.0 / 1048576, "KB": 1.0 / 1024, "MB": 1.0, "GB": 1024.0,
                       "TB": 1048576.0}[unit]


def parse(text):
    """(req/s, p50 ms, p99 ms, MiB/s, errors) of one wrk run, or None when it printed no result."""
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    errors = 0
    e = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if e:
        errors += int(e.group(1))
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        errors += sum(map(int, e.groups()))
    # Anchored: "62.99%" in the +/- Stdev column must not pass for the 99th percentile.
    return (float(m.group(1)), ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1)),
            ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1)),
            mib_per_s(text), errors)


def mib_per_s(text):
    """Total read over the run's duration: finer than "Transfer/sec", which wrk rounds to
    0.01 GB (10 MiB/s) on bulk transfers."""
    m = re.search(r"\d+ requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read", text)
    if m:
        return mib(m.group(3), m.group(4)) / (ms(m.group(1) + m.group(2)) / 1000.0)
    n, u = re.match(r"([\d.]+)(B|KB|MB|GB|TB)$",
                    re.search(r"Transfer/sec:\s+(\S+)", text).group(1)).groups()
    return mib(n, u)


def cpu_us_per_request(path, text):
    """CPU microseconds the target spent per request in one run, or None without a .cpu file."""
    try:
        with open(path) as f:
            ticks, hz = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    m = re.search(r"(\d+) requests in", text)
    if not m or int(m.group(1)) == 0:
        return None
    return ticks / hz * 1e6 / int(m.group(1))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rows = {}
    for name in names:
        runs, failed, cpu = [], 0, []
        for r in range(1, rounds + 1):
            try:
                with open("%s/%s.%d" % (out, name, r)) as f:
                    text = f.read()
                res = parse(text)
            except OSError:
                res = None
            if res is None:
                failed += 1
            else:
                runs.append(res)
                c = cpu_us_per_request("%s/%s.%d.cpu" % (out, name, r), text)
                if c is not None:
                    cpu.append(c)
        med = [statistics.median(x[i] for x in runs) if runs else 0.0 for i in range(4)]
        rows[name] = med + [sum(x[4] for x in runs), failed, statistics.median(cpu) if cpu else None]
    ref_rps, ref_mbs = rows[names[0]][0] or 1.0, rows[names[0]][3] or 1.0
    print("%-14s%11s%9s%9s%10s%8s%8s%8s%10s" % ("target", "req/s", "p50 ms", "p99 ms", "MiB/s",
                                                 "errors", "ratio", "MiB r", "cpu us/r"))
    for name, (rps, p50, p99, mbs, errors, failed, cpu) in rows.items():
        note = "  (%d of %d runs gave no result)" % (failed, rounds) if failed else ""
        print("%-14s%11.0f%9.2f%9.2f%10.1f%8d%8.2f%8.2f%10s%s" % (
            name, rps, p50, p99, mbs, errors, rps / ref_rps, mbs / ref_mbs,
            "%.2f" % cpu if cpu is not None else "-", note))
    ref = names[0]
    for name in names[1:]:
        if name.startswith("fulcrum"):
            cpu, ref_cpu = rows[name][6], rows[ref][6]
            print("%s/%s: req/s %.2f, p99 %.2f%s" % (
                name, ref, rows[name][0] / ref_rps,
                (rows[name][2] / rows[ref][2]) if rows[ref][2] else 0.0,
                ", CPU per request %.2f" % (cpu / ref_cpu) if cpu and ref_cpu else ""))


if __name__ == "__main__":
    main()
