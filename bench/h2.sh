#!/usr/bin/env bash
# HTTPS and HTTP/2 front ends on loopback (run by `make bench`): fulcrum beside nginx (http2 on)
# and HAProxy (alpn h2), all with the same ECDSA P-256 certificate and the same worker/thread
# count. Scenarios, in interleaved rounds (A B C, C B A, ...) so drift hits every target alike:
#   h2_static    h2load on one small file that fulcrum and nginx serve from disk (static route,
#                root). HAProxy cannot serve files: it answers with `http-request return file`,
#                a canned response it read into memory at start, shown for reference only; the
#                ratio is to nginx.
#   h2_proxy     h2load on a URL each forwards over HTTP/1.1 keep-alive to one nginx backend
#   handshakes   new TLS handshakes per second: h2load with HS_N connections of one request
#                each (-n = -c: h2load never reuses a connection for a second request), TLS 1.3
#                full handshakes (no resumption), HS_BATCHES runs per round
# Prints median requests/s per target and fulcrum's ratio (target: h2 requests/s >= 1.1x the
# better peer, handshakes/s >= nginx). With one backend worker (BACKEND_WORKERS) the backend may
# cap h2_proxy for every target alike, which pulls ratios toward 1.
#
#   env: SCENARIOS ("h2_static h2_proxy handshakes": which to run), THREADS (2), ROUNDS (3), N (100000 requests), C (10 connections), M (10 streams each),
#        HS_N (500 connections per run), HS_BATCHES (4), BASE_PORT (18180),
#        FULCRUM_BIN (build/fulcrum), BENCH_DIR (a new /tmp/fulcrum-h2bench.XXXXXX, kept)
# The machine's cores are shared by h2load and the servers: quote ratios, not absolutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} N=${N:-100000} C=${C:-10} M=${M:-10}
HS_N=${HS_N:-500} HS_BATCHES=${HS_BATCHES:-4} BACKEND_WORKERS=${BACKEND_WORKERS:-1}
SCENARIOS=${SCENARIOS:-h2_static h2_proxy handshakes}
BASE_PORT=${BASE_PORT:-18180}
FULCRUM_BIN=$(realpath "${FULCRUM_BIN:-$repo/build/fulcrum}")
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/fulcrum-h2bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
BACKEND_PORT=$((BASE_PORT + 1)) FULCRUM_PORT=$((BASE_PORT + 2)) NGINX_PORT=$((BASE_PORT + 3))
HAPROXY_PORT=$((BASE_PORT + 4))
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
trap stop_all EXIT
for t in h2load nginx haproxy openssl; do command -v $t >/dev/null || die "$t not found"; done
require_free_ports $BACKEND_PORT $FULCRUM_PORT $NGINX_PORT $HAPROXY_PORT

d=$BENCH_DIR
mkdir -p "$d/www/static" "$d/www/p" "$d/logs"
printf 'hello\n' >"$d/www/static/index.html"
cp "$d/www/static/index.html" "$d/www/p/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test -keyout "$d/site.key" -out "$d/site.pem" 2>/dev/null
cat "$d/site.pem" "$d/site.key" >"$d/site.combined.pem"

# The backend every target forwards /p/ to.
cat >"$d/backend.conf" <<CONF
daemon off; worker_processes $BACKEND_WORKERS; pid $d/backend.pid; error_log $d/logs/backend.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT reuseport backlog=4096; root $d/www; } }
CONF
start_bg backend nginx -c "$d/backend.conf" -p "$d"

cat >"$d/nginx.conf" <<CONF
daemon off; worker_processes $THREADS; pid $d/nginx.pid; error_log $d/logs/nginx.err warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2 reuseport backlog=4096;
    ssl_certificate $d/site.pem; ssl_certificate_key $d/site.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;
    http2_max_concurrent_streams 128;
    location /static/ { root $d/www; }
    location /p/ { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }
  } }
CONF
start_bg nginx nginx -c "$d/nginx.conf" -p "$d"

cat >"$d/haproxy.cfg" <<CONF
global
  nbthread $THREADS
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT ssl crt $d/site.combined.pem alpn h2,http/1.1
  http-request return status 200 content-type text/html file $d/www/static/index.html if { path /static/index.html }
  default_backend be
backend be
  server b1 127.0.0.1:$BACKEND_PORT
CONF
start_bg haproxy haproxy -f "$d/haproxy.cfg"

cat >"$d/fulcrum.yaml" <<CONF
workers: $THREADS
listeners:
  - name: h2
    bind: 127.0.0.1:$FULCRUM_PORT
    protocol: https
    tls:
      - { cert: $d/site.pem, key: $d/site.key }
    routes:
      - match: { path_prefix: /static/ }
        static: { root: $d/www }
      - backend: be
backends:
  - name: be
    health: { check: none }
    servers:
      - { name: b1, address: 127.0.0.1:$BACKEND_PORT }
