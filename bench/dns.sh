#!/usr/bin/env bash
# DNS scenario: dnsperf against fulcrum's `protocol: dns` listener and against NSD serving the
# same names statically from a zone file, in interleaved rounds (NSD, fulcrum, NSD, ...) so that
# drift in the machine's speed hits both alike. Prints each round's queries/s, the medians and the
# ratio fulcrum / NSD (the target is >= 1.0). Both answer the same queries with the same records:
# www.example.com A -> 3 addresses, www.example.com AAAA -> 1, and a name outside the zone
# (REFUSED from both).
#
#   env: WORKERS (1)      fulcrum workers = NSD server-count
#        ROUNDS (3), SECS (10), CLIENTS (4: dnsperf -c), OUTSTANDING (200: dnsperf -q),
#        PERF_THREADS (1: dnsperf -T)
#        BASE_PORT (18153): NSD +0, fulcrum +1
#        FULCRUM_BIN (build/fulcrum), BENCH_DIR (a new /tmp/fulcrum-dns-bench.XXXXXX; kept, with
#                         the configs, the logs, the raw dnsperf output and summary.txt)
# dnsperf, NSD and fulcrum share the machine's cores: quote the ratio, not the absolutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

WORKERS=${WORKERS:-1} ROUNDS=${ROUNDS:-3} SECS=${SECS:-10}
CLIENTS=${CLIENTS:-4} OUTSTANDING=${OUTSTANDING:-200} PERF_THREADS=${PERF_THREADS:-1}
BASE_PORT=${BASE_PORT:-18153}
NSD_PORT=$BASE_PORT FULCRUM_PORT=$((BASE_PORT + 1))
FULCRUM_BIN=$(realpath "${FULCRUM_BIN:-$repo/build/fulcrum}")
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/fulcrum-dns-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

NSD_BIN=$(command -v nsd || echo /usr/sbin/nsd)
[ -x "$NSD_BIN" ] || die "nsd is not installed (scripts/deps.sh installs it)"
command -v dnsperf >/dev/null || die "dnsperf is not installed (scripts/deps.sh installs it)"
[ -x "$FULCRUM_BIN" ] || die "no fulcrum binary at $FULCRUM_BIN (make build)"
trap stop_all EXIT

# --- the same names both ways -------------------------------------------------------------------
ADDRS=(192.0.2.1 192.0.2.2 192.0.2.3)
ADDR6=2001:db8::1
cat >"$BENCH_DIR/example.com.zone" <<EOF
\$ORIGIN example.com.
\$TTL 30
@    IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 30
@    IN NS  ns.example.com.
ns   IN A   192.0.2.53
www  IN A   ${ADDRS[0]}
www  IN A   ${ADDRS[1]}
www  IN A   ${ADDRS[2]}
www  IN AAAA $ADDR6
EOF
mkdir -p "$BENCH_DIR/nsd"
cat >"$BENCH_DIR/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  server-count: $WORKERS
  username: ""
  chroot: ""
  database: ""
  zonesdir: "$BENCH_DIR"
  zonelistfile: "$BENCH_DIR/nsd/zone.list"
  xfrdfile: "$BENCH_DIR/nsd/xfrd.state"
  xfrdir: "$BENCH_DIR/nsd"
  pidfile: "$BENCH_DIR/nsd/nsd.pid"
  logfile: "$BENCH_DIR/nsd/nsd.log"
  verbosity: 0
  hide-version: yes
  # Response rate limiting is on by default (200 replies/s per client /24): a benchmark from one
  # address would measure the limiter. fulcrum has none on dns listeners either.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: example.com
  zonefile: example.com.zone
EOF
cat >"$BENCH_DIR/fulcrum.yaml" <<EOF
workers: $WORKERS
shutdown_grace: 1s
listeners:
  - name: dns
    bind: 127.0.0.1:$FULCRUM_PORT
    protocol: dns
    zones:
      - { name: www.example.com, backend: app, ttl: 30 }
backends:
  - name: app
    health: { check: none }
    servers:
      - { name: a1, address: ${ADDRS[0]}:80 }
      - { name: a2, address: ${ADDRS[1]}:80 }
      - { name: a3, address: ${ADDRS[2]}:80 }
      - { name: a6, address: "[$ADDR6]:80" }
EOF
# Mostly A, as a resolver asks; some AAAA and a few names outside the zone.
: >"$BENCH_DIR/queries.txt"
for _ in $(seq 8); do echo "www.example.com A" >>"$BENCH_DIR/queries.txt"; done
echo "www.example.com AAAA" >>"$BENCH_DIR/queries.txt"
echo "www.example.org A" >>"$BENCH_DIR/queries.txt"

