# shellcheck shell=bash
# Helpers for bench/run.sh (sourced, not run): processes started in the foreground of a
# background job so that their PID is known exactly, stopped by that PID only, and config
# writers for the nginx backends, the peers (HAProxy, nginx proxy) and fulcrum.
# Needs: BENCH_DIR, FULCRUM_BIN, THREADS, and the *_PORT variables set by run.sh.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# start_bg NAME CMD...: runs CMD in the background, its output in $BENCH_DIR/logs/NAME.log and its
# PID in $BENCH_DIR/pids/NAME. The command must stay in the foreground (no daemonising).
start_bg() {
  local name=$1; shift
  mkdir -p "$BENCH_DIR/logs" "$BENCH_DIR/pids"
  "$@" >"$BENCH_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$BENCH_DIR/pids/$name"
}

pid_of() { cat "$BENCH_DIR/pids/$1" 2>/dev/null || true; }
# proc_tree NAME: the PID started as NAME and all its descendants (nginx's workers; NSD's main
# and server processes, below the xfrd process that keeps the PID it was started with).
proc_tree() {
  local -a todo=($(pid_of "$1")) all=()
  while [ ${#todo[@]} -gt 0 ]; do
    local p=${todo[0]}
    todo=("${todo[@]:1}")
    all+=("$p")
    todo+=($(pgrep -P "$p" || true))
  done
  echo "${all[@]}"
}
# cpu_ticks PID...: user + system clock ticks (getconf CLK_TCK per second) of these processes,
# all their threads.
cpu_ticks() {
  local p t=0 v
  for p in "$@"; do
    # After "PID (COMM) ", which may hold spaces: state is field 1, utime 12, stime 13.
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# stop_one NAME [GRACE_SECS]: SIGTERM by PID, then SIGKILL after GRACE_SECS (default 5).
stop_one() {
  local name=$1 grace=${2:-5} pid
  pid=$(pid_of "$name")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$BENCH_DIR/pids/$name"
}

stop_all() {
  local f
  for f in "$BENCH_DIR"/pids/*; do
    [ -e "$f" ] || continue
    stop_one "$(basename "$f")"
  done
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PORT: until PORT accepts (10 s at most) while NAME's process is alive.
wait_port() {
  local name=$1 port=$2 pid i
  pid=$(pid_of "$name")
  for ((i = 0; i < 100; i++)); do
    port_open "$port" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$BENCH_DIR/logs/$name.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  cat "$BENCH_DIR/logs/$name.log" >&2
  die "$name is not listening on $port after 10 s"
}

require_free_ports() {
  local p
  for p in "$@"; do
    port_open "$p" && die "port $p is in use (another benchmark running?); set BASE_PORT"
  done
  return 0
}

# --- nginx backends: / small body, /mid 64 KiB, /big 1 MiB, /health ------------------------
start_backends() {
  local dir=$BENCH_DIR/backends port
  mkdir -p "$dir/www" "$BENCH_DIR/site/static"
  chmod 755 "$BENCH_DIR/site" "$BENCH_DIR/site/static"
  head -c 4096 /dev/urandom >"$BENCH_DIR/site/static/4k.bin"
  chmod 644 "$BENCH_DIR/site/static/4k.bin"
  head -c 65536 /dev/urandom >"$dir/www/mid"
  head -c 1048576 /dev/urandom >"$dir/www/big"
  head -c 1024 /dev/urandom >"$dir/www/small"
  for port in "${BACKEND_PORTS[@]}"; do
    cat >"$dir/nginx-$port.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx-$port.pid;
error_log $dir/error-$port.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port reuseport backlog=4096;
    location = / { default_type text/plain; return 200 "hello from $port\n"; }
    location = /health { default_type text/plain; return 200 "OK\n"; }
    location / { root $dir/www; }
    location /cached/ { alias $dir/www/; expires 1h; }
  }
}
CONF
    start_bg "nginx-$port" nginx -c "$dir/nginx-$port.conf" -p "$dir"
  done
  for port in "${BACKEND_PORTS[@]}"; do wait_port "nginx-$port" "$port"; done
}

# --- HAProxy: tcp mode always; http mode when the http scenarios run --------------------------
start_haproxy() {
  local dir=$BENCH_DIR/haproxy port i
  mkdir -p "$dir"
  {
    cat <<CONF
global
  nbthread $THREADS
  maxconn 4000  # plenty for wrk; with splice HAProxy wants ~5 descriptors per maxconn
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
$([ "${HAPROXY_SPLICE:-1}" = 1 ] && echo "  option splice-auto")
frontend l4
  mode tcp
  bind 127.0.0.1:$HAPROXY_TCP_PORT
  default_backend l4app
backend l4app
  mode tcp
  balance roundrobin
CONF
    i=1; for port in "${BACKEND_PORTS[@]}"; do echo "  server s$i 127.0.0.1:$port"; i=$((i + 1)); done
    if mode_has http; then
      cat <<CONF
frontend web
  mode http
  option http-keep-alive
  bind 127.0.0.1:$HAPROXY_HTTP_PORT
  default_backend app
backend app
  mode http
  balance roundrobin
  http-reuse always
CONF
      i=1; for port in "${BACKEND_PORTS[@]}"; do echo "  server s$i 127.0.0.1:$port"; i=$((i + 1)); done
    fi
  } >"$dir/haproxy.cfg"
  start_bg haproxy haproxy -db -f "$dir/haproxy.cfg"
  wait_port haproxy "$HAPROXY_TCP_PORT"
  if mode_has http; then wait_port haproxy "$HAPROXY_HTTP_PORT"; fi
}

# --- nginx in front of the backends: proxy_pass (http scenarios), proxy_cache (MODE=cache) ------
# start_nginx_front NAME PORT HTTP_EXTRA LOCATIONS: nginx with THREADS workers, upstream keepalive
# to the three backends, HTTP_EXTRA in its http block and LOCATIONS in its server block.
start_nginx_front() {
  local name=$1 port=$2 http_extra=$3 locations=$4 dir=$BENCH_DIR/$1 p servers=""
  mkdir -p "$dir"
  for p in "${BACKEND_PORTS[@]}"; do servers+="server 127.0.0.1:$p; "; done
  cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes $THREADS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { $servers keepalive 64; }
  $http_extra
  server {
    listen 127.0.0.1:$port reuseport backlog=4096;
$locations
  }
}
CONF
  start_bg "$name" nginx -c "$dir/nginx.conf" -p "$dir"
  wait_port "$name" "$port"
}

start_nginx_proxy() {
  # The static-file scenario: nginx serves the same 4 KiB file fulcrum's static route does,
  # with Debian's default nginx.conf settings for files (sendfile, tcp_nopush). fulcrum keeps
  # recently served files open by default; nginx's open_file_cache is off by default, and
  # NGINX_OPEN_FILE_CACHE=1 turns it on (with 1 s validity, as fulcrum's) for a like-for-like run.
  local files=""
  if [ "${NGINX_OPEN_FILE_CACHE:-0}" = 1 ]; then
    files="open_file_cache max=1000 inactive=20s; open_file_cache_valid 1s;"
  fi
  start_nginx_front nginx-proxy "$NGINX_HTTP_PORT" "$files" \
    '    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /static/ { root '"$BENCH_DIR"'/site; sendfile on; tcp_nopush on; }'
}

# The reference for cache hits.
start_nginx_cache() {
  mkdir -p "$BENCH_DIR/nginx-cache/cache"
  start_nginx_front nginx-cache "$NGINX_CACHE_PORT" \
    "proxy_cache_path $BENCH_DIR/nginx-cache/cache levels=1:2 keys_zone=bench:16m max_size=64m inactive=1h;" \
    '    location / {
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache bench; proxy_cache_lock on;
      add_header X-Cache $upstream_cache_status;
    }'
}

# --- fulcrum: the same backends, the same thread count --------------------------------------
start_fulcrum() {
  local dir=$BENCH_DIR/fulcrum port i
  mkdir -p "$dir"
  {
    echo "workers: $THREADS"
    echo "shutdown_grace: 2s"
    echo "listeners:"
    echo "  - name: bench_tcp"
    echo "    bind: 127.0.0.1:$FULCRUM_TCP_PORT"
    echo "    protocol: tcp"
    echo "    backend: app"
    if http_listener; then
      echo "  - name: bench_http"
      echo "    bind: 127.0.0.1:$FULCRUM_HTTP_PORT"
      echo "    protocol: http"
      echo "    routes:"
      echo "      - match: { path_prefix: /static/ }"
      echo "        static: { root: $BENCH_DIR/site }"
      echo "      - { match: { path_prefix: /cached/ }, backend: app, cache: { size: 64MiB } }"
      echo "      - backend: app"
    fi
    echo "backends:"
    echo "  - name: app"
    echo "    balance: round_robin"
    echo "    servers:"
    i=1
    for port in "${BACKEND_PORTS[@]}"; do
      echo "      - { name: s$i, address: 127.0.0.1:$port }"
      i=$((i + 1))
    done
  } >"$dir/fulcrum.yaml"
  start_bg fulcrum "$FULCRUM_BIN" run -c "$dir/fulcrum.yaml"
  wait_port fulcrum "$FULCRUM_TCP_PORT"
  if http_listener; then wait_port fulcrum "$FULCRUM_HTTP_PORT"; fi
}
