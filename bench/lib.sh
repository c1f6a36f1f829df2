# bench/lib.sh: what the side-by-side HTTP benchmarks share (sourced, not
# run): preflight checks, ports, the nginx and Lua + Redis reference
# configurations, CPU accounting from /proc and wrk's figures.
# The caller sets BENCH (its name, for messages), calls scratch_dir once,
# and adds every process it starts to the pids array.

# scratch_dir NAME: sets tmp to a new temporary directory and, on exit or
# interrupt, stops every process in pids and removes the directory.
scratch_dir() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/headroom-$1-bench.XXXXXX")
  pids=()
  trap cleanup EXIT INT TERM
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}

need() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    echo "$BENCH: $1 not found; install it (scripts/deps.sh does)" >&2
    exit 1
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_ports() {
  local p
  for p in "$@"; do
    if port_busy "$p"; then
      echo "$BENCH: port $p on 127.0.0.1 is in use; set PORT_BASE to a free range" >&2
      exit 1
    fi
  done
}

wait_port() {
  for _ in $(seq 100); do
    if port_busy "$1"; then return 0; fi
    sleep 0.1
  done
  echo "$BENCH: nothing listening on 127.0.0.1:$1 after 10 s ($2)" >&2
  exit 1
}

# nginx_conf DIR BODY: writes DIR/nginx.conf, a complete configuration
# around BODY (text for inside http { }), with every path inside DIR and
# the Lua module loaded when LUA=1.
nginx_conf() {
  local dir=$1 body=$2 modules=""
  mkdir -p "$dir"
  if [ "${LUA:-0}" = 1 ]; then
    local m
    for m in ndk_http_module ngx_http_lua_module; do
      if [ ! -f "/usr/lib/nginx/modules/$m.so" ]; then
        echo "$BENCH: /usr/lib/nginx/modules/$m.so not found; install libnginx-mod-http-lua (scripts/deps.sh does)" >&2
        exit 1
      fi
      modules+="load_module /usr/lib/nginx/modules/$m.so;"$'\n'
    done
  fi
  cat >"$dir/nginx.conf" <<CONF
$modules
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $dir/access.log combined buffer=64k flush=1s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$body
}
CONF
}

# start_nginx DIR: runs nginx on DIR/nginx.conf in the foreground of a
# background job; sets NGINX_PID.
start_nginx() {
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  "$nginx" -t -q -e "$1/error.log" -p "$1" -c "$1/nginx.conf" -g 'daemon off;' || {
    echo "$BENCH: nginx refused $1/nginx.conf" >&2
    exit 1
  }
  "$nginx" -e "$1/error.log" -p "$1" -c "$1/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  NGINX_PID=$!
}

# nginx_alone_body PORT UP_PORT: the reference, nginx proxy_pass with its
# upstream connections kept alive (and the buffered combined access log
# nginx_conf puts around every body).
nginx_alone_body() {
  cat <<CONF
  upstream app {
    server 127.0.0.1:$2;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
CONF
}

# lua_bouncer_body PORT UP_PORT REDIS_PORT: the seed's design (seeds/03),
# built for real: nginx proxy_pass, and before each request a Lua
# access_by_lua asking a redis-server whether the request's API key is
# restricted (GET restricted:<key>, over a pooled cosocket, RESP written by
# hand so that nothing beyond Debian's libnginx-mod-http-lua is needed).
# A restriction flag set by an aggregator refuses with 429. With a fourth
# argument, REPORT_PORT, the whole of the seed's design: after each request
# a post_action's Lua reports the key and $upstream_response_time in a UDP
# packet to the aggregator on that port (bench/overloadtool), which sets
# the flags.
lua_bouncer_body() {
  local report="" report_loc=""
  if [ -n "${4:-}" ]; then
    report="post_action @report;"
    report_loc="location @report {
      content_by_lua_block {
        local sock = ngx.socket.udp()
        local ok, err = sock:setpeername(\"127.0.0.1\", $4)
        if not ok then
          ngx.log(ngx.ERR, \"report: \", err)
          return
        end
        sock:send((ngx.var.http_x_api_key or ngx.var.remote_addr) .. \" \" .. (ngx.var.upstream_response_time or \"-\"))
        sock:close()
      }
    }"
  fi
  cat <<CONF
  upstream lua_app {
    server 127.0.0.1:$2;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$1;
    location / {
      access_by_lua_block {
        local key = ngx.var.http_x_api_key or ngx.var.remote_addr
        local sock = ngx.socket.tcp()
        sock:settimeout(1000)
        local ok, err = sock:connect("127.0.0.1", $3)
        if not ok then
          ngx.log(ngx.ERR, "redis: ", err)
          return
        end
        local name = "restricted:" .. key
        sock:send("*2\r\n\$3\r\nGET\r\n\$" .. #name .. "\r\n" .. name .. "\r\n")
        local line = sock:receive("*l")
        if line and line:sub(1, 1) == "\$" and line ~= "\$-1" then
          sock:receive(tonumber(line:sub(2)) + 2)
          sock:setkeepalive(10000, 64)
          return ngx.exit(429)
        end
        sock:setkeepalive(10000, 64)
      }
      proxy_pass http://lua_app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      $report
    }
    $report_loc
  }
CONF
}

# start_redis PORT: a throwaway redis-server on loopback; sets REDIS_PID.
start_redis() {
  need redis-server
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  pids+=($!)
  REDIS_PID=$!
  wait_port "$1" redis-server
}

# to_ms converts wrk's latency (e.g. 812.00us, 1.23ms, 2.01s) to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; else if (v ~ /m$/) n *= 60000
    printf "%.3f", n
  }'
}

# cpu_ticks PID...: user+system clock ticks of the PIDs and their children
# (nginx's workers are children of its master).
cpu_ticks() {
  local total=0 p q
  for q in "$@"; do
    for p in "$q" $(pgrep -P "$q" 2>/dev/null); do
      if [ -r "/proc/$p/stat" ]; then
        # Fields after the parenthesized command name: utime is 14, stime 15.
        total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
      fi
    done
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# ratio A B: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f", a / b}'; }

declare -A RPS P50 P99 ERRS CPU
# wrk_round NAME URL PID... [-- WRK_ARGS...]: one warm-up and one measured
# wrk run against URL; keeps NAME's best round (by requests/s), with the
# CPU the given processes used per request.
wrk_round() {
  local name=$1 url=$2 out rps t0 t1 reqs
  shift 2
  local procs=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do procs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  extra=("$@")
  wrk -t"$THREADS" -c"$CONNS" -d2s "${extra[@]}" "$url" >/dev/null # warm up
  t0=$(cpu_ticks "${procs[@]}")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${extra[@]}" "$url")
  t1=$(cpu_ticks "${procs[@]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "  round: $name $rps req/s" >&2
  if [ -n "${RPS[$name]:-}" ] && awk -v a="$rps" -v b="${RPS[$name]}" 'BEGIN {exit !(a <= b)}'; then
    return
  fi
  RPS[$name]=$rps
  P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ {print $5} /Socket errors:/ {print "socket-errors"}' <<<"$out" | paste -sd, -)
  ERRS[$name]=${ERRS[$name]:-0}
  CPU[$name]=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
}

# wrk_table NAME...: the best rounds, one row per target.
wrk_table() {
  printf '\n%-16s %12s %10s %10s %14s %10s\n' target "req/s" "p50 ms" "p99 ms" "CPU us/req" "non-2xx"
  local t
  for t in "$@"; do
    printf '%-16s %12.0f %10.3f %10.3f %14s %10s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}" "${ERRS[$t]}"
  done
}
