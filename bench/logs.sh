#!/usr/bin/env bash
# Benchmark `headroom logs analyze` against GoAccess on the same generated
# combined log, in one run, on this machine: lines/s, wall time and peak
# memory of each, the throughput ratio, and headroom's peak memory on a
# quarter of the file (memory must not grow with the input).
#
#   bench/logs.sh            # 1 GiB log
#   SIZE=2GiB bench/logs.sh  # any genlog -size
#
# The log goes to $TMPDIR (default /tmp) and is deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-1GiB}
SEED=${SEED:-1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/headroom-bench-logs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ ! -x /usr/bin/time ]; then
	echo "installing GNU time (for peak memory)" >&2
	sudo apt-get install -y time >/dev/null 2>&1 || apt-get install -y time >/dev/null
fi
command -v goaccess >/dev/null || { echo "goaccess is not installed (apt-get install goaccess)" >&2; exit 1; }

go build -o "$WORK/headroom" ./cmd/headroom
go build -o "$WORK/genlog" ./bench/genlog

LOG="$WORK/access.log"
echo "== generating $SIZE combined log (seed $SEED)" >&2
"$WORK/genlog" -size "$SIZE" -seed "$SEED" >"$LOG"
BYTES=$(stat -c %s "$LOG")
LINES=$(wc -l <"$LOG")
QUARTER="$WORK/quarter.log"
head -n $((LINES / 4)) "$LOG" >"$QUARTER"
cat "$LOG" >/dev/null # both tools start from a warm page cache

# measure NAME CMD...: runs CMD under GNU time, prints "seconds maxrss_kb".
measure() {
	local name=$1
	shift
	/usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
		echo "$name failed:" >&2
		cat "$WORK/$name.err" >&2
		exit 1
	}
	cat "$WORK/$name.time" | tail -1
}

CORES=$(nproc)
echo "== headroom logs analyze ($CORES cores)" >&2
read -r HR_S HR_KB < <(measure headroom "$WORK/headroom" logs analyze "$LOG" --format combined --json --progress never)
echo "== goaccess $(goaccess --version | head -1 | awk '{print $3}') (same machine; GoAccess 1.7 parses on one thread)" >&2
read -r GA_S GA_KB < <(measure goaccess goaccess "$LOG" --log-format=COMBINED --no-global-config --no-progress -o "$WORK/goaccess.json")
echo "== headroom on a quarter of the file (memory flatness)" >&2
read -r Q_S Q_KB < <(measure quarter "$WORK/headroom" logs analyze "$QUARTER" --format combined --json --progress never)

HR_RECORDS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["records"], d["malformed"])' "$WORK/headroom.out")
GA_VALID=$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["general"]; print(g["valid_requests"], g["failed_requests"])' "$WORK/goaccess.json")

python3 - "$BYTES" "$LINES" "$HR_S" "$HR_KB" "$GA_S" "$GA_KB" "$Q_S" "$Q_KB" "$CORES" "$HR_RECORDS" "$GA_VALID" <<'PY'
import sys
b, lines = int(sys.argv[1]), int(sys.argv[2])
hr_s, hr_kb, ga_s, ga_kb, q_s, q_kb = map(float, sys.argv[3:9])
cores = sys.argv[9]
hr_rec, ga_valid = sys.argv[10], sys.argv[11]
hr_lps, ga_lps = lines / hr_s, lines / ga_s
print(f"input: {b/2**30:.2f} GiB, {lines:,} lines of combined log, {cores} cores")
print(f"| tool | wall s | lines/s | MB/s | peak RSS MiB |")
print(f"|---|---:|---:|---:|---:|")
print(f"| headroom logs analyze | {hr_s:.2f} | {hr_lps:,.0f} | {b/hr_s/1e6:,.0f} | {hr_kb/1024:.0f} |")
print(f"| goaccess | {ga_s:.2f} | {ga_lps:,.0f} | {b/ga_s/1e6:,.0f} | {ga_kb/1024:.0f} |")
print(f"| headroom, quarter of the input | {q_s:.2f} | {lines/4/q_s:,.0f} | {b/4/q_s/1e6:,.0f} | {q_kb/1024:.0f} |")
print(f"throughput ratio headroom/goaccess: {hr_lps/ga_lps:.1f}x")
print(f"peak memory, full vs quarter input: {hr_kb/1024:.0f} vs {q_kb/1024:.0f} MiB")
print(f"records/malformed (headroom): {hr_rec}; valid/failed (goaccess): {ga_valid}")
PY
