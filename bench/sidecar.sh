#!/usr/bin/env bash
# bench/sidecar.sh: what guarding nginx costs, side by side in one run on
# loopback: nginx alone (proxy_pass), nginx with `headroom sidecar` beside it
# (the snippet `headroom nginx-config` prints: auth_request per request,
# access log over syslog), and the design the seed replaced, nginx + a Lua
# bouncer asking a real redis-server per request (seeds/03). When
# `headroom nginx-config` offers an allow cache (--cache), nginx + sidecar is
# measured with it too; the one sidecar then runs with --check-cache 5s (an
# nginx without the cache ignores its X-Accel-Expires). When it offers the
# unchecked list (--map-dir), nginx + sidecar + map is the design for high
# rates: the access log in a buffered file a second sidecar follows
# (--log-file / --access-log), and the key, far from its budget, listed in
# the map nginx answers its checks from (that sidecar reloads that nginx).
#
# Usage: bench/sidecar.sh          (about ROUNDS x 5 x (DURATION + 2 s))
# Environment: DURATION=10s CONNS=64 THREADS=1 BODY=64 (response bytes)
#              ROUNDS=3 (best round of each is reported)
#              PORT_BASE=18180 (uses PORT_BASE..PORT_BASE+14 on 127.0.0.1)
#              HEADROOM_BASE=path (a headroom binary built from an earlier
#              commit: its sidecar and snippet are measured as
#              nginx+sidecar+map-base, in the same rounds, just before
#              nginx+sidecar+map, for a before/after)
#
# CPU per request is user+system time from /proc of everything each design
# runs besides the upstream: nginx's master and workers, plus the sidecar,
# plus redis-server for the Lua bouncer.
#
# Fairness: the same upstream for all; every nginx keeps its upstream
# connections alive; every request carries the same API key (X-Api-Key), so
# the sidecar and the bouncer both look it up; the budget is high (1h per
# 1m) so the key is never refused, while the ledger is still consulted and
# charged on every request.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=bench/sidecar.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
BODY=${BODY:-64}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18180}
UP_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
SC_NGINX_PORT=$((PORT_BASE + 2))
SC_CHECK=$((PORT_BASE + 3))
SC_SYSLOG=$((PORT_BASE + 4))
SC_ADMIN=$((PORT_BASE + 5))
LUA_PORT=$((PORT_BASE + 6))
REDIS_PORT=$((PORT_BASE + 7))
CACHE_NGINX_PORT=$((PORT_BASE + 8))
MAP_NGINX_PORT=$((PORT_BASE + 9))
MAP_CHECK=$((PORT_BASE + 10))
MAP_ADMIN=$((PORT_BASE + 11))
BASE_NGINX_PORT=$((PORT_BASE + 12))
BASE_CHECK=$((PORT_BASE + 13))
BASE_ADMIN=$((PORT_BASE + 14))
HEADROOM_BASE=${HEADROOM_BASE:-}

need go
need wrk
need nginx
require_free_ports "$UP_PORT" "$NGINX_PORT" "$SC_NGINX_PORT" "$SC_CHECK" "$SC_ADMIN" "$LUA_PORT" "$REDIS_PORT" "$CACHE_NGINX_PORT" \
  "$MAP_NGINX_PORT" "$MAP_CHECK" "$MAP_ADMIN"
if [ -n "$HEADROOM_BASE" ]; then
  require_free_ports "$BASE_NGINX_PORT" "$BASE_CHECK" "$BASE_ADMIN"
fi

scratch_dir sidecar
# nginx's workers (user nobody when nginx starts as root) write the check
# cache under it: mktemp's 0700 would make every cached answer fail.
chmod 0755 "$tmp"

echo "building headroom and the bench upstream..." >&2
go build -o "$tmp/headroom" ./cmd/headroom
go build -o "$tmp/upstream" ./bench/upstream

"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" -size "$BODY" &
pids+=($!)
wait_port "$UP_PORT" upstream

