#!/usr/bin/env bash
# bench/proxy.sh: what headroom's proxy costs in front of a fast upstream,
# side by side with a direct connection, nginx's proxy_pass, the design the
# seed replaced (nginx + a Lua access_by_lua asking a real redis-server per
# request, seeds/03), that design whole (lua-seed-whole: the same bouncer
# plus the per-request UDP report of the upstream time, from a post_action,
# to the aggregator that sets the flags, bench/overloadtool), a bare Go httputil.ReverseProxy (bench/goproxy: the
# floor for any net/http proxy), the same tuned (bench/goproxy -tuned:
# pooled buffers, no transparent gzip, HTTP/1.1 only, a buffered access
# log), a fasthttp Server + HostClient proxy (bench/fasthttpproxy, a module
# of its own; buffered access log), an event-loop proxy over raw epoll
# (bench/epollproxy: locked OS threads, one epoll and SO_REUSEPORT listener
# each, like nginx's workers; buffered access log), and headroom proxy on its
# three request paths (--net-http, the default internal/fastproxy, and
# --event-loop, internal/evproxy), in one
# run on loopback. The Go and fasthttp proxies are not budget guards: they
# are the floor of each approach (issue 12 asked for their figures beside
# headroom's own parser). Reports requests/s (and the ratio to direct) and
# latency percentiles from wrk.
#
# Usage: bench/proxy.sh            (about ROUNDS x 11 x (DURATION + 2 s))
# Environment: DURATION=10s CONNS=50 THREADS=2 BODY=128 (response bytes)
#              ROUNDS=2 (targets are measured in turn, ROUNDS times; the
#              best round of each is reported, which filters out moments
#              when something else on the machine took the CPU)
#              PORT_BASE=18080 (uses PORT_BASE..PORT_BASE+13 on 127.0.0.1)
#              HEADROOM_BASE=path (a headroom binary built from an earlier
#              commit: measured as headroom-base on the fast path, in the
#              same rounds, just before headroom, for a before/after)
#              HEADROOM_BASE_FLAGS="--event-loop" (flags for that binary's
#              proxy, to compare the event loop before and after)
#              SKIP="go-rp go-rp-tuned ..." (targets not measured, for a
#              shorter run; direct, nginx, nginx+lua+redis and headroom
#              are always measured, since the ratios are to them)
#
# Besides wrk's figures it reports the CPU time each server process used
# per request (from /proc: user+system, nginx's workers included, and
# redis-server's for the Lua bouncer), which stays meaningful when the
# machine is shared and throughput is not.
#
# Needs go (and the Go module proxy, for fasthttp, the first time), wrk, nginx with libnginx-mod-http-lua, redis-server and curl
# (scripts/deps.sh installs them). nginx and redis run from files written
# to a temporary directory and are stopped at the end; nothing is
# installed or left running.
#
# Fairness: all see the same upstream; nginx keeps upstream connections
# alive (keepalive 64, HTTP/1.1) as headroom does; the proxies write an
# access log to a file, buffered (nginx buffer=64k flush=1s, headroom's
# default 1 s flush); all may use every core (nginx worker_processes auto,
# Go's GOMAXPROCS). The budget is set high (1h per 1m) so that wrk's single
# client address is never restricted: the ledger is still consulted and
# charged on every request, as the Lua bouncer asks Redis on every request.
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
HRF_PORT=$((PORT_BASE + 5))
HRF_ADMIN=$((PORT_BASE + 6))
LUA_PORT=$((PORT_BASE + 7))
REDIS_PORT=$((PORT_BASE + 8))
GOT_PORT=$((PORT_BASE + 9))
FH_PORT=$((PORT_BASE + 10))
HRB_PORT=$((PORT_BASE + 11))
HRB_ADMIN=$((PORT_BASE + 12))
EP_PORT=$((PORT_BASE + 13))
HRE_PORT=$((PORT_BASE + 14))
HRE_ADMIN=$((PORT_BASE + 15))
SEED_PORT=$((PORT_BASE + 16))
TOOL_PORT=$((PORT_BASE + 17)) # UDP
SKIP=" ${SKIP:-} "
for t in direct nginx nginx+lua+redis headroom; do
  case $SKIP in *" $t "*) echo "bench/proxy.sh: SKIP may not name $t: the ratios are to it" >&2; exit 2 ;; esac