CONF
start_bg fulcrum "$FULCRUM_BIN" run -c "$d/fulcrum.yaml"
for p in backend:$BACKEND_PORT nginx:$NGINX_PORT haproxy:$HAPROXY_PORT fulcrum:$FULCRUM_PORT; do
  wait_port "${p%%:*}" "${p##*:}"
done

declare -A PORT=([fulcrum]=$FULCRUM_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
TARGETS=(fulcrum nginx haproxy)

# run_h2load TARGET PATH ARGS... -> requests/s (0 when any request failed)
run_h2load() {
  local t=$1 path=$2; shift 2
  local out
  out=$(h2load "$@" "https://127.0.0.1:${PORT[$t]}$path" 2>&1) || true
  echo "$out" >>"$d/logs/h2load-$t.log"
  if ! grep -q " 0 failed, 0 errored, 0 timeout" <<<"$out"; then
    log "$t $path: errors: $(grep 'requests:' <<<"$out")"
    echo 0
    return
  fi
  awk '/^finished in/ { gsub(",", "", $4); print $4 }' <<<"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RES CPU
HZ=$(getconf CLK_TCK)
scenario() {  # NAME REQUESTS PATH ARGS...: REQUESTS per run, for the CPU time per request
  local name=$1 n=$2 path=$3; shift 3
  local r t order c0 c1
  for ((r = 0; r < ROUNDS; r++)); do
    if ((r % 2)); then order=(haproxy nginx fulcrum); else order=(fulcrum nginx haproxy); fi
    for t in "${order[@]}"; do
      local -a pids
      read -r -a pids <<<"$(proc_tree "$t")"
      c0=$(cpu_ticks "${pids[@]}")
      RES[$name.$t]+="$(run_h2load "$t" "$path" "$@") "
      c1=$(cpu_ticks "${pids[@]}")
      CPU[$name.$t]+="$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }') "
    done
  done
}

log "warm-up"
for t in "${TARGETS[@]}"; do run_h2load "$t" /static/index.html -n2000 -c4 -m10 >/dev/null; done
wanted() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if wanted h2_static; then
  log "h2_static: $N requests, $C connections x $M streams, $ROUNDS rounds"
  scenario h2_static "$N" /static/index.html -n"$N" -c"$C" -m"$M"
fi
if wanted h2_proxy; then
  log "h2_proxy"
  scenario h2_proxy "$N" /p/index.html -n"$N" -c"$C" -m"$M"
fi
if wanted handshakes; then
  log "handshakes: $HS_BATCHES x $HS_N new TLS 1.3 connections, one request each"
  ulimit -n 65536 2>/dev/null || true
  for ((b = 0; b < HS_BATCHES; b++)); do
    scenario handshakes "$HS_N" /static/index.html -n"$HS_N" -c"$HS_N" -m1 --tls13-ciphers=TLS_AES_128_GCM_SHA256
  done
fi

{
  printf '%-12s %12s %12s %12s %22s\n' scenario fulcrum nginx haproxy "fulcrum ratio"
  for s in $SCENARIOS; do
    declare -A med=()
    for t in "${TARGETS[@]}"; do med[$t]=$(tr ' ' '\n' <<<"${RES[$s.$t]}" | grep -v '^$' | median); done
    best=$(awk -v a="${med[nginx]}" -v b="${med[haproxy]}" 'BEGIN { print (a > b) ? a : b }')
    if [ "$s" = h2_proxy ]; then ref=$best refname="best peer"; else ref=${med[nginx]} refname=nginx; fi
    ratio=$(awk -v f="${med[fulcrum]}" -v r="$ref" 'BEGIN { printf "%.2f", (r > 0) ? f / r : 0 }')
    printf '%-12s %12.0f %12.0f %12.0f %16s (%s)\n' "$s" "${med[fulcrum]}" "${med[nginx]}" "${med[haproxy]}" \
      "${ratio}x" "$refname"
  done
  echo "(requests/s, medians of $ROUNDS rounds; handshakes: new connections with one request each, per second;"
  echo " h2_static haproxy: a canned in-memory response, not a file, not in the ratio)"
  echo
  printf '%-12s %12s %12s %12s %22s\n' "cpu us/req" fulcrum nginx haproxy "fulcrum / same peer"
  for s in $SCENARIOS; do
    declare -A cmed=()
    for t in "${TARGETS[@]}"; do cmed[$t]=$(tr ' ' '\n' <<<"${CPU[$s.$t]}" | grep -v '^$' | median); done
    if [ "$s" = h2_proxy ]; then peer=haproxy; else peer=nginx; fi
    printf '%-12s %12.2f %12.2f %12.2f %16s (%s)\n' "$s" "${cmed[fulcrum]}" "${cmed[nginx]}" "${cmed[haproxy]}" \
      "$(awk -v f="${cmed[fulcrum]}" -v r="${cmed[$peer]}" 'BEGIN { printf "%.2f", (r > 0) ? f / r : 0 }')x" "$peer"
  done
  echo "(each server's own CPU time, user + system of its processes, per request or per handshake: medians)"
} | tee "$d/summary.txt"
log "results and logs in $d"
