#!/usr/bin/env bash
# bench/sidecar-parts.sh: what each part of the snippet `headroom
# nginx-config --log-file --map-dir` costs nginx, for a caller the map
# lists (nginx answers its check itself): nginx alone (proxy_pass), the
# snippet as printed, and the snippet with one part taken out at a time.
# No sidecar runs: the map is written by hand and nobody reads the log, so
# every difference is nginx's own work. Side by side in one run, ratios to
# nginx alone.
#
# Usage: bench/sidecar-parts.sh   (about ROUNDS x 7 x (DURATION + 2 s))
# Environment: DURATION=8s CONNS=64 THREADS=1 ROUNDS=3 PORT_BASE=18800
#              (uses PORT_BASE..PORT_BASE+7 on 127.0.0.1)
#              NAMES="alone full ..." to run some of the targets only
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=bench/sidecar-parts.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${DURATION:-8s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18800}
UP_PORT=$PORT_BASE

need go
need wrk
need nginx
require_free_ports $(seq "$PORT_BASE" $((PORT_BASE + 7)))
scratch_dir sidecar-parts
chmod 0755 "$tmp"
echo "building headroom and the bench upstream..." >&2
go build -o "$tmp/headroom" ./cmd/headroom
go build -o "$tmp/upstream" ./bench/upstream
"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" -size 64 &
pids+=($!)
wait_port "$UP_PORT" upstream

declare -A PID PORT
next=$((PORT_BASE + 1))
nginx_conf "$tmp/alone" "$(nginx_alone_body "$next" "$UP_PORT")"
start_nginx "$tmp/alone"
PID[alone]=$NGINX_PID PORT[alone]=$next
next=$((next + 1))

# The key wrk sends, listed as the sidecar would list it.
mkdir -p "$tmp/lists"
printf '"bench-key||127.0.0.1|127.0.0.1" "fp-0123456789abcdef";\n' >"$tmp/lists/unchecked-keys.map"
printf '"bench-key||127.0.0.1|127.0.0.1" "default";\n' >"$tmp/lists/unchecked-pools.map"

# variant NAME SED: the snippet with SED applied.
variant() {
  local name=$1
  "$tmp/headroom" nginx-config --listen "127.0.0.1:$next" --sidecar 127.0.0.1:9 \
    --upstream "http://127.0.0.1:$UP_PORT" --log-file "$tmp/$name.log" --map-dir "$tmp/lists" | sed -e "$2" >"$tmp/$name.snippet"
  nginx_conf "$tmp/$name" "$(cat "$tmp/$name.snippet")"
  start_nginx "$tmp/$name"
  PID[$name]=$NGINX_PID PORT[$name]=$next
  next=$((next + 1))
}
variant full ''
variant no-request-id 's/ X-Request-Id \$headroom_request_id;/ X-Request-Id "";/'
variant no-ratelimit-headers '/add_header RateLimit/d'
variant no-x-forwarded-for '/X-Forwarded-For/d'
variant no-log 's|access_log /[^ ]* headroom_sidecar buffer=64k flush=1s;|access_log off;|'
variant no-check '/auth_request /d'

names=(${NAMES:-alone full no-request-id no-ratelimit-headers no-x-forwarded-for no-log no-check})
for n in "${names[@]}"; do wait_port "${PORT[$n]}" "$n"; done
key=(-H "X-Api-Key: bench-key")
code=$(curl -s -o /dev/null -w '%{http_code}' "${key[@]}" "http://127.0.0.1:${PORT[full]}/")
[ "$code" = 200 ] || { echo "$BENCH: the listed key got $code through the snippet, want 200" >&2; exit 1; }
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, 64-byte responses, on $(nproc) cores, best of $ROUNDS rounds" >&2
for _ in $(seq "$ROUNDS"); do
  for n in "${names[@]}"; do wrk_round "$n" "http://127.0.0.1:${PORT[$n]}/" "${PID[$n]}" -- "${key[@]}"; done
done
wrk_table "${names[@]}"
echo
for n in "${names[@]}"; do
  [ "$n" = alone ] && continue
  printf '%-22s req/s %sx nginx alone; CPU per request %sx\n' "$n" "$(ratio "${RPS[$n]}" "${RPS[alone]}")" "$(ratio "${CPU[$n]}" "${CPU[alone]}")"
done