done
# wanted NAME: whether NAME is measured in this run.
wanted() { case $SKIP in *" $1 "*) return 1 ;; esac; }
HEADROOM_BASE=${HEADROOM_BASE:-}
HEADROOM_BASE_FLAGS=${HEADROOM_BASE_FLAGS:-}

BENCH=bench/proxy.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
need go
need wrk
need nginx
need redis-server
need redis-cli
require_free_ports "$UP_PORT" "$NGINX_PORT" "$HR_PORT" "$HR_ADMIN" "$GO_PORT" "$HRF_PORT" "$HRF_ADMIN" "$LUA_PORT" "$REDIS_PORT" "$GOT_PORT" "$FH_PORT" "$HRB_PORT" "$HRB_ADMIN" "$EP_PORT" "$HRE_PORT" "$HRE_ADMIN" "$SEED_PORT"

scratch_dir proxy

echo "building headroom and the bench upstream..." >&2
go build -o "$tmp/headroom" ./cmd/headroom
go build -o "$tmp/upstream" ./bench/upstream
go build -o "$tmp/goproxy" ./bench/goproxy
go build -o "$tmp/epollproxy" ./bench/epollproxy
go build -o "$tmp/overloadtool" ./bench/overloadtool
# A nested module, so that headroom's go.mod does not depend on fasthttp.
(cd bench/fasthttpproxy && go build -o "$tmp/fasthttpproxy" .)

"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" -size "$BODY" &
pids+=($!)
UP_PID=$!
wait_port "$UP_PORT" upstream

nginx_conf "$tmp/nginx" "$(nginx_alone_body "$NGINX_PORT" "$UP_PORT")"
start_nginx "$tmp/nginx"
wait_port "$NGINX_PORT" nginx

"$tmp/headroom" proxy --net-http --listen "127.0.0.1:$HR_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
  --admin "127.0.0.1:$HR_ADMIN" --access-log "$tmp/headroom-access.log" \
  --budget 1h --window 1m --restrict-for 1m 2>"$tmp/headroom.log" &
pids+=($!)
HR_PID=$!
wait_port "$HR_PORT" "headroom proxy; its log: $(cat "$tmp/headroom.log" 2>/dev/null)"

# The same proxy on its default fast HTTP/1.1 path (internal/fastproxy,
# issue 12); the one above runs with --net-http.
"$tmp/headroom" proxy --listen "127.0.0.1:$HRF_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
  --admin "127.0.0.1:$HRF_ADMIN" --access-log "$tmp/headroom-fast-access.log" \
  --budget 1h --window 1m --restrict-for 1m 2>"$tmp/headroom-fast.log" &
pids+=($!)
HRF_PID=$!
wait_port "$HRF_PORT" "headroom proxy; its log: $(cat "$tmp/headroom-fast.log" 2>/dev/null)"

# The same proxy on its event loop (internal/evproxy, --event-loop):
# requests without a body are served on epoll loops, everything else is
# handed to the fast path.
"$tmp/headroom" proxy --event-loop --listen "127.0.0.1:$HRE_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
  --admin "127.0.0.1:$HRE_ADMIN" --access-log "$tmp/headroom-evloop-access.log" \
  --budget 1h --window 1m --restrict-for 1m 2>"$tmp/headroom-evloop.log" &
pids+=($!)
HRE_PID=$!
wait_port "$HRE_PORT" "headroom proxy --event-loop; its log: $(cat "$tmp/headroom-evloop.log" 2>/dev/null)"

if [ -n "$HEADROOM_BASE" ]; then
  # shellcheck disable=SC2086 # the flags are words
  "$HEADROOM_BASE" proxy $HEADROOM_BASE_FLAGS --listen "127.0.0.1:$HRB_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
    --admin "127.0.0.1:$HRB_ADMIN" --access-log "$tmp/headroom-base-access.log" \
    --budget 1h --window 1m --restrict-for 1m 2>"$tmp/headroom-base.log" &
  pids+=($!)
  HRB_PID=$!
  wait_port "$HRB_PORT" "headroom proxy ($HEADROOM_BASE); its log: $(cat "$tmp/headroom-base.log" 2>/dev/null)"
fi

