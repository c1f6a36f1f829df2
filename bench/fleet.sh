#!/usr/bin/env bash
# bench/fleet.sh: how far a fleet of guards lets one key overshoot its
# worker-time budget (issue 14), and what the fleet store costs per request.
#
# Part 1, overshoot: for 1, 3 and 6 guards and several parallelisms, one key
# sends 0.5 s requests (WORK) PARALLEL at a time, spread over the guards,
# for FOR (well inside the 1 m window), on a 6 s per minute budget; a
# refused client retries at once. bench/fleetbench reports the worker time
# the upstream spent for the key, as % over the budget, and beyond one
# guard's own bound (the budget plus what the requests running when it was
# crossed still ran after that). Three designs:
#   leases  headroom proxy as built from this tree (--store redis://)
#   sync1s  headroom proxy as it was before leases (BASE_REV, default
#           e484579: decisions local, a sync every second)
#   seed    the seed's fleet built for real: nginx with an access_by_lua
#           asking redis-server per request whether the key is restricted,
#           nginx's log shipped over UDP syslog to an aggregator that
#           charges $upstream_response_time on completion and writes the
#           restriction to Redis every second
#
# Part 2, cost: wrk against one headroom proxy with the memory store and
# with the Redis fleet store (leases), a fast upstream, a budget high enough
# that wrk's one client is never refused: requests/s, latency and the
# proxy's CPU per request (redis-server's included for the fleet store).
#
# Usage: bench/fleet.sh     (about 4 minutes)
# Environment: PROXIES="1 3 6" PARALLEL="4 12 24" WORK=500ms FOR=5s
#              BUDGET=6s BASE_REV=e484579 DURATION=10s CONNS=50 THREADS=2
#              ROUNDS=2 PORT_BASE=18300 (uses PORT_BASE..PORT_BASE+20)
# Needs go, git, wrk, nginx with libnginx-mod-http-lua and redis-server
# (scripts/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

PROXIES=${PROXIES:-"1 3 6"}
PARALLEL=${PARALLEL:-"4 12 24"}
WORK=${WORK:-500ms}
FOR=${FOR:-5s}
BUDGET=${BUDGET:-6s}
BASE_REV=${BASE_REV:-e484579}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-18300}
REDIS_PORT=$PORT_BASE
UP_PORT=$((PORT_BASE + 1))
MEM_PORT=$((PORT_BASE + 2))
MEM_ADMIN=$((PORT_BASE + 3))
RED_PORT=$((PORT_BASE + 4))
RED_ADMIN=$((PORT_BASE + 5))
GUARDS=$((PORT_BASE + 6))

BENCH=bench/fleet.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
need go
need git
need wrk
need nginx
need redis-server
require_free_ports "$REDIS_PORT" "$UP_PORT" "$MEM_PORT" "$MEM_ADMIN" "$RED_PORT" "$RED_ADMIN"

scratch_dir fleet

echo "building headroom (this tree and $BASE_REV) and the bench programs..." >&2
mkdir -p "$tmp/bin"
go build -o "$tmp/bin/leases" ./cmd/headroom
go build -o "$tmp/fleetbench" ./bench/fleetbench
go build -o "$tmp/upstream" ./bench/upstream
mkdir -p "$tmp/base"
git archive "$BASE_REV" | tar -x -C "$tmp/base"
(cd "$tmp/base" && go build -o "$tmp/bin/sync1s" ./cmd/headroom)

start_redis "$REDIS_PORT"

echo
echo "Part 1: overshoot of a ${BUDGET} per minute budget, ${WORK} requests, ${FOR} of a key retrying at once"
for n in $PROXIES; do
  for p in $PARALLEL; do
    for d in leases sync1s seed; do
      if [ "$d" = seed ]; then
        "$tmp/fleetbench" -design seed -proxies "$n" -parallel "$p" -work "$WORK" -for "$FOR" -budget "$BUDGET" \
          -redis-port "$REDIS_PORT" -port-base "$GUARDS"
      else
        "$tmp/fleetbench" -design headroom -bin "$tmp/bin/$d" -proxies "$n" -parallel "$p" -work "$WORK" -for "$FOR" \
          -budget "$BUDGET" -redis-port "$REDIS_PORT" -port-base "$GUARDS"
      fi
    done
  done
done

echo
echo "Part 2: cost per request, memory store vs Redis fleet store (leases)"
"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" -size 128 &
pids+=($!)
wait_port "$UP_PORT" upstream
echo "fleet-bench-secret-0123456789abcdef" >"$tmp/secret"
"$tmp/bin/leases" proxy --listen "127.0.0.1:$MEM_PORT" --admin "127.0.0.1:$MEM_ADMIN" --upstream "http://127.0.0.1:$UP_PORT" \
  --budget 1h --window 1m --restrict-for 1m --access-log "$tmp/mem-access.log" 2>"$tmp/mem.log" &
pids+=($!)
MEM_PID=$!
"$tmp/bin/leases" proxy --listen "127.0.0.1:$RED_PORT" --admin "127.0.0.1:$RED_ADMIN" --upstream "http://127.0.0.1:$UP_PORT" \
  --budget 1h --window 1m --restrict-for 1m --access-log "$tmp/red-access.log" \
  --store "redis://127.0.0.1:$REDIS_PORT/0" --secret-file "$tmp/secret" 2>"$tmp/red.log" &
pids+=($!)
RED_PID=$!
wait_port "$MEM_PORT" "headroom proxy (memory)"
wait_port "$RED_PORT" "headroom proxy (redis)"
for _ in $(seq "$ROUNDS"); do
  wrk_round memory "http://127.0.0.1:$MEM_PORT/" "$MEM_PID"
  wrk_round redis-leases "http://127.0.0.1:$RED_PORT/" "$RED_PID" "$REDIS_PID"
done
wrk_table memory redis-leases
printf '\nredis-leases / memory: req/s %s, CPU per request %sx\n' \
  "$(ratio "${RPS[redis-leases]}" "${RPS[memory]}")" "$(ratio "${CPU[redis-leases]}" "${CPU[memory]}")"
curl -s "127.0.0.1:$RED_ADMIN/metrics" | grep -E '^headroom_store_leases_total' || true