nginx_conf "$tmp/alone" "$(nginx_alone_body "$NGINX_PORT" "$UP_PORT")"
start_nginx "$tmp/alone"
ALONE_PID=$NGINX_PID
wait_port "$NGINX_PORT" "nginx alone"

"$tmp/headroom" sidecar --listen "127.0.0.1:$SC_CHECK" --syslog "127.0.0.1:$SC_SYSLOG" \
  --admin "127.0.0.1:$SC_ADMIN" --budget 1h --window 1m --restrict-for 1m \
  $(if "$tmp/headroom" sidecar --help 2>&1 | grep -c -- '--check-cache' >/dev/null; then echo --check-cache 5s; fi) 2>"$tmp/sidecar.log" &
pids+=($!)
SC_PID=$!
wait_port "$SC_CHECK" "headroom sidecar; its log: $(cat "$tmp/sidecar.log" 2>/dev/null)"

snippet() { # snippet PORT [FLAGS...]
  local port=$1
  shift
  "$tmp/headroom" nginx-config --listen "127.0.0.1:$port" --sidecar "127.0.0.1:$SC_CHECK" \
    --syslog "127.0.0.1:$SC_SYSLOG" --upstream "http://127.0.0.1:$UP_PORT" "$@"
}
nginx_conf "$tmp/sidecar" "$(snippet "$SC_NGINX_PORT")"
start_nginx "$tmp/sidecar"
SC_NGINX_PID=$NGINX_PID
wait_port "$SC_NGINX_PORT" "nginx + sidecar"

targets=(nginx nginx+sidecar)
# (Captured first: grep -q closing the pipe early fails it under pipefail.)
NGINX_CONFIG_HELP=$("$tmp/headroom" nginx-config --help 2>&1)
if grep -q -- '--cache' <<<"$NGINX_CONFIG_HELP"; then
  # Both nginx instances share the one sidecar: its cache zone differs by
  # name in the snippet, not by process.
  nginx_conf "$tmp/cache" "$(snippet "$CACHE_NGINX_PORT" --cache "$tmp/cache/zone")"
  start_nginx "$tmp/cache"
  CACHE_NGINX_PID=$NGINX_PID
  wait_port "$CACHE_NGINX_PORT" "nginx + sidecar + cache"
  targets+=(nginx+sidecar+cache)
fi

# map_design NAME BINARY NGINX_PORT CHECK_PORT ADMIN_PORT: the design for
# high rates, with BINARY's sidecar and snippet: the access log in a
# buffered file the sidecar follows, and the callers far from their budget
# in a map nginx answers their checks from (a sidecar of its own: it
# reloads this nginx). Sets MAP_SC_PID and NGINX_PID.
map_design() {
  local name=$1 bin=$2 port=$3 check=$4 admin=$5 dir="$tmp/$1"
  mkdir -p "$dir"
  "$bin" sidecar --listen "127.0.0.1:$check" --admin "127.0.0.1:$admin" \
    --access-log "$dir/headroom.log" --map-dir "$dir/lists" --nginx-pid "$dir/nginx.pid" \
    --budget 1h --window 1m --restrict-for 1m 2>"$dir-sidecar.log" &
  pids+=($!)
  MAP_SC_PID=$!
  wait_port "$check" "headroom sidecar ($name); its log: $(cat "$dir-sidecar.log" 2>/dev/null)"
  nginx_conf "$dir" "$("$bin" nginx-config --listen "127.0.0.1:$port" --sidecar "127.0.0.1:$check" \
    --upstream "http://127.0.0.1:$UP_PORT" --log-file "$dir/headroom.log" --map-dir "$dir/lists")"
  start_nginx "$dir"
  wait_port "$port" "nginx + sidecar ($name)"
}
if grep -q -- '--map-dir' <<<"$NGINX_CONFIG_HELP"; then
  if [ -n "$HEADROOM_BASE" ]; then
    map_design map-base "$HEADROOM_BASE" "$BASE_NGINX_PORT" "$BASE_CHECK" "$BASE_ADMIN"
    BASE_SC_PID=$MAP_SC_PID BASE_NGINX_PID=$NGINX_PID
    targets+=(nginx+sidecar+map-base)
  fi
  map_design map "$tmp/headroom" "$MAP_NGINX_PORT" "$MAP_CHECK" "$MAP_ADMIN"
  MAP_NGINX_PID=$NGINX_PID
  targets+=(nginx+sidecar+map)
