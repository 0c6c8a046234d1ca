#!/usr/bin/env bash
# fulcrum beside HAProxy on loopback (run by `make bench`). Starts three nginx backends, HAProxy
# and fulcrum with the same thread count over them, runs wrk against each scenario in interleaved
# rounds (A B, B A, A B ...) so that drift in the machine's speed hits every target alike, prints
# median req/s, p50, p99, MiB/s, errors, the ratio to the reference (the first target) and each
# target's own CPU time per request (its processes' user + system time over the run / requests:
# the cost of the proxy itself, apart from wrk and the backends that share the cores), then
# measures fulcrum's memory per idle connection (bench/idle_memory.py).
#
#   env: THREADS (2)      workers of fulcrum = nbthread of HAProxy = nginx proxy workers
#        ROUNDS (3), SECS (8), WARMUP (1 s), CONNS (64), BIG_CONNS (CONNS), WRK_THREADS (1)
#        MODE (tcp)       tcp | http | cache | all: which scenario families run (http needs fulcrum's
#                         http listener; it adds HAProxy http mode and nginx proxy_pass; cache
#                         compares cache hits: fulcrum's `cache:` route against nginx proxy_cache,
#                         on the same URL of the same backends, nginx as the reference)
#        SCENARIOS        names to run, e.g. "tcp_small tcp_big" (default: all of MODE's)
#        HAPROXY_SPLICE (1): HAProxy tcp mode with `option splice-auto`, as fulcrum splices;
#                         0 = HAProxy's default (no splice), as in the shared peer scripts
#        NGINX_OPEN_FILE_CACHE (0): 1 turns on nginx's open_file_cache (off by default; fulcrum
#                         keeps recently served files open by default) for static_4k
#        IDLE_CONNS (10000), IDLE_PEERS (haproxy), SKIP_IDLE (0)
#        BASE_PORT (18080): backends +1..+3, HAProxy http +10, nginx +11, HAProxy tcp +12,
#                         fulcrum tcp +13, fulcrum http +14, nginx proxy_cache +15
#        FULCRUM_BIN (build/fulcrum), BENCH_DIR (a new /tmp/fulcrum-bench.XXXXXX; kept, with the
#                         raw wrk output, the configs, the logs and summary.txt)
# The machine's cores are shared by wrk, the proxies and the backends: quote ratios, not absolutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} SECS=${SECS:-8} WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64} BIG_CONNS=${BIG_CONNS:-$CONNS} WRK_THREADS=${WRK_THREADS:-1}
MODE=${MODE:-tcp} SCENARIOS=${SCENARIOS:-}
IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_PEERS=${IDLE_PEERS:-haproxy} SKIP_IDLE=${SKIP_IDLE:-0}
FULCRUM_BIN=$(realpath "${FULCRUM_BIN:-$repo/build/fulcrum}")
BASE_PORT=${BASE_PORT:-18080}
BACKEND_PORTS=($((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)))
HAPROXY_HTTP_PORT=$((BASE_PORT + 10)) NGINX_HTTP_PORT=$((BASE_PORT + 11))
HAPROXY_TCP_PORT=$((BASE_PORT + 12)) FULCRUM_TCP_PORT=$((BASE_PORT + 13))
FULCRUM_HTTP_PORT=$((BASE_PORT + 14)) NGINX_CACHE_PORT=$((BASE_PORT + 15))
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/fulcrum-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"  # nginx workers (www-data) must read the backends' files
PY=/usr/bin/python3

mode_has() { [ "$MODE" = all ] || [ "$MODE" = "$1" ]; }
http_listener() { mode_has http || mode_has cache; }  # fulcrum's http listener is needed
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

# --- scenarios: NAME | URL path | connections | extra request header | targets (first = ref) ---
# To add one: one more add_scenario line (and, for a new kind of target, a start_* in lib.sh).
declare -a SCENARIO_ROWS=()
add_scenario() { SCENARIO_ROWS+=("$1|$2|$3|$4|$5"); }
define_scenarios() {
  local tcp="haproxy_tcp=$HAPROXY_TCP_PORT fulcrum_tcp=$FULCRUM_TCP_PORT"
  local http="haproxy_http=$HAPROXY_HTTP_PORT nginx=$NGINX_HTTP_PORT fulcrum_http=$FULCRUM_HTTP_PORT"
  if mode_has tcp; then
    # HTTP keep-alive through the L4 proxy: forwarding cost on long-lived connections.
    add_scenario tcp_small / "$CONNS" "" "$tcp"
    add_scenario tcp_big /big "$BIG_CONNS" "" "$tcp"
    # A new connection per request: accept, balance, connect, close on every request.
    add_scenario tcp_newconn / "$CONNS" "Connection: close" "$tcp"
  fi
  if mode_has http; then
    add_scenario http_small / "$CONNS" "" "$http"
    add_scenario http_big /big "$BIG_CONNS" "" "$http"
    # A 4 KiB file from disk: nginx's own ground (HAProxy serves no files).
    add_scenario static_4k /static/4k.bin "$CONNS" "" "nginx=$NGINX_HTTP_PORT fulcrum_http=$FULCRUM_HTTP_PORT"
  fi
  if mode_has cache; then
    # Every request a hit (after the warm-up's first): a 1 KiB object with max-age=3600.
    add_scenario cache_hit /cached/small "$CONNS" "" "nginx_cache=$NGINX_CACHE_PORT fulcrum_cache=$FULCRUM_HTTP_PORT"
  fi
}