# The design the seed replaced (seeds/03): nginx proxy_pass plus a Lua
# access_by_lua GETting a restriction flag from a real redis-server on
# every request (bench/lib.sh).
start_redis "$REDIS_PORT"
LUA=1 nginx_conf "$tmp/lua" "$(lua_bouncer_body "$LUA_PORT" "$UP_PORT" "$REDIS_PORT")"
PLAIN_NGINX_PID=$NGINX_PID
start_nginx "$tmp/lua"
LUA_PID=$NGINX_PID
NGINX_PID=$PLAIN_NGINX_PID
wait_port "$LUA_PORT" "nginx + Lua + Redis"
redis-cli -p "$REDIS_PORT" SET restricted:banned-key 1 >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Api-Key: banned-key' "http://127.0.0.1:$LUA_PORT/" || true)
if [ "$code" != 429 ]; then
  echo "$BENCH: the Lua bouncer answered $code for a restricted key, want 429; its log:" >&2
  cat "$tmp/lua/error.log" >&2
  exit 1
fi

# The seed's design whole (seeds/03, steps 1-6): the same bouncer, and
# after each request a post_action's Lua reporting the key and the
# upstream time in a UDP packet to the aggregator (bench/overloadtool),
# which sums it per key and sets the restriction flags in the same Redis.
# The issue's goal is against nginx+lua+redis above (the check alone);
# this is what headroom replaces, which also charges every request.
if wanted lua-seed-whole; then
  "$tmp/overloadtool" -listen "127.0.0.1:$TOOL_PORT" -redis "127.0.0.1:$REDIS_PORT" \
    -budget 1h -window 1m -restrict-for 1m 2>"$tmp/overloadtool.log" &
  pids+=($!)
  TOOL_PID=$!
  LUA=1 nginx_conf "$tmp/seed" "$(lua_bouncer_body "$SEED_PORT" "$UP_PORT" "$REDIS_PORT" "$TOOL_PORT")"
  start_nginx "$tmp/seed"
  SEED_PID=$NGINX_PID
  NGINX_PID=$PLAIN_NGINX_PID
  wait_port "$SEED_PORT" "nginx + Lua + Redis + UDP reports"
fi

"$tmp/goproxy" -listen "127.0.0.1:$GO_PORT" -upstream "http://127.0.0.1:$UP_PORT" &
pids+=($!)
GO_PID=$!
wait_port "$GO_PORT" goproxy

"$tmp/goproxy" -tuned -listen "127.0.0.1:$GOT_PORT" -upstream "http://127.0.0.1:$UP_PORT" \
  -access-log "$tmp/goproxy-tuned-access.log" &
pids+=($!)
GOT_PID=$!
wait_port "$GOT_PORT" "goproxy -tuned"

"$tmp/fasthttpproxy" -listen "127.0.0.1:$FH_PORT" -upstream "127.0.0.1:$UP_PORT" \
  -max-conns 1024 -access-log "$tmp/fasthttp-access.log" &
pids+=($!)
FH_PID=$!
wait_port "$FH_PORT" fasthttpproxy

"$tmp/epollproxy" -listen "127.0.0.1:$EP_PORT" -upstream "127.0.0.1:$UP_PORT" \
  -access-log "$tmp/epoll-access.log" &
pids+=($!)
EP_PID=$!
wait_port "$EP_PORT" epollproxy

echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $BODY-byte responses, on $(nproc) cores, best of $ROUNDS rounds" >&2
for _ in $(seq "$ROUNDS"); do
  wrk_round direct "http://127.0.0.1:$UP_PORT/" "$UP_PID"
  wrk_round nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID"
  wanted go-rp && wrk_round go-rp "http://127.0.0.1:$GO_PORT/" "$GO_PID"
  wanted go-rp-tuned && wrk_round go-rp-tuned "http://127.0.0.1:$GOT_PORT/" "$GOT_PID"
  wanted fasthttp && wrk_round fasthttp "http://127.0.0.1:$FH_PORT/" "$FH_PID"
  wanted epoll-floor && wrk_round epoll-floor "http://127.0.0.1:$EP_PORT/" "$EP_PID"
  wrk_round nginx+lua+redis "http://127.0.0.1:$LUA_PORT/" "$LUA_PID" "$REDIS_PID"
  wanted lua-seed-whole && wrk_round lua-seed-whole "http://127.0.0.1:$SEED_PORT/" "$SEED_PID" "$REDIS_PID" "$TOOL_PID"
  wanted headroom-nethttp && wrk_round headroom-nethttp "http://127.0.0.1:$HR_PORT/" "$HR_PID"
  if [ -n "$HEADROOM_BASE" ]; then
    wrk_round headroom-base "http://127.0.0.1:$HRB_PORT/" "$HRB_PID"
  fi
  wrk_round headroom "http://127.0.0.1:$HRF_PORT/" "$HRF_PID"
  wanted headroom-evloop && wrk_round headroom-evloop "http://127.0.0.1:$HRE_PORT/" "$HRE_PID"
