#!/usr/bin/env bash
# bench/proxy.sh: what headroom's proxy costs in front of a fast upstream,
# side by side with a direct connection, nginx's proxy_pass and a bare Go
# httputil.ReverseProxy (bench/goproxy: the floor for any Go proxy), in one
# run on loopback. Reports requests/s (and the ratio to direct) and latency
# percentiles from wrk.
#
# Usage: bench/proxy.sh            (about ROUNDS x 3 x (DURATION + 2 s))
# Environment: DURATION=10s CONNS=50 THREADS=2 BODY=128 (response bytes)
#              ROUNDS=2 (targets are measured in turn, ROUNDS times; the
#              best round of each is reported, which filters out moments
#              when something else on the machine took the CPU)
#              PORT_BASE=18080 (uses PORT_BASE..PORT_BASE+4 on 127.0.0.1)
#
# Besides wrk's figures it reports the CPU time each server process used
# per request (from /proc: user+system, nginx's workers included), which
# stays meaningful when the machine is shared and throughput is not.
#
# Needs go, wrk and nginx (Debian: apt-get install wrk nginx-light or
# nginx; scripts/deps.sh installs them). nginx runs from a config written
# to a temporary directory and is stopped at the end; nothing is installed
# or left running.
#
# Fairness: all three see the same upstream; nginx keeps upstream
# connections alive (keepalive 64, HTTP/1.1) as headroom does; both proxies
# write an access log to a file, buffered (nginx buffer=64k flush=1s,
# headroom's default 1 s flush); both may use every core (nginx
# worker_processes auto, Go's GOMAXPROCS). The budget is set high (1h per
# 1m) so that wrk's single client address is never restricted: the ledger is
# still consulted and charged on every request.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
BODY=${BODY:-128}
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-18080}
UP_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
HR_PORT=$((PORT_BASE + 2))
HR_ADMIN=$((PORT_BASE + 3))
GO_PORT=$((PORT_BASE + 4))

need() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    echo "bench/proxy.sh: $1 not found; install it (scripts/deps.sh does)" >&2
    exit 1
  fi
}
need go
need wrk
need nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UP_PORT" "$NGINX_PORT" "$HR_PORT" "$HR_ADMIN" "$GO_PORT"; do
  if port_busy "$p"; then
    echo "bench/proxy.sh: port $p on 127.0.0.1 is in use; set PORT_BASE to a free range" >&2
    exit 1
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/headroom-proxy-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 100); do
    if port_busy "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench/proxy.sh: nothing listening on 127.0.0.1:$1 after 10 s ($2)" >&2
  exit 1
}

echo "building headroom and the bench upstream..." >&2
go build -o "$tmp/headroom" ./cmd/headroom
go build -o "$tmp/upstream" ./bench/upstream
go build -o "$tmp/goproxy" ./bench/goproxy

"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" -size "$BODY" &
pids+=($!)
UP_PID=$!
wait_port "$UP_PORT" upstream

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $tmp/nginx/access.log combined buffer=64k flush=1s;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  upstream app {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
CONF
"$NGINX" -e "$tmp/nginx/error.log" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
NGINX_PID=$!
wait_port "$NGINX_PORT" nginx

"$tmp/headroom" proxy --listen "127.0.0.1:$HR_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
  --admin "127.0.0.1:$HR_ADMIN" --access-log "$tmp/headroom-access.log" \
  --budget 1h --window 1m --restrict-for 1m 2>"$tmp/headroom.log" &
pids+=($!)
HR_PID=$!
wait_port "$HR_PORT" "headroom proxy; its log: $(cat "$tmp/headroom.log" 2>/dev/null)"

"$tmp/goproxy" -listen "127.0.0.1:$GO_PORT" -upstream "http://127.0.0.1:$UP_PORT" &
pids+=($!)
GO_PID=$!
wait_port "$GO_PORT" goproxy

# to_ms converts wrk's latency (e.g. 812.00us, 1.23ms, 2.01s) to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; else if (v ~ /m$/) n *= 60000
    printf "%.3f", n
  }'
}

# cpu_ticks PID: user+system clock ticks of PID and its children processes
# (nginx's workers are children of its master).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
    if [ -r "/proc/$p/stat" ]; then
      # Fields after the parenthesized command name: utime is 14, stime 15.
      total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    fi
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

declare -A RPS P50 P99 ERRS CPU
run() {
  local name=$1 port=$2 pid=$3 out rps t0 t1 reqs
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null # warm up
  t0=$(cpu_ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  t1=$(cpu_ticks "$pid")
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
  # Microseconds of CPU per request for the server measured (for a proxy:
  # the proxy alone, not the upstream behind it).
  CPU[$name]=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
}

echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $BODY-byte responses, on $(nproc) cores, best of $ROUNDS rounds" >&2
for _ in $(seq "$ROUNDS"); do
  run direct "$UP_PORT" "$UP_PID"
  run nginx "$NGINX_PORT" "$NGINX_PID"
  run go-rp "$GO_PORT" "$GO_PID"
  run headroom "$HR_PORT" "$HR_PID"
done

printf '\n%-10s %12s %10s %10s %10s %14s %10s\n' target "req/s" "vs direct" "p50 ms" "p99 ms" "CPU us/req" "non-2xx"
for t in direct nginx go-rp headroom; do
  printf '%-10s %12.0f %10.2f %10.3f %10.3f %14s %10s\n' "$t" "${RPS[$t]}" \
    "$(awk -v a="${RPS[$t]}" -v b="${RPS[direct]}" 'BEGIN {printf "%.2f", a / b}')" \
    "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}" "${ERRS[$t]}"
done
printf '\nheadroom / nginx: req/s %.2f, p99 %.2fx, CPU per request %.2fx\n' \
  "$(awk -v a="${RPS[headroom]}" -v b="${RPS[nginx]}" 'BEGIN {print a / b}')" \
  "$(awk -v a="${P99[headroom]}" -v b="${P99[nginx]}" 'BEGIN {print a / b}')" \
  "$(awk -v a="${CPU[headroom]}" -v b="${CPU[nginx]}" 'BEGIN {print a / b}')"
printf 'headroom / bare Go ReverseProxy (go-rp): req/s %.2f, CPU per request %.2fx\n' \
  "$(awk -v a="${RPS[headroom]}" -v b="${RPS[go-rp]}" 'BEGIN {print a / b}')" \
  "$(awk -v a="${CPU[headroom]}" -v b="${CPU[go-rp]}" 'BEGIN {print a / b}')"
echo "(direct's CPU is the upstream's own; a proxy's excludes the upstream's)"