# --- servers ------------------------------------------------------------------------------------
# udp_ready PORT: a dig over UDP gets an answer.
udp_ready() {
  local port=$1 i
  for ((i = 0; i < 100; i++)); do
    if dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 www.example.com A 2>/dev/null | grep -q "${ADDRS[0]}"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

start_bg nsd "$NSD_BIN" -d -c "$BENCH_DIR/nsd.conf"
udp_ready "$NSD_PORT" || { cat "$BENCH_DIR/logs/nsd.log" "$BENCH_DIR/nsd/nsd.log" >&2 || true; die "nsd does not answer"; }
start_bg fulcrum "$FULCRUM_BIN" run -c "$BENCH_DIR/fulcrum.yaml"
udp_ready "$FULCRUM_PORT" || { cat "$BENCH_DIR/logs/fulcrum.log" >&2; die "fulcrum does not answer"; }

# Both must give the same answers, or the comparison means nothing.
for q in "www.example.com A" "www.example.com AAAA"; do
  # shellcheck disable=SC2086
  a=$(dig +short -p "$NSD_PORT" @127.0.0.1 $q | sort)
  # shellcheck disable=SC2086
  b=$(dig +short -p "$FULCRUM_PORT" @127.0.0.1 $q | sort)
  [ "$a" = "$b" ] || die "answers differ for $q: nsd [$a] fulcrum [$b]"
done

# --- rounds -------------------------------------------------------------------------------------
run_perf() {  # NAME PORT ROUND -> queries/s on stdout
  local name=$1 port=$2 round=$3 out
  out="$BENCH_DIR/dnsperf-$name-$round.txt"
  dnsperf -s 127.0.0.1 -p "$port" -d "$BENCH_DIR/queries.txt" -l "$SECS" -c "$CLIENTS" -q "$OUTSTANDING" \
    -T "$PERF_THREADS" >"$out" 2>&1 || { cat "$out" >&2; die "dnsperf failed against $name"; }
  awk '/Queries per second:/ {print $4}' "$out"
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

log "dnsperf ${SECS}s x $ROUNDS rounds, $CLIENTS clients, $OUTSTANDING outstanding; $WORKERS worker(s) each"
declare -a NSD_QPS=() FULCRUM_QPS=() NSD_CPU=() FULCRUM_CPU=()
HZ=$(getconf CLK_TCK)
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order="nsd fulcrum"; else order="fulcrum nsd"; fi
  for t in $order; do
    read -r -a pids <<<"$(proc_tree "$t")"
    c0=$(cpu_ticks "${pids[@]}")
    if [ "$t" = nsd ]; then
      q=$(run_perf nsd "$NSD_PORT" "$r"); NSD_QPS+=("$q")
    else
      q=$(run_perf fulcrum "$FULCRUM_PORT" "$r"); FULCRUM_QPS+=("$q")
    fi
    c1=$(cpu_ticks "${pids[@]}")
    # The server's own CPU time per query answered (its processes' user + system time).
    cpu=$(awk -v c=$((c1 - c0)) -v hz="$HZ" '/Queries completed:/ { printf "%.3f", (c / hz * 1e6) / $3 }' \
      "$BENCH_DIR/dnsperf-$t-$r.txt")
    if [ "$t" = nsd ]; then NSD_CPU+=("$cpu"); else FULCRUM_CPU+=("$cpu"); fi
    log "round $r: $t $q queries/s, $cpu us of CPU per query"
  done
done
nsd_med=$(printf '%s\n' "${NSD_QPS[@]}" | median)
ful_med=$(printf '%s\n' "${FULCRUM_QPS[@]}" | median)
nsd_cpu=$(printf '%s\n' "${NSD_CPU[@]}" | median)
ful_cpu=$(printf '%s\n' "${FULCRUM_CPU[@]}" | median)
ratio=$(awk -v a="$ful_med" -v b="$nsd_med" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')
lost=$(awk '/Queries lost:/ {s += $3} END {print s + 0}' "$BENCH_DIR"/dnsperf-fulcrum-*.txt)
{
  printf '%-10s %14s %16s\n' target "queries/s" "cpu us/query"
  printf '%-10s %14.0f %16.3f\n' nsd "$nsd_med" "$nsd_cpu"
  printf '%-10s %14.0f %16.3f\n' fulcrum "$ful_med" "$ful_cpu"
  printf 'ratio fulcrum/nsd: %s (target >= 1.0); CPU per query %s; fulcrum queries lost: %s\n' "$ratio" \
    "$(awk -v a="$ful_cpu" -v b="$nsd_cpu" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')" "$lost"
} | tee "$BENCH_DIR/summary.txt"
log "raw output in $BENCH_DIR"