done
targets=(direct nginx nginx+lua+redis)
wanted lua-seed-whole && targets+=(lua-seed-whole)
compared=()
for t in go-rp go-rp-tuned fasthttp epoll-floor headroom-nethttp; do
  if wanted "$t"; then
    targets+=("$t")
    [ "$t" = go-rp ] || compared+=("$t")
  fi
done
if [ -n "$HEADROOM_BASE" ]; then
  targets+=(headroom-base)
  compared+=(headroom-base)
fi
targets+=(headroom)
if wanted headroom-evloop; then
  targets+=(headroom-evloop)
  compared+=(headroom-evloop)
fi

printf '\n%-16s %12s %10s %10s %10s %14s %10s\n' target "req/s" "vs direct" "p50 ms" "p99 ms" "CPU us/req" "non-2xx"
for t in "${targets[@]}"; do
  printf '%-16s %12.0f %10.2f %10.3f %10.3f %14s %10s\n' "$t" "${RPS[$t]}" \
    "$(ratio "${RPS[$t]}" "${RPS[direct]}")" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}" "${ERRS[$t]}"
done
echo
for t in "${compared[@]}" headroom; do
  printf '%-16s / nginx: req/s %s, p99 %sx, CPU per request %sx; / nginx+lua+redis: req/s %s' "$t" \
    "$(ratio "${RPS[$t]}" "${RPS[nginx]}")" "$(ratio "${P99[$t]}" "${P99[nginx]}")" "$(ratio "${CPU[$t]}" "${CPU[nginx]}")" \
    "$(ratio "${RPS[$t]}" "${RPS[nginx+lua+redis]}")"
  if wanted lua-seed-whole; then
    printf '; / lua-seed-whole: req/s %s, CPU per request %sx' "$(ratio "${RPS[$t]}" "${RPS[lua-seed-whole]}")" "$(ratio "${CPU[$t]}" "${CPU[lua-seed-whole]}")"
  fi
  if wanted go-rp; then printf '; / go-rp: req/s %s' "$(ratio "${RPS[$t]}" "${RPS[go-rp]}")"; fi
  echo
done
for t in "${compared[@]}"; do
  printf '%-16s / headroom (fast path): req/s %s, p99 %sx, CPU per request %sx\n' "$t" \
    "$(ratio "${RPS[$t]}" "${RPS[headroom]}")" "$(ratio "${P99[$t]}" "${P99[headroom]}")" "$(ratio "${CPU[$t]}" "${CPU[headroom]}")"
done
if [ -n "$HEADROOM_BASE" ] && wanted headroom-evloop; then
  printf '%-16s / headroom-base (%s): req/s %s, p99 %sx, CPU per request %sx\n' headroom-evloop "${HEADROOM_BASE_FLAGS:-fast path}" \
    "$(ratio "${RPS[headroom-evloop]}" "${RPS[headroom-base]}")" "$(ratio "${P99[headroom-evloop]}" "${P99[headroom-base]}")" "$(ratio "${CPU[headroom-evloop]}" "${CPU[headroom-base]}")"
fi
echo "(direct's CPU is the upstream's own; a proxy's excludes the upstream's; nginx+lua+redis's includes redis-server's;"
echo " lua-seed-whole's includes redis-server's and the aggregator's)"
if wanted lua-seed-whole; then
  kill -TERM "$TOOL_PID" 2>/dev/null && wait "$TOOL_PID" 2>/dev/null || true
  echo "lua-seed-whole's aggregator: $(tail -1 "$tmp/overloadtool.log")"
fi
if wanted epoll-floor && wanted fasthttp; then
  printf '%-16s / fasthttp: req/s %s, p99 %sx, CPU per request %sx\n' epoll-floor \
    "$(ratio "${RPS[epoll-floor]}" "${RPS[fasthttp]}")" "$(ratio "${P99[epoll-floor]}" "${P99[fasthttp]}")" "$(ratio "${CPU[epoll-floor]}" "${CPU[fasthttp]}")"
fi
echo "(go-rp, go-rp-tuned, fasthttp and epoll-floor are not budget guards: no keys, no charging, no client watch; the floor of each approach;"
echo " epoll-floor is the epoll floor (not a guard): GET without bodies, Content-Length answers only)"