selected() { [ -z "$SCENARIOS" ] || [[ " $SCENARIOS " == *" $1 "* ]]; }

run_wrk() {  # run_wrk OUTFILE SECS CONNS PORT PATH HEADER
  local out=$1 secs=$2 conns=$3 port=$4 path=$5 header=$6
  local -a args=(-t"$WRK_THREADS" -c"$conns" -d"${secs}s" --latency)
  # wrk drops a -H value silently unless it is "Name: value", with the space.
  if [ -n "$header" ]; then args+=(-H "$header"); fi
  wrk "${args[@]}" "http://127.0.0.1:$port$path" >"$out" 2>&1 || true
}

# The processes behind a target, for CPU accounting (proc_tree, lib.sh).
target_pids() {
  case $1 in
    haproxy*) proc_tree haproxy ;;
    fulcrum*) proc_tree fulcrum ;;
    nginx) proc_tree nginx-proxy ;;
    nginx_cache) proc_tree nginx-cache ;;
  esac
}

run_scenario() {  # run_scenario ROW
  local name path conns extra targets
  IFS='|' read -r name path conns extra targets <<<"$1"
  local -a ts
  read -r -a ts <<<"$targets"
  local dir=$BENCH_DIR/wrk/$name r t
  mkdir -p "$dir"
  log "$name: GET $path, $conns connections${extra:+, $extra}, $ROUNDS x ${SECS}s per target"
  for t in "${ts[@]}"; do  # warm-up: caches, pools, first connections; not measured
    if [ "$WARMUP" -gt 0 ]; then
      run_wrk "$dir/${t%%=*}.warmup" "$WARMUP" "$conns" "${t##*=}" "$path" "$extra"
    fi
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    local -a order=("${ts[@]}")
    if ((r % 2 == 0)); then  # A B, then B A: neither always runs first
      local -a rev=()
      for ((i = ${#ts[@]} - 1; i >= 0; i--)); do rev+=("${ts[i]}"); done
      order=("${rev[@]}")
    fi
    for t in "${order[@]}"; do
      local -a pids
      read -r -a pids <<<"$(target_pids "${t%%=*}")"
      local c0 c1
      c0=$(cpu_ticks "${pids[@]}")
      run_wrk "$dir/${t%%=*}.$r" "$SECS" "$conns" "${t##*=}" "$path" "$extra"
      c1=$(cpu_ticks "${pids[@]}")
      echo "$((c1 - c0)) $(getconf CLK_TCK)" >"$dir/${t%%=*}.$r.cpu"
    done
  done
  {
    echo
    echo "## $name: GET $path, $conns connections${extra:+, $extra}, median of $ROUNDS x ${SECS}s"
    "$PY" "$here/wrk_report.py" "$dir" "$ROUNDS" "${ts[@]%%=*}" || echo "(no report: see $dir)"
  } | tee -a "$BENCH_DIR/summary.txt"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  log "results, configs and logs: $BENCH_DIR"
  exit "$rc"
}

main() {
  for tool in nginx haproxy wrk "$PY"; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
  done
  [ -x "$FULCRUM_BIN" ] || die "no fulcrum binary at $FULCRUM_BIN (make build)"
  define_scenarios
  local ports=("${BACKEND_PORTS[@]}" "$HAPROXY_TCP_PORT" "$FULCRUM_TCP_PORT")
  if mode_has http; then ports+=("$HAPROXY_HTTP_PORT" "$NGINX_HTTP_PORT"); fi
  if mode_has cache; then ports+=("$NGINX_CACHE_PORT"); fi
  if http_listener; then ports+=("$FULCRUM_HTTP_PORT"); fi
  require_free_ports "${ports[@]}"
  ulimit -n "$(ulimit -Hn)"
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  {
    echo "# fulcrum benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host: $(nproc) cores, $(uname -sr); threads per proxy: $THREADS; wrk threads: $WRK_THREADS"
    echo "fulcrum: $("$FULCRUM_BIN" version 2>/dev/null | head -1)" \
      "($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "haproxy: $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')," \
      "nginx: $(nginx -v 2>&1 | sed 's|.*/||'), wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  } | tee "$BENCH_DIR/summary.txt"

  start_backends
  start_haproxy
  if mode_has http; then start_nginx_proxy; fi
  if mode_has cache; then start_nginx_cache; fi
  start_fulcrum

  local row
  for row in "${SCENARIO_ROWS[@]}"; do
    if selected "${row%%|*}"; then run_scenario "$row"; fi
  done

  # Everything else stops first: the idle test brings its own sinks, fulcrum and peers.
  stop_all
  if [ "$SKIP_IDLE" != 1 ]; then
    echo | tee -a "$BENCH_DIR/summary.txt"
    "$PY" "$here/idle_memory.py" --bin "$FULCRUM_BIN" --conns "$IDLE_CONNS" --workers "$THREADS" \
      --peers "$IDLE_PEERS" --dir "$BENCH_DIR/idle" | tee -a "$BENCH_DIR/summary.txt"
  fi
}

main "$@"
