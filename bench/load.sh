#!/usr/bin/env bash
# How many requests/s can `headroom load` drive on this machine? Side by side
# with wrk, vegeta and k6, against the same fast loopback server (nginx, one
# worker, a 13-byte static file, no access log), same duration, same number
# of connections, one tool at a time, in one run. Prints the figures and the
# ratios; the goal is >= 0.8x wrk and ahead of vegeta and k6.
#
# Usage: bench/load.sh [DURATION_SECONDS] [CONNECTIONS]    (defaults 10 50)
# Env:   ROUNDS=N  repeat the whole comparison N times (default 3); the
#                  verdict on the goal uses the median of each tool, since
#                  this machine's 2 cores are shared and single runs swing
#        SKIP_K6=1 do not build k6 (building it takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${1:-10}
CONNS=${2:-50}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/headroom-bench-load.XXXXXX)
nginx_pid=""
cleanup() {
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || { echo "bench/load.sh: $1 is required ($2)" >&2; exit 1; }; }
need wrk "apt-get install wrk"
need nginx "apt-get install nginx"
need jq "apt-get install jq"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building headroom, installing vegeta (and k6) into $work/bin"
go build -o "$work/bin/headroom" ./cmd/headroom
GOBIN="$work/bin" go install github.com/tsenart/vegeta/v12@v12.13.0
have_k6=0
if [ "${SKIP_K6:-0}" != 1 ]; then
  if GOBIN="$work/bin" timeout 1200 go install go.k6.io/k6@v1.8.1 >"$work/k6-build.log" 2>&1; then
    have_k6=1
  else
    echo "note: k6 did not build (see below); comparing without it" >&2
    tail -5 "$work/k6-build.log" >&2 || true
  fi
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/html" "$work/nginx/logs"
printf 'hello, world!' >"$work/nginx/html/index.html"
# nginx's workers run unprivileged: let them read the file.
chmod 755 "$work"
chmod -R a+rX "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    root $work/nginx/html;
  }
}
NGINX
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/" >/dev/null || { echo "bench/load.sh: nginx does not answer 200 on $port" >&2; exit 1; }
URL="http://127.0.0.1:$port/"
echo "== target $URL (nginx, 1 worker, 13-byte body); ${DUR}s, $CONNS connections, $(nproc) CPUs"

# Every tool's figure counts only successful (2xx) responses, so a broken
# target cannot pass for a fast one.
run_wrk() {
  wrk -t2 -c"$CONNS" -d"${DUR}s" "$URL" >"$work/wrk.txt"
  if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "wrk saw non-2xx responses" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' "$work/wrk.txt"
}
run_headroom() {
  "$work/bin/headroom" load "$URL" --vus "$CONNS" --duration "${DUR}s" --json >"$work/hr.json"
  jq -r 'if .errors == 0 and (.status_codes | keys) == ["200"] then .rps else error("headroom saw errors") end' "$work/hr.json"
}
run_vegeta() {
  echo "GET $URL" | "$work/bin/vegeta" attack -rate=0 -max-workers="$CONNS" -workers="$CONNS" \
    -connections="$CONNS" -duration="${DUR}s" | "$work/bin/vegeta" report -type=json | jq -r '.throughput'
}
run_k6() {
  cat >"$work/k6.js" <<JS
import http from 'k6/http';
export default function () { http.get('$URL'); }
JS
  "$work/bin/k6" run --quiet --no-color --vus "$CONNS" --duration "${DUR}s" \
    --summary-export "$work/k6.json" "$work/k6.js" >/dev/null 2>&1
  jq -r 'if .metrics.http_req_failed.passes == 0 then .metrics.http_reqs.rate else error("k6 saw failures") end' "$work/k6.json"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
all_wrk=() all_hr=() all_veg=() all_k6=() r_wrk=() r_veg=() r_k6=()
for round in $(seq "$ROUNDS"); do
  wrk_rps=$(run_wrk); sleep 1
  hr_rps=$(run_headroom); sleep 1
  veg_rps=$(run_vegeta); sleep 1
  k6_rps="skipped"
  if [ "$have_k6" = 1 ]; then k6_rps=$(run_k6); sleep 1; fi
  echo
  echo "round $round"
  printf '  %-10s %12s\n' tool "requests/s"
  printf '  %-10s %12.0f\n' wrk "$wrk_rps" headroom "$hr_rps" vegeta "$veg_rps"
  if [ "$have_k6" = 1 ]; then printf '  %-10s %12.0f\n' k6 "$k6_rps"; else printf '  %-10s %12s\n' k6 skipped; fi
  echo "  headroom/wrk    $(ratio "$hr_rps" "$wrk_rps")"
  echo "  headroom/vegeta $(ratio "$hr_rps" "$veg_rps")"
  if [ "$have_k6" = 1 ]; then echo "  headroom/k6     $(ratio "$hr_rps" "$k6_rps")"; fi
  echo "  headroom's verdict: $(jq -r '.verdict' "$work/hr.json") ($(jq -r '.reasons[0]' "$work/hr.json"))"
  all_wrk+=("$wrk_rps") all_hr+=("$hr_rps") all_veg+=("$veg_rps")
  r_wrk+=("$(ratio "$hr_rps" "$wrk_rps")") r_veg+=("$(ratio "$hr_rps" "$veg_rps")")
  if [ "$have_k6" = 1 ]; then all_k6+=("$k6_rps") r_k6+=("$(ratio "$hr_rps" "$k6_rps")"); fi
done

m_wrk=$(median "${all_wrk[@]}") m_hr=$(median "${all_hr[@]}") m_veg=$(median "${all_veg[@]}")
echo
echo "median of $ROUNDS round(s), requests/s: wrk $m_wrk, headroom $m_hr, vegeta $m_veg$( [ "$have_k6" = 1 ] && echo ", k6 $(median "${all_k6[@]}")")"
echo "ratios: median of the per-round ratios (each round's tools ran back to back, under the same load)"
echo "  headroom/wrk    $(median "${r_wrk[@]}")   (goal >= 0.8; rounds: ${r_wrk[*]})"
echo "  headroom/vegeta $(median "${r_veg[@]}")   (goal > 1; rounds: ${r_veg[*]})"
if [ "$have_k6" = 1 ]; then echo "  headroom/k6     $(median "${r_k6[@]}")   (goal > 1; rounds: ${r_k6[*]})"; fi