fi

start_redis "$REDIS_PORT"
LUA=1 nginx_conf "$tmp/lua" "$(lua_bouncer_body "$LUA_PORT" "$UP_PORT" "$REDIS_PORT")"
start_nginx "$tmp/lua"
LUA_PID=$NGINX_PID
wait_port "$LUA_PORT" "nginx + Lua + Redis"
targets+=(nginx+lua+redis)

# A restriction flag for another key, so the bouncer's GET finds a real
# keyspace (and is checked to refuse).
redis-cli -p "$REDIS_PORT" SET restricted:banned-key 1 >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Api-Key: banned-key' "http://127.0.0.1:$LUA_PORT/")
if [ "$code" != 429 ]; then
  echo "$BENCH: the Lua bouncer answered $code for a restricted key, want 429; nginx log:" >&2
  cat "$tmp/lua/error.log" >&2
  exit 1
fi

key=(-H "X-Api-Key: bench-key")
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $BODY-byte responses, one API key, on $(nproc) cores, best of $ROUNDS rounds" >&2
for _ in $(seq "$ROUNDS"); do
  wrk_round nginx "http://127.0.0.1:$NGINX_PORT/" "$ALONE_PID" -- "${key[@]}"
  wrk_round nginx+sidecar "http://127.0.0.1:$SC_NGINX_PORT/" "$SC_NGINX_PID" "$SC_PID" -- "${key[@]}"
  if [ -n "${CACHE_NGINX_PID:-}" ]; then
    wrk_round nginx+sidecar+cache "http://127.0.0.1:$CACHE_NGINX_PORT/" "$CACHE_NGINX_PID" "$SC_PID" -- "${key[@]}"
  fi
  if [ -n "${BASE_NGINX_PID:-}" ]; then
    wrk_round nginx+sidecar+map-base "http://127.0.0.1:$BASE_NGINX_PORT/" "$BASE_NGINX_PID" "$BASE_SC_PID" -- "${key[@]}"
  fi
  if [ -n "${MAP_NGINX_PID:-}" ]; then
    wrk_round nginx+sidecar+map "http://127.0.0.1:$MAP_NGINX_PORT/" "$MAP_NGINX_PID" "$MAP_SC_PID" -- "${key[@]}"
  fi
  wrk_round nginx+lua+redis "http://127.0.0.1:$LUA_PORT/" "$LUA_PID" "$REDIS_PID" -- "${key[@]}"
done

wrk_table "${targets[@]}"
echo
for t in "${targets[@]}"; do
  [ "$t" = nginx ] && continue
  printf '%-20s req/s %sx nginx alone, %sx nginx+lua+redis; CPU per request %sx nginx alone\n' "$t" \
    "$(ratio "${RPS[$t]}" "${RPS[nginx]}")" "$(ratio "${RPS[$t]}" "${RPS[nginx+lua+redis]}")" \
    "$(ratio "${CPU[$t]}" "${CPU[nginx]}")"
done
# The sidecar must have charged what it was asked about.
echo "sidecar's view of the key: $(curl -s "http://127.0.0.1:$SC_ADMIN/v1/keys/bench-key")" >&2
if [ -n "${MAP_NGINX_PID:-}" ]; then
  # Every request through the map's nginx was charged from its line; only
  # those before the key was listed were checked.
  sleep 2
  echo "map sidecar's view of the key: $(curl -s "http://127.0.0.1:$MAP_ADMIN/v1/keys/bench-key")" >&2
  curl -s "http://127.0.0.1:$MAP_ADMIN/metrics" | grep -E '^headroom_sidecar_(checks_total|syslog_lines_total|unchecked_callers|map_reloads_total)' >&2
fi
